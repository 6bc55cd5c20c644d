"""Cross-validation splits: disjoint, stratified, exhaustive, deterministic, leak-free; metrics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dnadiff.data.benchmarks import load_task
from dnadiff.metrics.classification import classification_metrics, summarize
from dnadiff.finetuning.cv import cv_splits, prepare_task
from dnadiff.finetuning.folds import canonical_key, deduplicate, drop_overlap, make_folds, stratified_subsample

ENHANCERS = "human_enhancers_cohn"


@pytest.fixture(scope="module")
def gb_root(shared_data: Path) -> Path:
    return shared_data / "genomic_benchmarks"


@pytest.fixture(scope="module")
def enhancer_labels(gb_root: Path) -> np.ndarray:
    _, labels, _ = load_task(ENHANCERS, gb_root, "test")
    return labels


def test_folds_disjoint_cover_once_and_stratified(enhancer_labels: np.ndarray) -> None:
    labels = enhancer_labels
    folds = make_folds(labels, 5, seed=0)
    assert len(folds) == 5
    held = np.concatenate([ho for _, ho in folds])
    assert np.array_equal(np.sort(held), np.arange(len(labels))), "held-out folds must cover every row exactly once"
    overall = np.bincount(labels) / len(labels)
    for tr, ho in folds:
        assert not set(tr) & set(ho)
        assert len(tr) + len(ho) == len(labels)
        frac = np.bincount(labels[ho], minlength=len(overall)) / len(ho)
        assert np.abs(frac - overall).max() < 2 / len(ho), f"fold class fractions {frac} vs {overall}"


def test_folds_deterministic_for_seed(enhancer_labels: np.ndarray) -> None:
    a = make_folds(enhancer_labels, 5, seed=3)
    b = make_folds(enhancer_labels, 5, seed=3)
    c = make_folds(enhancer_labels, 5, seed=4)
    assert all(np.array_equal(x[1], y[1]) for x, y in zip(a, b))
    assert not all(np.array_equal(x[1], y[1]) for x, y in zip(a, c))


def test_fold_errors_name_the_value() -> None:
    with pytest.raises(ValueError, match="cv.folds=5"):
        make_folds(np.array([0, 0, 0, 1, 1, 1, 1, 1, 1]), 5, seed=0)
    with pytest.raises(ValueError, match="cv.folds must be >= 2, got 1"):
        make_folds(np.array([0, 1] * 5), 1, seed=0)
    with pytest.raises(ValueError, match="max_per_class"):
        stratified_subsample(np.array([0, 1]), 0, seed=0)


def test_stratified_subsample(enhancer_labels: np.ndarray) -> None:
    idx = stratified_subsample(enhancer_labels, 37, seed=1)
    assert np.array_equal(np.bincount(enhancer_labels[idx]), [37, 37])
    assert np.array_equal(idx, stratified_subsample(enhancer_labels, 37, seed=1))
    assert len(np.unique(idx)) == len(idx)


def test_canonical_key_and_dedup() -> None:
    assert canonical_key("aacg") == canonical_key("CGTT") == "AACG"
    seqs = ["AACG", "cgtt", "GGGA", "TTTT", "AAAA", "GGGA", "CCCA"]
    labels = np.array([0, 0, 1, 0, 1, 1, 0])
    res = deduplicate(seqs, labels)
    # AACG/cgtt same strand pair (kept once); GGGA twice same label (kept once);
    # TTTT/AAAA are reverse complements with different labels (both dropped); CCCA kept.
    assert [seqs[i] for i in res.keep] == ["AACG", "GGGA", "CCCA"]
    assert res.n_duplicates == 3 and res.n_conflicting == 2
    assert list(drop_overlap(["AACG", "GGGA", "CCCA"], ["tggg"])) == [0, 1]  # rc(TGGG) = CCCA


def _write_layout(root: Path, task: str, split: str, seqs: list[str], labels: list[int], classes=("negative", "positive")) -> None:
    for i, (s, y) in enumerate(zip(seqs, labels)):
        d = root / task / split / classes[y]
        d.mkdir(parents=True, exist_ok=True)
        (d / f"r{i}.txt").write_text(s)


def _random_seqs(n: int, length: int, rng: np.random.Generator) -> list[str]:
    return ["".join(rng.choice(list("ACGT"), length)) for _ in range(n)]


def test_one_split_protocol_never_trains_or_selects_on_eval(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    seqs = _random_seqs(60, 30, rng)
    labels = [i % 2 for i in range(60)]
    rc = seqs[0].translate(str.maketrans("ACGT", "TGCA"))[::-1]
    seqs += [seqs[0], rc.lower(), seqs[5], seqs[7]]  # duplicates (one on the other strand), one conflicting
    labels += [0, 0, 1, 0]
    _write_layout(tmp_path, ENHANCERS, "test", seqs, labels)
    data = prepare_task(ENHANCERS, tmp_path, None, seed=0, n_folds=5)
    assert data.test_seqs is None and data.pool_split == "test"
    assert "test only" in data.split_used and "held-out fold" in data.split_used
    # seqs[0] x3 and seqs[5] x2 kept once each; seqs[7] seen with labels 1 and 0 -> dropped
    assert len(data.pool_seqs) == 59
    assert seqs[7] not in data.pool_seqs
    keys = [canonical_key(s) for s in data.pool_seqs]
    assert len(set(keys)) == len(keys)
    splits = cv_splits(data, 5, seeds=[0, 1], select_fraction=0.2)
    assert len(splits) == 10
    for seed in (0, 1):
        evals = np.concatenate([sp.evaluate for sp in splits if sp.seed == seed])
        assert np.array_equal(np.sort(evals), np.arange(len(keys)))
    for sp in splits:
        ev = {keys[i] for i in sp.evaluate}
        assert not ev & {keys[i] for i in sp.train}
        assert not ev & {keys[i] for i in sp.select}
        assert not set(sp.train) & set(sp.select)


def test_two_split_protocol_drops_test_sequences_from_training(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    test = _random_seqs(20, 40, rng)
    test_labels = [i % 2 for i in range(20)]
    train = _random_seqs(40, 40, rng)
    train_labels = [i % 2 for i in range(40)]
    rc = test[3].translate(str.maketrans("ACGT", "TGCA"))[::-1]
    train += [test[0], rc]  # a test sequence, and another one's reverse complement
    train_labels += [0, 1]
    _write_layout(tmp_path, ENHANCERS, "test", test, test_labels)
    _write_layout(tmp_path, ENHANCERS, "train", train, train_labels)
    data = prepare_task(ENHANCERS, tmp_path, None, seed=0, n_folds=5)
    assert data.test_seqs is not None and data.eval_split == "test"
    assert "accuracy on the test split" in data.split_used
    assert any("also in the test split" in n for n in data.notes)
    test_keys = {canonical_key(s) for s in test}
    assert not test_keys & {canonical_key(s) for s in data.pool_seqs}
    assert len(data.pool_seqs) == 40


def test_metrics_match_hand_computation() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    p1 = np.clip(0.3 * y + rng.random(200) * 0.7, 0, 1)
    proba = np.stack([1 - p1, p1], axis=1)
    m = classification_metrics(y, proba)
    pred = (p1 > 0.5).astype(int)
    tp = int(((pred == 1) & (y == 1)).sum())
    tn = int(((pred == 0) & (y == 0)).sum())
    fp = int(((pred == 1) & (y == 0)).sum())
    fn = int(((pred == 0) & (y == 1)).sum())
    mcc = (tp * tn - fp * fn) / np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    f1_pos = 2 * tp / (2 * tp + fp + fn)
    f1_neg = 2 * tn / (2 * tn + fn + fp)
    pos, neg = p1[y == 1], p1[y == 0]
    auroc = ((pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()) / (len(pos) * len(neg))
    assert m["accuracy"] == pytest.approx((tp + tn) / 200)
    assert m["mcc"] == pytest.approx(mcc)
    assert m["f1"] == pytest.approx((f1_pos + f1_neg) / 2)
    assert m["auroc"] == pytest.approx(auroc)
    s = summarize([{"accuracy": 0.6, "mcc": 0.1, "f1": 0.5, "auroc": 0.7}, {"accuracy": 0.8, "mcc": 0.3, "f1": 0.7, "auroc": 0.9}])
    assert s["accuracy_mean"] == pytest.approx(0.7) and s["accuracy_std"] == pytest.approx(np.sqrt(0.02))
