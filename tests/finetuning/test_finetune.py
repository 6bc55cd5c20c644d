"""Classification heads, RC handling, the CNN baseline, a real-data fine-tune, and the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from dnadiff import Tokenizer, build_model
from dnadiff.models.cnn import GenomicBenchmarksCNN
from dnadiff.data.benchmarks import load_task
from dnadiff.models.heads import SequenceClassifier, pool_hidden, reverse_complement_padded
from dnadiff.finetuning.cv import encode
from dnadiff.finetune import finetune as run
from dnadiff.finetuning.loop import FitConfig, fit_select, predict_proba
from dnadiff.finetuning.folds import stratified_subsample

REPO = Path(__file__).resolve().parents[2]
ENHANCERS = "human_enhancers_cohn"


@pytest.fixture(scope="module")
def gb_root(shared_data: Path) -> Path:
    return shared_data / "genomic_benchmarks"


@pytest.fixture(scope="module")
def enhancers(gb_root: Path) -> tuple[list[str], np.ndarray]:
    seqs, labels, _ = load_task(ENHANCERS, gb_root, "test")
    return seqs, labels


def test_pooling_matches_loops() -> None:
    h = torch.randn(3, 6, 4)
    lengths = [6, 3, 1]
    mask = torch.tensor([[i < n for i in range(6)] for n in lengths])
    mean, last, mx = (pool_hidden(h, mask, m) for m in ("mean", "last", "max"))
    for b, n in enumerate(lengths):
        assert torch.allclose(mean[b], h[b, :n].mean(0), atol=1e-6)
        assert torch.equal(last[b], h[b, n - 1])
        assert torch.equal(mx[b], h[b, :n].max(0).values)
    with pytest.raises(ValueError, match="unknown pooling 'sum'"):
        SequenceClassifier(build_model("mamba", d_model=16, n_layer=1), 2, pooling="sum")


def test_auto_pooling_follows_causality() -> None:
    assert SequenceClassifier(build_model("mamba", d_model=16, n_layer=1), 2).pooling == "last"
    assert SequenceClassifier(build_model("bimamba", d_model=16, n_layer=1), 2).pooling == "mean"


def test_reverse_complement_padded_matches_tokenizer(tokenizer: Tokenizer) -> None:
    seqs = ["ACGTTG", "GGA", "T"]
    ids = tokenizer.encode_batch(seqs)
    out = reverse_complement_padded(ids, torch.tensor([6, 3, 1]), tokenizer.complement_map)
    for row, s in zip(out, seqs):
        expect = tokenizer.reverse_complement(tokenizer.encode(s))
        assert torch.equal(row[: len(s)], expect)
        assert (row[len(s):] == tokenizer.pad_id).all()


def test_ps_pooling_is_rc_invariant(enhancers, tokenizer: Tokenizer) -> None:
    seqs, _ = enhancers
    ids = tokenizer.encode_batch([s[:120] for s in seqs[:4]])
    clf = SequenceClassifier(build_model("caduceus_ps", d_model=16, n_layer=2), 2, dropout=0.0).eval()
    assert clf.rc_invariant and clf.pooling == "mean"
    with torch.no_grad():
        a, b = clf(ids), clf(tokenizer.reverse_complement(ids))
    assert torch.allclose(a, b, atol=1e-5), (a - b).abs().max()
    assert torch.equal(a.argmax(1), b.argmax(1))


def test_ph_conjoining_is_rc_invariant_with_padding(enhancers, tokenizer: Tokenizer) -> None:
    seqs, _ = enhancers
    batch = [seqs[0][:100], seqs[1][:70], seqs[2][:40]]
    ids = tokenizer.encode_batch(batch)
    rc = tokenizer.encode_batch([tokenizer.decode(tokenizer.reverse_complement(tokenizer.encode(s))) for s in batch])
    torch.manual_seed(0)
    backbone = build_model("caduceus_ph", d_model=16, n_layer=2)
    plain = SequenceClassifier(backbone, 2, dropout=0.0).eval()
    conj = SequenceClassifier(backbone, 2, dropout=0.0, conjoin=True).eval()
    conj.head.load_state_dict(plain.head.state_dict())
    with torch.no_grad():
        assert not torch.allclose(plain(ids), plain(rc), atol=1e-4), "a plain BiMamba should not be RC-invariant"
        a, b = conj(ids), conj(rc)
        assert torch.allclose(a, b, atol=1e-5), (a - b).abs().max()
        assert torch.allclose(a, 0.5 * (plain(ids) + plain(rc)), atol=1e-5)


def test_frozen_backbone_is_a_probe(enhancers, tokenizer: Tokenizer) -> None:
    seqs, labels = enhancers
    ids = tokenizer.encode_batch([s[:40] for s in seqs[:16]])
    y = torch.from_numpy(labels[:16])
    clf = SequenceClassifier(build_model("bimamba", d_model=16, n_layer=1), 2, freeze_backbone=True)
    before = {k: v.clone() for k, v in clf.state_dict().items()}
    fit_select(clf, (ids, y), (ids, y), FitConfig(max_epochs=1, batch_size=8, lr=1e-2), seed=0, progress=False)
    after = clf.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith("backbone."))
    assert not torch.equal(before["head.1.weight"], after["head.1.weight"])


def test_cnn_baseline_shapes() -> None:
    cnn = GenomicBenchmarksCNN(3, input_len=80)
    assert cnn(torch.randint(7, 11, (2, 50))).shape == (2, 3)
    assert cnn(torch.randint(7, 11, (2, 200))).shape == (2, 3)
    n = GenomicBenchmarksCNN.min_input_len()
    GenomicBenchmarksCNN(2, input_len=n)
    with pytest.raises(ValueError, match=f"input_len={n - 1} is too short"):
        GenomicBenchmarksCNN(2, input_len=n - 1)


def test_finetuned_tiny_model_beats_chance_on_enhancers(enhancers) -> None:
    """Real data: 256 training windows (100 bp, centre), 2 epochs; accuracy on 300 unseen windows."""
    seqs, labels = enhancers
    idx = stratified_subsample(labels, 400, seed=0)
    np.random.default_rng(0).shuffle(idx)
    train, select, held = idx[:256], idx[256:356], idx[-300:]
    ids = encode([seqs[i] for i in idx], 100, Tokenizer())
    pos = {int(j): k for k, j in enumerate(idx)}
    rows = lambda part: ids[[pos[int(j)] for j in part]]  # noqa: E731
    y = torch.from_numpy(labels)
    torch.manual_seed(0)
    clf = SequenceClassifier(build_model("bimamba", d_model=32, n_layer=1), 2, dropout=0.0)
    fit_select(clf, (rows(train), y[train]), (rows(select), y[select]), FitConfig(max_epochs=2, lr=3e-3), seed=0,
               progress=False)
    acc = float((predict_proba(clf, rows(held)).argmax(1) == labels[held]).mean())
    # chance is 0.5; 0.57 is 2.4 binomial standard errors (n=300) above it
    assert acc >= 0.57, f"held-out accuracy {acc:.3f} on {len(held)} enhancer windows is not clearly above chance"


def test_cli_writes_cv_json(gb_root: Path, tmp_path: Path) -> None:
    cmd = [
        sys.executable, "-m", "dnadiff.finetune", "task=enhancers", f"data.root={gb_root}", "data.max_per_class=20",
        "data.max_len=64", "cv.folds=2", "trainer.max_epochs=1", "model.d_model=16", "model.n_layer=1",
        f"out_dir={tmp_path}", "progress=false",
    ]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    res = json.loads((tmp_path / ENHANCERS / "cv.json").read_text())
    for key in ("task", "split_used", "folds", "accuracy_mean", "accuracy_std", "baseline"):
        assert key in res, key
    assert res["task"] == ENHANCERS and "test only" in res["split_used"]
    assert len(res["folds"]) == 2 and {"accuracy", "mcc", "auroc", "f1"} <= set(res["folds"][0])
    assert len(res["baseline"]["folds"]) == 2 and "accuracy_mean" in res["baseline"]
    assert res["conjoin"] is True  # the default model is Caduceus-PH
    assert "accuracy" in (tmp_path / ENHANCERS / "cv.md").read_text()
    assert ENHANCERS in proc.stdout


def test_cli_help_and_unknown_task(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "dnadiff.finetune", "--help"], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0 and "max_per_class" in proc.stdout
    with pytest.raises(ValueError, match="unknown Genomic Benchmarks task 'enhancer_x'.*human_enhancers_cohn"):
        run({"task": "enhancer_x", "out_dir": str(tmp_path)})


def test_fit_is_deterministic_for_a_seed(enhancers, tokenizer: Tokenizer) -> None:
    seqs, labels = enhancers
    ids = tokenizer.encode_batch([s[:32] for s in seqs[:24]])
    y = torch.from_numpy(labels[:24])
    runs = []
    for _ in range(2):
        torch.manual_seed(7)
        clf = SequenceClassifier(build_model("bimamba", d_model=16, n_layer=1), 2)
        fit = fit_select(clf, (ids[:16], y[:16]), (ids[16:], y[16:]), FitConfig(max_epochs=1, batch_size=8), seed=7,
                         progress=False)
        runs.append((fit.history, predict_proba(clf, ids)))
    assert runs[0][0] == runs[1][0]
    assert np.array_equal(runs[0][1], runs[1][1])


def test_task_all_skips_absent_tasks_with_reason(enhancers, tmp_path: Path) -> None:
    seqs, labels = enhancers
    root = tmp_path / "gb"
    for i in list(range(10)) + list(range(len(seqs) - 10, len(seqs))):
        d = root / ENHANCERS / "test" / ("positive" if labels[i] else "negative")
        d.mkdir(parents=True, exist_ok=True)
        (d / f"r{i}.txt").write_text(seqs[i][:48])
    cfg = {
        "task": "all", "ckpt": None, "out_dir": str(tmp_path / "out"), "baseline": False, "device": "cpu",
        "model": {"name": "bimamba", "arch": "bimamba", "d_model": 16, "n_layer": 1},
        "data": {"root": str(root), "max_per_class": None, "max_test_per_class": None, "max_len": 48},
        "cv": {"folds": 2, "seeds": 1, "seed": 0, "select_fraction": 0.2},
        "head": {"pooling": "auto", "type": "mlp", "mlp_hidden": 8, "dropout": 0.0, "rc_invariant": "auto",
                 "conjoin": "auto", "freeze_backbone": False},
        "trainer": {"max_epochs": 1, "batch_size": 8},
    }
    results = run({**cfg, "progress": False})
    assert len(results) == 9
    done = [r for r in results if not r.get("skipped")]
    assert [r["task"] for r in done] == [ENHANCERS]
    assert all("not found" in r["reason"] and "data.root" in r["reason"] for r in results if r.get("skipped"))
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert sum(not s["skipped"] for s in summary) == 1
