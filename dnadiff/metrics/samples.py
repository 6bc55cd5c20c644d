"""Sequence-level quality metrics of generated DNA against a reference set.

- k-mer spectra and their Jensen-Shannon divergence (base 2: 0 for identical spectra, 1 bit
  for disjoint ones), counted on both sequences' A/C/G/T letters (k-mers containing any other
  letter are skipped; case is ignored).
- GC content per sequence (G+C over A/C/G/T letters) and the 1-D Wasserstein-1 distance
  between two GC distributions.
- Diversity: mean pairwise Hamming distance per base, and the fraction of distinct sequences.
- Memorisation: each sample's nearest-neighbour identity (fraction of identical positions,
  ungapped) to every window of its length in the reference (both strands), exact, by FFT
  cross-correlation of letter tracks (O(M log M) per sample for M reference bases).
- Frechet distance between two sets of feature vectors (Gaussian fits).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import torch
from scipy import linalg, stats

from dnadiff.tokenizer import reverse_complement_text

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


def js_divergence(p: np.ndarray, q: np.ndarray, base: float = 2.0) -> float:
    """Jensen-Shannon divergence of two count (or probability) vectors: in [0, log_base 2]."""
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    if p.shape != q.shape:
        raise ValueError(f"spectra have different shapes {p.shape} and {q.shape}")
    if p.sum() <= 0 or q.sum() <= 0:
        raise ValueError("cannot compare an empty spectrum (no valid k-mer)")
    p, q = p / p.sum(), q / q.sum()
    m = 0.5 * (p + q)

    def kl(a: np.ndarray) -> float:
        nz = a > 0
        return float(np.sum(a[nz] * np.log(a[nz] / m[nz])))

    return float(max(0.0, 0.5 * (kl(p) + kl(q)) / np.log(base)))


def kmer_js(samples: Sequence[str], reference: Sequence[str], ks: Iterable[int] = range(1, 7)) -> dict[str, float]:
    """{str(k): JS divergence (bits) of the k-mer spectra of samples and reference}."""
    return {str(k): js_divergence(kmer_counts(samples, k), kmer_counts(reference, k)) for k in ks}


def gc_content(seqs: Iterable[str]) -> np.ndarray:
    """Per-sequence GC fraction over A/C/G/T letters (NaN for a sequence without any)."""
    out = []
    for seq in seqs:
        codes = encode_acgt(seq)
        acgt = codes >= 0
        out.append(np.isin(codes, (1, 2)).sum() / acgt.sum() if acgt.any() else np.nan)
    return np.asarray(out, dtype=np.float64)


def gc_wasserstein(a: np.ndarray, b: np.ndarray) -> float:
    """Wasserstein-1 distance between two GC-content samples (NaNs dropped)."""
    a, b = a[~np.isnan(a)], b[~np.isnan(b)]
    if a.size == 0 or b.size == 0:
        raise ValueError("GC distance needs at least one sequence with A/C/G/T letters on each side")
    return float(stats.wasserstein_distance(a, b))


def _onehot(seqs: Sequence[str], length: int) -> torch.Tensor:
    """(N, 4 * length) float one-hot of the first ``length`` letters (non-ACGT rows all zero)."""
    codes = np.stack([encode_acgt(s[:length]) for s in seqs])
    oh = np.zeros((len(seqs), length, 4), dtype=np.float32)
    n_idx, l_idx = np.nonzero(codes >= 0)
    oh[n_idx, l_idx, codes[n_idx, l_idx]] = 1.0
    return torch.from_numpy(oh.reshape(len(seqs), 4 * length))


def diversity(seqs: Sequence[str], chunk: int = 512) -> dict[str, float]:
    """Mean pairwise Hamming distance per base over all pairs, and the fraction of distinct sequences.

    Sequences of different lengths are compared on their first min-length positions
    (``length`` in the result). Positions count as different unless both are the same A/C/G/T.
    """
    n = len(seqs)
    if n < 2:
        raise ValueError(f"diversity needs at least 2 sequences, got {n}")
    length = min(len(s) for s in seqs)
    if length == 0:
        raise ValueError("diversity needs non-empty sequences")
    oh = _onehot(seqs, length)
    same_total = 0.0
    for i in range(0, n, chunk):
        same_total += float((oh[i : i + chunk] @ oh.T).sum(dtype=torch.float64))
    same_total -= float(oh.sum(dtype=torch.float64))
    n_pairs = n * (n - 1)
    mean_hamming = 1.0 - same_total / (n_pairs * length)
    return {
        "mean_pairwise_hamming": mean_hamming,
        "fraction_unique": len(set(seqs)) / n,
        "length": length,
    }


def _letter_tracks(seq: str, n: int) -> np.ndarray:
    """(4, n) indicator tracks of A, C, G, T (zero-padded to n)."""
    codes = encode_acgt(seq)
    tracks = np.zeros((4, n), dtype=np.float64)
    pos = np.nonzero(codes >= 0)[0]
    tracks[codes[pos], pos] = 1.0
    return tracks


def nn_identity(samples: Sequence[str], reference: Sequence[str], both_strands: bool = True) -> np.ndarray:
    """Per sample, the highest fraction of identical positions to any reference window of its length.

    Exact over every offset of every reference sequence (ungapped), and over the reverse
    complement strand with ``both_strands``: the match count at each offset is a
    cross-correlation of A/C/G/T indicator tracks, computed for all offsets at once by FFT
    (O(M log M) per sample for M reference bases). Windows never span two reference sequences.
    A sample longer than every reference sequence gets NaN.
    """
    if not samples or not reference:
        raise ValueError("nearest-neighbour identity needs samples and reference sequences")
    total = sum(len(r) for r in reference)
    n_fft = 1 << int(np.ceil(np.log2(max(total + max(len(s) for s in samples), 2))))
    ref_tracks = np.zeros((4, n_fft), dtype=np.float64)
    starts = np.zeros(n_fft, dtype=np.int64) - 1
    seq_end = np.zeros(n_fft, dtype=np.int64)
    offset = 0
    for r in reference:
        ref_tracks[:, offset : offset + len(r)] = _letter_tracks(r, len(r))
        starts[offset : offset + len(r)] = offset
        seq_end[offset : offset + len(r)] = offset + len(r)
        offset += len(r)
    ref_spec = np.fft.rfft(ref_tracks, axis=-1)
    best = np.full(len(samples), np.nan)
    for i, sample in enumerate(samples):
        length = len(sample)
        if length == 0:
            continue
        valid = (starts >= 0) & (np.arange(n_fft) + length <= seq_end)
        if not valid.any():
            continue
        for query in (sample, reverse_complement_text(sample)) if both_strands else (sample,):
            spec = np.fft.rfft(_letter_tracks(query, n_fft), axis=-1)
            matches = np.fft.irfft((np.conj(spec) * ref_spec).sum(0), n=n_fft)
            score = float(np.round(matches[valid]).max()) / length
            best[i] = score if np.isnan(best[i]) else max(best[i], score)
    return best


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)) between Gaussian fits of (N, D) features."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or min(len(a), len(b)) < 2:
        raise ValueError(f"Frechet distance needs (N>=2, D) feature arrays of equal D, got {a.shape} and {b.shape}")
    mu = a.mean(0) - b.mean(0)
    s_a, s_b = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    covmean = linalg.sqrtm(s_a @ s_b)
    if not np.isfinite(covmean).all():
        offset = np.eye(len(s_a)) * 1e-6
        covmean = linalg.sqrtm((s_a + offset) @ (s_b + offset))
    covmean = np.real(covmean)
    return float(max(0.0, mu @ mu + np.trace(s_a) + np.trace(s_b) - 2.0 * np.trace(covmean)))


def summarise(values: np.ndarray) -> dict[str, float]:
    """Mean, median, min and max of a metric array (NaNs ignored)."""
    v = values[~np.isnan(values)]
    if v.size == 0:
        return {"mean": float("nan"), "median": float("nan"), "min": float("nan"), "max": float("nan")}
    return {"mean": float(v.mean()), "median": float(np.median(v)), "min": float(v.min()), "max": float(v.max())}
