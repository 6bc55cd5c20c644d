"""Leak-free data splits for cross-validation: deduplication, subsampling, stratified folds.

Identical sequences would leak between a training fold and the fold (or test split) that
selects or evaluates the model, so sequences are compared by a canonical key: the upper-cased
sequence or its reverse complement, whichever sorts first (a sequence and its reverse
complement are the same double-stranded DNA, and RC-aware models see them as one).

- :func:`deduplicate` keeps the first copy of each key; keys seen with different labels are
  dropped altogether (their label is ambiguous).
- :func:`drop_overlap` removes from a training pool every sequence whose key is in the
  evaluation split.
- :func:`stratified_subsample` keeps at most N per class (seeded), for CPU-sized runs.
- :func:`make_folds` is sklearn's ``StratifiedKFold(shuffle=True, random_state=seed)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import StratifiedKFold

from dnadiff.tokenizer import reverse_complement_text

def canonical_key(seq: str) -> str:
    """Strand-independent key: min(upper(seq), reverse_complement(upper(seq)))."""
    s = seq.upper()
    return min(s, reverse_complement_text(s))


@dataclass(frozen=True)
class DedupResult:
    """Indices kept by :func:`deduplicate` and how many rows were dropped and why."""

    keep: np.ndarray
    n_duplicates: int
    n_conflicting: int


def deduplicate(seqs: Sequence[str], labels: np.ndarray) -> DedupResult:
    """Keep one copy per canonical sequence; drop every copy of a sequence with conflicting labels."""
    first: dict[str, int] = {}
    label_sets: dict[str, set[int]] = {}
    for i, s in enumerate(seqs):
        key = canonical_key(s)
        first.setdefault(key, i)
        label_sets.setdefault(key, set()).add(int(labels[i]))
    conflicting = {k for k, v in label_sets.items() if len(v) > 1}
    keep = np.array(sorted(i for k, i in first.items() if k not in conflicting), dtype=np.int64)
    n_conf = sum(1 for s in seqs if canonical_key(s) in conflicting)
    return DedupResult(keep=keep, n_duplicates=len(seqs) - len(first), n_conflicting=n_conf)


def drop_overlap(pool: Sequence[str], held_out: Sequence[str]) -> np.ndarray:
    """Indices of ``pool`` whose canonical sequence does not occur in ``held_out``."""
    banned = {canonical_key(s) for s in held_out}
    return np.array([i for i, s in enumerate(pool) if canonical_key(s) not in banned], dtype=np.int64)


def stratified_subsample(labels: np.ndarray, max_per_class: int | None, seed: int) -> np.ndarray:
    """Sorted indices of at most ``max_per_class`` rows per class (all rows when None)."""
    labels = np.asarray(labels)
    if max_per_class is None:
        return np.arange(len(labels))
    if max_per_class < 1:
        raise ValueError(f"data.max_per_class must be a positive integer or null, got {max_per_class}")
    rng = np.random.default_rng(seed)
    picked = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        picked.append(idx if len(idx) <= max_per_class else rng.choice(idx, max_per_class, replace=False))
    return np.sort(np.concatenate(picked))


def make_folds(labels: np.ndarray, n_folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified K folds as (train_idx, heldout_idx) pairs, deterministic for ``seed``."""
    labels = np.asarray(labels)
    if n_folds < 2:
        raise ValueError(f"cv.folds must be >= 2, got {n_folds}")
    counts = np.bincount(labels)
    smallest = int(counts[counts > 0].min()) if counts.size else 0
    if smallest < n_folds:
        raise ValueError(
            f"cv.folds={n_folds} needs at least {n_folds} sequences per class; the smallest class has {smallest}"
        )
    skf = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    return [(tr, va) for tr, va in skf.split(np.zeros(len(labels)), labels)]
