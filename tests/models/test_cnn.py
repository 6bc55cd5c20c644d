"""The Genomic Benchmarks CNN baseline is the genomic-benchmarks package's own CNN: same layers and
parameter names, same outputs, same loss and the same training step (checked against the package's
module when it is installed), with the package's input framing and input length."""

from __future__ import annotations

import copy
import importlib.util

import numpy as np
import pytest
import torch
import torch.nn as nn

from dnadiff import Tokenizer
from dnadiff.finetuning.config import CNNConfig
from dnadiff.finetuning.loop import fit_select
from dnadiff.models.cnn import GenomicBenchmarksCNN, package_input_len
from dnadiff.resources import default_fasta

PACKAGE_MISSING = (
    "genomic-benchmarks is not installed; to compare with its CNN: pip install --no-deps genomic-benchmarks "
    "(its models/torch.py needs only torch, numpy and scikit-learn)"
)


@pytest.fixture(scope="module")
def package_cnn() -> type[nn.Module]:
    """``genomic_benchmarks.models.torch.CNN``; skips when the package is absent."""
    if importlib.util.find_spec("genomic_benchmarks") is None:
        pytest.skip(PACKAGE_MISSING)
    from genomic_benchmarks.models.torch import CNN

    return CNN


@pytest.fixture(scope="module")
def real_ids() -> torch.Tensor:
    """Right-padded ids of 12 real hg38 windows of 40-60 bp (the embedded chr2 sample, past its N run)."""
    from dnadiff.data.genome import Genome

    genome, tok = Genome(default_fasta()), Tokenizer()
    seqs = [genome.fetch("chr2", 20_000 + 997 * i, 20_000 + 997 * i + 40 + (i * 5) % 21) for i in range(12)]
    return tok.encode_batch(seqs)


def test_layers_are_the_package_layers_without_extra_relus() -> None:
    cnn = GenomicBenchmarksCNN(2, input_len=62)
    kinds = [type(m).__name__ for m in cnn.cnn_model]
    assert kinds == ["Conv1d", "BatchNorm1d", "ReLU", "MaxPool1d", "Conv1d", "BatchNorm1d", "MaxPool1d",
                     "Conv1d", "BatchNorm1d", "MaxPool1d", "Flatten"]
    assert [type(m).__name__ for m in cnn.dense_model] == ["Linear", "Linear"]
    # 62 -> conv 55 -> pool 27 -> conv 20 -> pool 10 -> conv 3 -> pool 1; 4 channels
    assert cnn.dense_model[0].in_features == 4 and cnn.dense_model[1].out_features == 1
    assert GenomicBenchmarksCNN(3, input_len=62).dense_model[1].out_features == 3


def test_frame_and_input_length_follow_the_package_pipeline(real_ids: torch.Tensor) -> None:
    tok = Tokenizer()
    lengths = (real_ids != tok.pad_id).sum(1).tolist()
    assert package_input_len([500, 500]) == 502 and package_input_len([71, 593]) == 596
    cnn = GenomicBenchmarksCNN(2, input_len=package_input_len(lengths))
    framed = cnn.frame(real_ids)
    assert framed.shape == (len(lengths), max(lengths) + 3)
    for row, n, ids in zip(framed.tolist(), lengths, real_ids.tolist()):
        assert row[0] == tok.bos_id and row[1:1 + n] == ids[:n] and row[1 + n] == tok.sep_id
        assert set(row[2 + n:]) <= {tok.pad_id}
    long = real_ids[lengths.index(max(lengths))][None]  # 60 bases, cut to input_len 57: 55 bases + bos + eos
    short = GenomicBenchmarksCNN(2, input_len=57).frame(long)
    assert short.shape == (1, 57) and short[0, -1] == tok.sep_id and torch.equal(short[0, 1:56], long[0, :55])


def test_binary_logits_give_the_package_probability(real_ids: torch.Tensor) -> None:
    torch.manual_seed(0)
    cnn = GenomicBenchmarksCNN(2, input_len=64).eval()
    with torch.no_grad():
        logits = cnn(real_ids)
        p = cnn.package_output(cnn.frame(real_ids))
    assert logits.shape == (12, 2) and torch.equal(logits[:, 0], torch.zeros(12))
    torch.testing.assert_close(torch.softmax(logits, 1)[:, 1:], p, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("n_classes", [2, 3])
def test_same_parameters_and_outputs_as_the_package(package_cnn, real_ids: torch.Tensor, n_classes: int) -> None:
    vocab = len(Tokenizer())
    input_len = package_input_len((real_ids != Tokenizer().pad_id).sum(1).tolist())
    torch.manual_seed(1)
    theirs = package_cnn(n_classes, vocab, 100, input_len, "cpu")
    ours = GenomicBenchmarksCNN(n_classes, input_len)
    shapes = [(k, v.shape) for k, v in theirs.state_dict().items()]
    assert shapes == [(k, v.shape) for k, v in ours.state_dict().items()]
    ours.load_state_dict(theirs.state_dict())
    framed = ours.frame(real_ids)
    for training in (True, False):  # batch statistics, then running statistics
        theirs.train(training), ours.train(training)
        with torch.no_grad():
            assert torch.equal(theirs(framed), ours.package_output(framed))
    assert torch.equal(theirs.state_dict()["cnn_model.1.running_mean"], ours.state_dict()["cnn_model.1.running_mean"])


@pytest.mark.parametrize("n_classes", [2, 3])
def test_same_loss_and_training_step_as_the_package(package_cnn, real_ids: torch.Tensor, n_classes: int) -> None:
    """The same loss and gradients as the package's; and one epoch of dnadiff's fit (one batch, AdamW with
    weight decay 0) leaves the weights that one epoch of the package's ``CNN.train_loop`` with Adam leaves."""
    vocab = len(Tokenizer())
    y = torch.tensor([i % n_classes for i in range(len(real_ids))])
    input_len = package_input_len((real_ids != Tokenizer().pad_id).sum(1).tolist())
    torch.manual_seed(2)
    theirs = package_cnn(n_classes, vocab, 100, input_len, "cpu")
    ours = GenomicBenchmarksCNN(n_classes, input_len, loss="package")
    ours.load_state_dict(theirs.state_dict())
    framed = ours.frame(real_ids)
    y_theirs = y.float()[:, None]  # the package's collate gives float labels of shape (B, 1)
    theirs.train(), ours.train()
    their_loss = theirs.loss(theirs(framed), y_theirs if n_classes == 2 else y)
    our_loss = ours.training_loss(ours(real_ids), y)
    assert our_loss.item() == pytest.approx(their_loss.item(), rel=1e-6)
    their_loss.backward(), our_loss.backward()
    for (k, a), b in zip(theirs.named_parameters(), ours.parameters()):
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-5, atol=1e-8, msg=f"gradient of {k}")
    start = copy.deepcopy(theirs.state_dict())
    theirs.load_state_dict(start), ours.load_state_dict(start)  # undo the BatchNorm running-stat updates above
    theirs.zero_grad(), ours.zero_grad()
    loader = [(framed, y_theirs)]  # one batch, as a DataLoader with batch_size >= 12 yields it
    theirs.train_loop(_Loader(loader), torch.optim.Adam(theirs.parameters()))
    fit = CNNConfig(max_epochs=1, batch_size=len(y), lr=1e-3, weight_decay=0.0)
    fit_select(ours, (real_ids, y), (real_ids, y), fit, seed=0, progress=False)
    # A conv bias feeding a BatchNorm has zero gradient in exact arithmetic (the BatchNorm removes it), so
    # Adam's first step moves it by +-lr times the sign of rounding noise: it is compared up to one step.
    before_bn = {f"cnn_model.{i}.bias" for i in (0, 4, 7)}
    for k, v in theirs.state_dict().items():
        tol = dict(rtol=0.0, atol=2.1e-3) if k in before_bn else dict(rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(ours.state_dict()[k], v, **tol, msg=f"{k} differs after one step")
    assert float((ours.state_dict()["dense_model.1.weight"] - start["dense_model.1.weight"]).abs().max()) > 5e-4


def test_cross_entropy_loss_is_binary_cross_entropy_of_the_logit(real_ids: torch.Tensor) -> None:
    cnn = GenomicBenchmarksCNN(2, input_len=64, loss="cross_entropy")
    with torch.no_grad():
        logits = cnn(real_ids)
    y = torch.tensor([i % 2 for i in range(12)])
    z = logits[:, 1] - logits[:, 0]
    expect = -np.mean([np.log(1 / (1 + np.exp(-float(v)))) if t else np.log(1 - 1 / (1 + np.exp(-float(v))))
                       for v, t in zip(z, y)])
    assert float(cnn.training_loss(logits, y)) == pytest.approx(expect, rel=1e-5)
    with pytest.raises(ValueError, match="unknown CNN loss 'mse'"):
        GenomicBenchmarksCNN(2, input_len=64, loss="mse")


class _Loader(list):
    """A list of batches with the two things ``CNN.train_loop`` asks of a DataLoader."""

    @property
    def dataset(self) -> list:
        return [None] * sum(len(x) for x, _ in self)
