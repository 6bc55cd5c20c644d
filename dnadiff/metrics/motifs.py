"""Transcription-factor motif occurrence in generated and reference sequences.

Motifs are JASPAR position frequency matrices (the shipped human set:
``dnadiff/assets/motifs/jaspar_human_core.jaspar``, see its README for IDs and licence),
scanned with Bio.motifs on both strands: log-odds PSSM with pseudocount 0.5 per base against a
uniform background, hit threshold = the score whose false-positive rate on uniform random
sequence is ``fpr`` (Bio.motifs' score distribution, discretised to 1/``precision``).
Occurrence = hits per kb of A/C/G/T
sequence, per motif; sequences are scanned in their A/C/G/T runs (N and other letters split
them).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from Bio import motifs as bio_motifs
from Bio.Seq import Seq

DEFAULT_MOTIFS = Path(__file__).resolve().parent.parent / "assets" / "motifs" / "jaspar_human_core.jaspar"
_RUNS = re.compile(r"[ACGT]+")


class MotifScanner:
    """Scores sequences with a set of JASPAR PFMs; thresholds fixed once per motif from ``fpr``."""

    def __init__(
        self, path: str | Path = DEFAULT_MOTIFS, fpr: float = 1e-4, pseudocount: float = 0.5, precision: int = 100
    ) -> None:
        if not 0 < fpr < 1:
            raise ValueError(f"motif fpr must be in (0, 1), got {fpr}")
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"motif file not found: {path}")
        with path.open() as handle:
            loaded = list(bio_motifs.parse(handle, "jaspar"))
        if not loaded:
            raise ValueError(f"no JASPAR matrices in {path}")
        background = {b: 0.25 for b in "ACGT"}
        self.names: list[str] = []
        self.pssms = []
        self.thresholds: list[float] = []
        for motif in loaded:
            motif.pseudocounts = pseudocount
            motif.background = background
            pssm = motif.pssm
            self.names.append(f"{motif.matrix_id} {motif.name}")
            self.pssms.append(pssm)
            dist = pssm.distribution(background=background, precision=precision)
            self.thresholds.append(float(dist.threshold_fpr(fpr)))

    def count(self, seqs: Sequence[str]) -> tuple[np.ndarray, int]:
        """(hits per motif over all sequences and both strands, scanned A/C/G/T bases)."""
        hits = np.zeros(len(self.pssms), dtype=np.int64)
        bases = 0
        for seq in seqs:
            for run in _RUNS.findall(seq.upper()):
                bases += len(run)
                s = Seq(run)
                for j, (pssm, thr) in enumerate(zip(self.pssms, self.thresholds)):
                    if len(run) >= pssm.length:
                        hits[j] += sum(1 for _ in pssm.search(s, threshold=thr, both=True))
        return hits, bases

    def occurrence(self, seqs: Sequence[str]) -> dict[str, float]:
        """{motif: hits per kb}."""
        hits, bases = self.count(seqs)
        per_kb = hits / max(bases, 1) * 1000.0
        return {name: float(v) for name, v in zip(self.names, per_kb)}


def compare_occurrence(samples: dict[str, float], reference: dict[str, float]) -> dict[str, float]:
    """Mean absolute difference and Pearson r (NaN when undefined) of per-motif rates."""
    names = sorted(samples)
    a = np.array([samples[n] for n in names])
    b = np.array([reference[n] for n in names])
    r = float(np.corrcoef(a, b)[0, 1]) if a.std() > 0 and b.std() > 0 else float("nan")
    return {"mean_abs_diff_per_kb": float(np.abs(a - b).mean()), "pearson_r": r}
