"""Labelled sequences for class-conditional pretraining: padding, augmentation, label dropout, end to end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from dnadiff import Tokenizer
from dnadiff.data.labelled import BenchmarkSource, LabelledSequences
from dnadiff.data.sources import data_source
from dnadiff.checkpoint import read_metadata

TOK = Tokenizer()


def test_padding_rc_augmentation_and_label_dropout() -> None:
    seqs = ["ACGTTGCA" * 4, "GGGAC"]
    ds = LabelledSequences(seqs, np.array([1, 0]), n_classes=2, seq_len=16, label_dropout=0.3, rc_aug=True)
    assert ds[1]["input_ids"].tolist() == TOK.encode("GGGAC").tolist() + [TOK.pad_id] * 11
    assert TOK.decode(ds[0]["input_ids"]) == seqs[0][8:24], "long sequences are centre-cropped"
    rng = np.random.default_rng(0)
    draws = [ds.sample(1, rng) for _ in range(4000)]
    rc = TOK.reverse_complement(TOK.encode("GGGAC"))
    flipped = [d for d in draws if d["input_ids"][:5].tolist() == rc.tolist()]
    assert all(d["input_ids"][5:].eq(TOK.pad_id).all() for d in draws), "padding stays on the right"
    assert abs(len(flipped) / len(draws) - 0.5) < 4 * np.sqrt(0.25 / len(draws))
    null = np.mean([int(d["cond"]) == 2 for d in draws])
    assert abs(null - 0.3) < 4 * np.sqrt(0.21 / len(draws)), null
    assert {int(d["cond"]) for d in draws} == {0, 2}


def test_benchmark_source_holds_out_disjoint_splits(shared_data: Path) -> None:
    root = shared_data / "genomic_benchmarks"
    dm = data_source({"source": "benchmark", "task": "enhancers", "root": str(root), "seq_len": 64,
                      "max_eval_windows": None})
    assert isinstance(dm, BenchmarkSource) and dm.classes == ["negative", "positive"]
    sizes = {s: len(dm.dataset(s)) for s in ("train", "valid", "test")}
    assert sum(sizes.values()) == 6948 and sizes["test"] == sizes["valid"] == 694
    rows = {s: {bytes(dm.dataset(s).ids[i]) for i in range(len(dm.dataset(s)))} for s in sizes}
    assert len(rows["test"] & rows["train"]) <= 2, "held-out rows are not training rows (bar duplicated sequences)"
    with pytest.raises(ValueError, match="unknown config key data.bogus"):
        data_source({"source": "benchmark", "task": "enhancers", "root": str(root), "bogus": 1})
    with pytest.raises(ValueError, match="data.source must be one of genome, benchmark; got 'bam'"):
        data_source({"source": "bam"})


def test_class_conditional_pretraining_records_classes(tmp_path: Path, shared_data: Path) -> None:
    from tests.train.test_pretrain import make_cfg

    from dnadiff.pretrain import run

    cfg = make_cfg(tmp_path, None, "data=benchmark",
                   f"data.root={shared_data / 'genomic_benchmarks'}", "data.task=enhancers",
                   "trainer.max_steps=2", "trainer.val_check_interval=2", "trainer.checkpoint_every=2",
                   "model.d_model=16", "model.n_layer=1")
    summary = run(cfg)
    meta = read_metadata(tmp_path / "last.ckpt")
    assert meta["classes"] == ["negative", "positive"] and meta["model"]["n_classes"] == 2
    assert summary["classes"] == ["negative", "positive"]
    from dnadiff import load_model

    model = load_model(tmp_path / "last.ckpt")
    x = TOK.encode_batch(["ACGT" * 16])
    assert not torch.allclose(model(x, cond=torch.tensor([0])), model(x, cond=torch.tensor([1])))
