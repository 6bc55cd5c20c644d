"""The two evaluation protocols of ``python -m dnadiff.finetune``: ``cv.protocol=seeds`` (the Caduceus/MDLM
papers' seeded 90/10 train/validation splits of the train split, official test split) next to the
default K-fold CV; every output says which ran; the class-label order. Real Genomic Benchmarks sequences."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from dnadiff.cli import load_config
from dnadiff.config import ConfigError
from dnadiff.data.benchmarks import load_task
from dnadiff.finetune import finetune
from dnadiff.finetuning.cv import prepare_task, seed_splits
from dnadiff.finetuning.folds import canonical_key
from dnadiff.metrics.classification import classification_metrics

ENHANCERS = "human_enhancers_cohn"


@pytest.fixture(scope="module")
def enhancers(shared_data: Path) -> tuple[list[str], np.ndarray]:
    seqs, labels, classes = load_task(ENHANCERS, shared_data / "genomic_benchmarks", "test")
    assert classes == ["negative", "positive"]
    return seqs, labels


def write_layout(root: Path, split: str, seqs: list[str], labels: np.ndarray, length: int = 60) -> None:
    """A genomic-benchmarks layout folder (``<task>/<split>/<class>/r<k>.txt``) of real sequences."""
    for i, (s, y) in enumerate(zip(seqs, labels)):
        d = root / ENHANCERS / split / ("positive" if y else "negative")
        d.mkdir(parents=True, exist_ok=True)
        (d / f"r{i}.txt").write_text(s[:length])


def pick(labels: np.ndarray, per_class: int, offset: int = 0) -> np.ndarray:
    """``per_class`` rows of each class, starting at the ``offset``-th of each."""
    return np.concatenate([np.flatnonzero(labels == c)[offset:offset + per_class] for c in (0, 1)])


def papers_split(n: int, seed: int, valid_fraction: float = 0.1) -> tuple[list[int], list[int]]:
    """Caduceus' ``random_split(data, lengths=[0.1, 0.9], generator=manual_seed(seed))``, written out:
    floor lengths, the remainder one by one from the first, then a seeded randperm, validation first."""
    lengths = [int(np.floor(n * valid_fraction)), int(np.floor(n * (1 - valid_fraction)))]
    for i in range(n - sum(lengths)):
        lengths[i % 2] += 1
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    return sorted(perm[lengths[0]:]), sorted(perm[:lengths[0]])


def test_seeds_protocol_is_the_papers_split_with_the_official_test_set(enhancers, tmp_path: Path) -> None:
    seqs, labels = enhancers
    train, test = pick(labels, 105), pick(labels, 30, offset=200)
    write_layout(tmp_path, "train", [seqs[i] for i in train], labels[train])
    write_layout(tmp_path, "test", [seqs[i] for i in test], labels[test])
    data = prepare_task(ENHANCERS, tmp_path, None, 0, 5, protocol="seeds", n_seeds=5)
    assert not data.test_is_slice and data.eval_split == "test" and len(data.test_seqs) == 60
    assert "seeds protocol" in data.split_used and "official test split" in data.split_used
    assert not {canonical_key(s) for s in data.test_seqs} & {canonical_key(s) for s in data.pool_seqs}
    n = len(data.pool_seqs)
    splits = seed_splits(data, [1, 2, 3, 4, 5])
    for sp in splits:
        expect_train, expect_valid = papers_split(n, sp.seed)
        assert sp.train.tolist() == expect_train and sp.select.tolist() == expect_valid
        assert len(sp.select) == round(0.1 * n) and sp.fold is None and sp.eval_on_test
        assert sp.evaluate.tolist() == list(range(60))
    assert len({tuple(sp.select) for sp in splits}) == 5


def test_seeds_protocol_on_one_split_says_what_it_did_instead(enhancers, tmp_path: Path) -> None:
    seqs, labels = enhancers
    rows = pick(labels, 100)
    write_layout(tmp_path, "test", [seqs[i] for i in rows], labels[rows])
    data = prepare_task(ENHANCERS, tmp_path, None, 0, 5, protocol="seeds", n_seeds=5, test_fraction=0.2)
    assert data.test_is_slice and data.pool_split == "test"
    assert "NOT the papers' data" in data.split_used and "stands in for the official test split" in data.split_used
    assert "slice" in data.eval_split
    assert np.bincount(data.test_labels).tolist() == [20, 20] and len(data.pool_seqs) == 160
    held = {canonical_key(s) for s in data.test_seqs}
    assert not held & {canonical_key(s) for s in data.pool_seqs}
    again = prepare_task(ENHANCERS, tmp_path, None, 0, 5, protocol="seeds", test_fraction=0.2)
    other = prepare_task(ENHANCERS, tmp_path, None, 1, 5, protocol="seeds", test_fraction=0.2)
    assert again.test_seqs == data.test_seqs and other.test_seqs != data.test_seqs
    kfold = prepare_task(ENHANCERS, tmp_path, None, 0, 5)
    assert kfold.test_seqs is None and "kfold protocol" in kfold.split_used


def run_cfg(root: Path, out: Path, protocol: str) -> dict:
    return {
        "task": ENHANCERS, "out_dir": str(out), "baseline": True, "device": "cpu", "progress": False,
        "model": {"name": "bimamba", "arch": "bimamba", "d_model": 16, "n_layer": 1, "scan_backend": "torch"},
        "data": {"root": str(root), "max_len": 60},
        "cv": {"protocol": protocol, "folds": 2},
        "trainer": {"max_epochs": 1, "batch_size": 16},
        "baseline_cnn": {"max_epochs": 1},
    }


def test_every_output_states_the_protocol(enhancers, tmp_path: Path, capsys) -> None:
    seqs, labels = enhancers
    rows = pick(labels, 30)
    write_layout(tmp_path / "gb", "test", [seqs[i] for i in rows], labels[rows])
    (seeds,) = finetune(run_cfg(tmp_path / "gb", tmp_path / "seeds", "seeds"))
    line = capsys.readouterr().out
    saved = json.loads((tmp_path / "seeds" / ENHANCERS / "cv.json").read_text())
    assert saved["protocol"]["name"] == "seeds" and saved["protocol"]["seeds"] == [0, 1, 2, 3, 4]
    assert len(saved["folds"]) == 5 and all(r["fold"] is None for r in saved["folds"])
    assert len(saved["baseline"]["folds"]) == 5
    assert [r["n_eval"] for r in saved["folds"]] == [12] * 5  # the stand-in test slice: 20% of 60
    assert "NOT the papers' data" in saved["split_used"] and saved["class_names"] == ["negative", "positive"]
    assert "- protocol: seeds" in (tmp_path / "seeds" / ENHANCERS / "cv.md").read_text()
    assert "[protocol seeds;" in line
    (kfold,) = finetune(run_cfg(tmp_path / "gb", tmp_path / "kfold", "kfold"))
    assert kfold["protocol"]["name"] == "kfold" and [r["fold"] for r in kfold["folds"]] == [0, 1]
    assert "- protocol: kfold" in (tmp_path / "kfold" / ENHANCERS / "cv.md").read_text()
    assert "[protocol kfold;" in capsys.readouterr().out
    assert seeds["accuracy_std"] >= 0 and 0 <= seeds["accuracy_mean"] <= 1


def test_protocol_keys_are_typed_and_checked() -> None:
    assert load_config("finetune").cv.protocol == "kfold"
    assert load_config("finetune").cv.seed_list() == [0]
    assert load_config("finetune", ["cv.protocol=seeds"]).cv.seed_list() == [0, 1, 2, 3, 4]
    assert load_config("finetune", ["cv.protocol=seeds", "cv.seed=1", "cv.seeds=3"]).cv.seed_list() == [1, 2, 3]
    with pytest.raises(ConfigError, match="cv.protocol"):
        load_config("finetune", ["cv.protocol=loo"])
    with pytest.raises(ConfigError, match="cv.valid_fraction"):
        load_config("finetune", ["cv.valid_fraction=0.7"])
    with pytest.raises(ConfigError, match="baseline_cnn.loss"):
        load_config("finetune", ["baseline_cnn.loss=mse"])


def test_labels_are_sorted_folder_names_and_metrics_ignore_the_order(enhancers, tmp_path: Path) -> None:
    """dnadiff's label i is the i-th class folder name in sorted order, whatever order the folders were
    created or listed in; the reported metrics do not change when labels are permuted."""
    seqs, labels = enhancers
    for cls in ("promoter", "enhancer", "ocr"):  # created out of order
        d = tmp_path / "human_ensembl_regulatory" / "train" / cls
        d.mkdir(parents=True)
        for k in range(3):
            (d / f"r{k}.txt").write_text(seqs[k + 10 * len(cls)][:50])
    _, y, classes = load_task("human_ensembl_regulatory", tmp_path, "train")
    assert classes == ["enhancer", "ocr", "promoter"] and y.tolist() == [0] * 3 + [1] * 3 + [2] * 3
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 3, 300)
    proba = rng.dirichlet(np.ones(3), 300) + 0.5 * np.eye(3)[truth]
    proba /= proba.sum(1, keepdims=True)
    perm = np.array([2, 0, 1])  # class c becomes class perm[c]
    relabelled = np.empty_like(proba)
    relabelled[:, perm] = proba
    a, b = classification_metrics(truth, proba), classification_metrics(perm[truth], relabelled)
    for metric in ("accuracy", "mcc", "f1", "auroc"):
        assert a[metric] == pytest.approx(b[metric], abs=1e-12), metric
