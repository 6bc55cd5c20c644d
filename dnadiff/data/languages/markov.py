"""An order-k Markov chain of DNA fitted on a real genome: the background language (TER only).

Fitted by counting (k+1)-mers of the FASTA's A/C/G/T runs (case ignored, k-mers across an N
skipped) on both strands (a sequence and its reverse complement, so that the chain obeys
Chargaff's second rule), plus ``pseudocount`` per (k+1)-mer:

    P(x_l = v | x_{l-k..l-1} = u) = (count(u v) + c) / sum_v' (count(u v') + c).

The chain is stationary: the context before position 0 is a latent k-mer drawn from the
stationary distribution pi of the k-mer chain (solved to machine precision), so every position
has the same marginal and p(x) sums over the latent context:

    p(x_0..x_{L-1}) = sum_u pi(u) prod_l P(x_l | previous k symbols, reading u before position 0).

For L >= k this equals pi(x_0..x_{k-1}) prod_{l >= k} P(x_l | x_{l-k..l-1}) (stationarity).
Every A/C/G/T sequence is valid (the support is everything), so the language measures the token
error rate only. In chain form: one site per position, states = the last k symbols.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from dnadiff.data.languages.base import Language
from dnadiff.data.languages.chain import DTYPE, Site, SiteChain
from dnadiff.kmers import kmer_counts
from dnadiff.tokenizer import reverse_complement_text


def genome_sequences(fasta: str | Path | None) -> list[str]:
    """Every contig of ``fasta`` (default: the embedded hg38 sample) as a string."""
    from dnadiff.data.genome import Genome
    from dnadiff.resources import default_fasta

    genome = Genome(fasta if fasta is not None else default_fasta())
    try:
        return [genome.fetch(name, 0, length) for name, length in genome.contigs.items()]
    finally:
        genome.close()


def stationary(transition: np.ndarray, order: int) -> np.ndarray:
    """Stationary distribution of the k-mer chain of a (4^k, 4) transition table (float64)."""
    n = transition.shape[0]
    full = np.zeros((n, n))
    for u in range(n):
        for v in range(4):
            full[u, (u * 4 + v) % n] += transition[u, v]
    system = full.T - np.eye(n)
    system[-1] = 1.0
    rhs = np.zeros(n)
    rhs[-1] = 1.0
    pi = np.linalg.solve(system, rhs)
    for _ in range(3):
        pi = pi @ full
    return pi / pi.sum()


class MarkovLanguage(Language):
    """Stationary order-k Markov chain over A/C/G/T (module docstring)."""

    name = "markov"

    def __init__(self, transition: np.ndarray, order: int, source: str = "", fallback_rate: float = 1e-3) -> None:
        super().__init__(fallback_rate)
        transition = np.asarray(transition, dtype=np.float64)
        if order < 1 or transition.shape != (4**order, 4):
            raise ValueError(f"an order-{order} chain needs a ({4**order}, 4) transition table, got {transition.shape}")
        if (transition <= 0).any() or not np.allclose(transition.sum(1), 1.0, atol=1e-12):
            raise ValueError("transition rows must be strictly positive and sum to 1")
        self.order = int(order)
        self.transition = transition
        self.pi = stationary(transition, order)
        self.source = source

    @classmethod
    def fit(cls, fasta: str | Path | None = None, order: int = 3, pseudocount: float = 1.0,
            both_strands: bool = True) -> "MarkovLanguage":
        """Fit on a FASTA (default: the embedded hg38 chr2:1-2,000,000 sample)."""
        if isinstance(order, bool) or not isinstance(order, int) or not 1 <= order <= 6:
            raise ValueError(f"order must be an int in 1..6, got {order!r}")
        if pseudocount <= 0:
            raise ValueError(f"pseudocount must be > 0, got {pseudocount}")
        seqs = genome_sequences(fasta)
        if both_strands:
            seqs = seqs + [reverse_complement_text(s) for s in seqs]
        counts = kmer_counts(seqs, order + 1).reshape(4**order, 4).astype(np.float64) + pseudocount
        source = str(fasta) if fasta is not None else "embedded hg38 chr2:1-2,000,000"
        return cls(counts / counts.sum(1, keepdims=True), order, source=source)

    def base_composition(self) -> np.ndarray:
        """The stationary A, C, G, T frequencies."""
        return self.pi.reshape(-1, 4).sum(0)

    def describe(self, length: int) -> dict:
        return {"name": self.name, "length": length, "order": self.order, "fitted_on": self.source}

    def context_edges(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(src, dst, symbol, weight) of one step of the chain on k-mer contexts."""
        n = 4**self.order
        u = torch.arange(n).repeat_interleave(4)
        v = torch.arange(4).repeat(n)
        w = torch.as_tensor(self.transition.reshape(-1), dtype=DTYPE)
        return u, (u * 4 + v) % n, v, w

    def build_chain(self, length: int) -> SiteChain:
        src, dst, sym, w = self.context_edges()
        n = 4**self.order
        sites = [Site((pos,), src, dst, sym, w, n, n) for pos in range(length)]
        return SiteChain(length, torch.as_tensor(self.pi, dtype=DTYPE), sites, torch.ones(n, dtype=DTYPE))

    def valid_codes(self, codes: torch.Tensor) -> torch.Tensor:
        return torch.ones(codes.shape[0], dtype=torch.bool)
