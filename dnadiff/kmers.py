"""A/C/G/T letter codes and k-mer counts of DNA strings: shared by the languages' fits (data) and
the sample metrics, so they sit below both."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

_CODE = np.full(256, -1, dtype=np.int64)
for _i, _c in enumerate("ACGT"):
    _CODE[ord(_c)] = _i
    _CODE[ord(_c.lower())] = _i


def encode_acgt(seq: str) -> np.ndarray:
    """Letters -> 0..3 for A, C, G, T (either case), -1 for anything else."""
    return _CODE[np.frombuffer(seq.encode("ascii", errors="replace"), dtype=np.uint8)]


def kmer_counts(seqs: Iterable[str], k: int) -> np.ndarray:
    """Counts of the 4^k k-mers (index = base-4 number, A=0 .. T=3, first letter most significant)."""
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= 12:
        raise ValueError(f"k must be an int in 1..12, got {k!r}")
    counts = np.zeros(4**k, dtype=np.int64)
    for seq in seqs:
        codes = encode_acgt(seq)
        n = codes.size - k + 1
        if n < 1:
            continue
        index = np.zeros(n, dtype=np.int64)
        valid = np.ones(n, dtype=bool)
        for j in range(k):
            part = codes[j : j + n]
            index = index * 4 + np.maximum(part, 0)
            valid &= part >= 0
        counts += np.bincount(index[valid], minlength=4**k)
    return counts
