"""What every checkable DNA language provides, on dnadiff token ids.

A language is a distribution p over A/C/G/T sequences of a given length L whose probabilities
are known exactly (a :class:`~dnadiff.data.languages.chain.SiteChain` built per length) and a
rule ``is_valid`` checked directly on the sequence (never through the chain, so that the two
can be tested against each other). On token ids (the tokenizer's A, C, G, T):

- ``sample(n, L, generator)``: exact draws;
- ``log_prob(x)``: exact log p(x) (natural log; -inf outside the language);
- ``is_valid(x)``: membership by the language's rule;
- ``posterior_marginals(z, mask_id)``: the exact p(x^l = v | the unmasked positions of z) at
  every position, what an exact-oracle denoiser returns. A z that no sequence of the language
  can explain (possible for samplers that draw coupled positions independently) has no exact
  posterior; those rows get the posterior under a noisy channel instead: each observed token
  is taken to be the true one with probability 1 - ``fallback_rate`` and any other base with
  ``fallback_rate / 3`` (as ``fallback_rate`` -> 0 this picks the explanations with the fewest
  changed tokens). ``last_fallback_rows`` counts the rows of the last call that needed it;
- ``entropy_rate(L, n, generator)``: H(p) / L in nats/token, by Monte Carlo over exact samples
  (mean and standard error), the reference for the token error rate.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import torch

from dnadiff.data.languages.chain import DTYPE, SiteChain
from dnadiff.tokenizer import COMPLEMENT, Tokenizer

TOK = Tokenizer()
ACGT_IDS = torch.tensor(TOK.nucleotide_ids, dtype=torch.long)
_CODE_OF_ID = torch.full((len(TOK),), -1, dtype=torch.long)
_CODE_OF_ID[ACGT_IDS] = torch.arange(4)
BASES = "ACGT"
COMPLEMENT_CODE = torch.tensor([BASES.index(COMPLEMENT[b]) for b in BASES])  # the tokenizer's A<->T, C<->G on codes 0..3


def ids_to_codes(ids: torch.Tensor, mask_id: int | None = None) -> torch.Tensor:
    """Token ids -> codes 0..3 (A, C, G, T); ``mask_id`` -> -1; any other id is a ValueError."""
    ids = torch.as_tensor(ids, dtype=torch.long)
    if ids.dim() != 2:
        raise ValueError(f"expected (batch, length) token ids, got shape {tuple(ids.shape)}")
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= len(TOK)):
        bad = ((ids < 0) | (ids >= len(TOK))).nonzero()[0].tolist()
        raise ValueError(f"token id {int(ids[bad[0], bad[1]])} at row {bad[0]}, position {bad[1]} is not in the vocabulary")
    codes = _CODE_OF_ID[ids]
    if mask_id is not None:
        codes = torch.where(ids == mask_id, torch.full_like(codes, -1), codes)
    bad = (codes < 0) & ((ids != mask_id) if mask_id is not None else torch.ones_like(ids, dtype=torch.bool))
    if bool(bad.any()):
        r, p = bad.nonzero()[0].tolist()
        what = "A, C, G, T or the mask" if mask_id is not None else "A, C, G or T"
        raise ValueError(f"token {TOK.vocab[int(ids[r, p])]!r} at row {r}, position {p}: a language sequence holds {what}")
    return codes


def codes_to_ids(codes: torch.Tensor) -> torch.Tensor:
    """Codes 0..3 -> the tokenizer's A, C, G, T ids."""
    return ACGT_IDS[torch.as_tensor(codes, dtype=torch.long)]


def onehot_evidence(codes: torch.Tensor) -> torch.Tensor:
    """(B, L, 4) float64 evidence: one-hot at codes 0..3, all ones at -1 (masked)."""
    ev = torch.ones(*codes.shape, 4, dtype=DTYPE)
    seen = codes >= 0
    ev[seen] = torch.nn.functional.one_hot(codes[seen], 4).to(DTYPE)
    return ev


def channel_evidence(codes: torch.Tensor, rate: float) -> torch.Tensor:
    """Noisy-channel evidence: 1 - rate on the observed base, rate / 3 on the others; ones at masks."""
    ev = onehot_evidence(codes)
    seen = codes >= 0
    ev[seen] = ev[seen] * (1.0 - rate) + (1.0 - ev[seen]) * (rate / 3.0)
    return ev


class Language(ABC):
    """A distribution over A/C/G/T sequences with exact probabilities and a validity rule."""

    name: str = ""
    min_length: int = 1

    def __init__(self, fallback_rate: float = 1e-3) -> None:
        if not 0.0 < fallback_rate < 0.75:
            raise ValueError(f"fallback_rate must be in (0, 0.75), got {fallback_rate}")
        self.fallback_rate = float(fallback_rate)
        self.last_fallback_rows = 0
        self._chains: dict[tuple[int, torch.dtype], SiteChain] = {}

    # ------------------------------------------------------------------ per-language parts
    @abstractmethod
    def build_chain(self, length: int) -> SiteChain:
        """The exact finite-state chain of the language at ``length``."""

    @abstractmethod
    def valid_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """The language's rule on (B, L) codes 0..3, checked directly: (B,) bool."""

    def describe(self, length: int) -> dict:
        """The language's parameters at ``length`` (for result tables)."""
        return {"name": self.name, "length": length}

    # ------------------------------------------------------------------------- shared API
    def check_length(self, length: int) -> int:
        if isinstance(length, bool) or not isinstance(length, int) or length < self.min_length:
            raise ValueError(f"{self.name}: length must be an int >= {self.min_length}, got {length!r}")
        return length

    def chain(self, length: int, dtype: torch.dtype = DTYPE) -> SiteChain:
        """The chain at ``length`` computing in ``dtype`` (built once, then cached)."""
        length = self.check_length(length)
        if (length, DTYPE) not in self._chains:
            self._chains[(length, DTYPE)] = self.build_chain(length)
        if (length, dtype) not in self._chains:
            self._chains[(length, dtype)] = self._chains[(length, DTYPE)].to(dtype)
        return self._chains[(length, dtype)]

    def sample(self, n: int, length: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n exact draws as (n, length) token ids."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive int, got {n!r}")
        return codes_to_ids(self.chain(length).sample(n, generator))

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Exact log p(x) (natural log, float64, (B,)); -inf for sequences outside the language."""
        codes = ids_to_codes(x)
        chain = self.chain(codes.shape[1])
        return chain.log_partition(onehot_evidence(codes)) - chain.log_z

    def is_valid(self, x: torch.Tensor) -> torch.Tensor:
        """(B,) bool: does each sequence obey the language's rule?"""
        codes = ids_to_codes(x)
        self.check_length(codes.shape[1])
        return self.valid_codes(codes)

    def posterior_marginals(self, z: torch.Tensor, mask_id: int = TOK.mask_id,
                            dtype: torch.dtype = DTYPE) -> torch.Tensor:
        """Exact p(x^l = v | unmasked z), (B, L, 4) over A, C, G, T (class docstring), computed in ``dtype``."""
        codes = ids_to_codes(z, mask_id)
        chain = self.chain(codes.shape[1], dtype)
        marg, log_w = chain.marginals(onehot_evidence(codes))
        impossible = ~torch.isfinite(log_w)
        self.last_fallback_rows = int(impossible.sum())
        if self.last_fallback_rows:
            soft, _ = chain.marginals(channel_evidence(codes[impossible], self.fallback_rate))
            marg[impossible] = soft
        return marg

    def entropy_rate(self, length: int, n: int = 4096, generator: torch.Generator | None = None,
                     batch: int = 1024) -> tuple[float, float]:
        """H(p)/L in nats/token by Monte Carlo over n exact samples: (mean, standard error)."""
        values = []
        for i in range(0, n, batch):
            x = self.sample(min(batch, n - i), length, generator)
            values.append(-self.log_prob(x) / length)
        v = torch.cat(values)
        return float(v.mean()), float(v.std(unbiased=True) / math.sqrt(len(v)))
