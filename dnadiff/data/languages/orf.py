"""Open reading frames: ATG, in-frame sense codons drawn from human codon usage, then a stop codon.

At length L the frame holds n = L // 3 codons after a 5' flank of f = L mod 3 background bases
(drawn from the background's base composition):

    x[0:f] flank | ATG | n - 2 sense codons | one of TAA, TAG, TGA

Sense codons are iid with the Homo sapiens codon usage of the Kazusa Codon Usage Database
(``dnadiff/assets/codon_usage/homo_sapiens_kazusa.tsv``: 93,487 CDS's, 40,662,582 codons,
from GenBank release 160; Nakamura, Gojobori & Ikemura 2000): P(codon) = count / (sum of the
61 sense counts), ATG included (an internal methionine). The stop codon is drawn with the
relative usage of the three stops. ``is_valid``: ATG at f, no in-frame stop among the middle
codons, a stop codon last. In chain form one site per codon (three positions), one state.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from dnadiff.data.languages.base import BASES, Language
from dnadiff.data.languages.chain import DTYPE, Site, SiteChain
from dnadiff.resources import ASSETS

CODON_TABLE = ASSETS / "codon_usage" / "homo_sapiens_kazusa.tsv"
STOPS = ("TAA", "TAG", "TGA")
START = "ATG"


def read_codon_counts(path: str | Path = CODON_TABLE) -> dict[str, int]:
    """codon -> count from a two-column TSV (``#`` comments); all 64 codons must be there once."""
    counts: dict[str, int] = {}
    for lineno, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 2 or len(parts[0]) != 3 or set(parts[0]) - set(BASES) or not parts[1].isdigit():
            raise ValueError(f"{path}:{lineno}: expected 'CODON<TAB>COUNT', got {line!r}")
        if parts[0] in counts:
            raise ValueError(f"{path}:{lineno}: codon {parts[0]} given twice")
        counts[parts[0]] = int(parts[1])
    if len(counts) != 64:
        raise ValueError(f"{path}: expected 64 codons, found {len(counts)}")
    return counts


def codon_codes(codon: str) -> list[int]:
    return [BASES.index(c) for c in codon]


class OrfLanguage(Language):
    """ATG + sense codons + stop, after a short flank (module docstring)."""

    name = "orf"
    min_length = 6

    def __init__(self, base_probs: np.ndarray, codon_counts: dict[str, int] | None = None,
                 fallback_rate: float = 1e-3) -> None:
        super().__init__(fallback_rate)
        counts = read_codon_counts() if codon_counts is None else dict(codon_counts)
        self.sense = sorted(c for c in counts if c not in STOPS)
        sense_w = np.array([counts[c] for c in self.sense], dtype=np.float64)
        stop_w = np.array([counts[c] for c in STOPS], dtype=np.float64)
        if (sense_w <= 0).any() or (stop_w <= 0).any():
            raise ValueError("every codon count must be > 0")
        self.sense_probs = sense_w / sense_w.sum()
        self.stop_probs = stop_w / stop_w.sum()
        base_probs = np.asarray(base_probs, dtype=np.float64)
        if base_probs.shape != (4,) or (base_probs <= 0).any():
            raise ValueError(f"base_probs must be 4 positive numbers, got {base_probs}")
        self.base_probs = base_probs / base_probs.sum()

    def describe(self, length: int) -> dict:
        return {"name": self.name, "length": length, "flank": length % 3, "codons": length // 3,
                "codon_usage": "Kazusa Homo sapiens [gbpri], GenBank release 160"}

    def build_chain(self, length: int) -> SiteChain:
        flank, n_codons = length % 3, length // 3
        sites = [Site((p,), [0] * 4, [0] * 4, torch.arange(4).unsqueeze(1), self.base_probs, 1, 1)
                 for p in range(flank)]

        def codon_site(start: int, codons: list[str], weights: np.ndarray) -> Site:
            sym = torch.tensor([codon_codes(c) for c in codons])
            zeros = [0] * len(codons)
            return Site((start, start + 1, start + 2), zeros, zeros, sym, weights, 1, 1)

        sites.append(codon_site(flank, [START], np.ones(1)))
        for k in range(1, n_codons - 1):
            sites.append(codon_site(flank + 3 * k, self.sense, self.sense_probs))
        sites.append(codon_site(flank + 3 * (n_codons - 1), list(STOPS), self.stop_probs))
        return SiteChain(length, torch.ones(1, dtype=DTYPE), sites, torch.ones(1, dtype=DTYPE))

    def valid_codes(self, codes: torch.Tensor) -> torch.Tensor:
        flank, n_codons = codes.shape[1] % 3, codes.shape[1] // 3
        frame = codes[:, flank:].reshape(codes.shape[0], n_codons, 3)
        index = frame[..., 0] * 16 + frame[..., 1] * 4 + frame[..., 2]
        stop_index = torch.tensor([int("".join(str(c) for c in codon_codes(s)), 4) for s in STOPS])
        is_stop = torch.isin(index, stop_index)
        start_ok = index[:, 0] == int("".join(str(c) for c in codon_codes(START)), 4)
        return start_ok & ~is_stop[:, 1:-1].any(-1) & is_stop[:, -1]
