"""Pieces shared by every sampler: the result type, logit filtering (temperature, nucleus top-p),
seeded categorical draws by inverse CDF, and seeded generators.

Categorical draws use one uniform per position (``sample_categorical``), drawn whether or not
the network ran at that step, so that samplers that skip network calls (the cached ancestral
sampler) consume the random stream exactly as those that do not: same seed, same samples.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class SampleOutput:
    """Generated ids plus cost.

    ``nfe``: number of batched network calls; ``nfe_per_sequence``: network evaluations each
    sequence took part in (what a per-record ``nfe=`` header reports); ``steps``: sampler steps
    (per block for semi-AR); ``masked_counts``: masked positions in the batch before the first
    step and after each step (ancestral samplers); ``blocks``: each diffused window (semi-AR).
    """

    ids: torch.Tensor
    nfe: int
    nfe_per_sequence: torch.Tensor
    steps: int
    masked_counts: torch.Tensor | None = None
    blocks: list[torch.Tensor] = field(default_factory=list)


def check_sampling_args(temperature: float, top_p: float) -> None:
    """Raise a one-line ValueError for a temperature <= 0 or a top_p outside (0, 1]."""
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")


def filter_log_probs(log_probs: torch.Tensor, temperature: float = 1.0, top_p: float = 1.0) -> torch.Tensor:
    """Temperature then nucleus filtering of (unnormalised) log-probabilities over the last axis.

    Temperature divides the log-probabilities (p^(1/T), renormalised later). Top-p keeps the
    smallest set of most probable tokens whose probability reaches ``top_p`` (always at least
    the most probable one) and sets the rest to -inf.
    """
    check_sampling_args(temperature, top_p)
    out = log_probs if temperature == 1.0 else log_probs / temperature
    if top_p < 1.0:
        sorted_lp, order = torch.sort(out, dim=-1, descending=True)
        probs = torch.softmax(sorted_lp, dim=-1)
        mass_before = torch.cumsum(probs, dim=-1) - probs
        drop_sorted = mass_before >= top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        out = out.masked_fill(drop, float("-inf"))
    return out


def sample_categorical(log_probs: torch.Tensor, uniforms: torch.Tensor) -> torch.Tensor:
    """Draw one index per row of ``log_probs`` (..., V) by inverse CDF with ``uniforms`` (...) in (0, 1].

    The CDF is left unnormalised and the uniform scaled by its total, so a zero-probability
    token is never drawn and no renormalisation rounding can push past the last valid token.
    """
    probs = torch.softmax(log_probs.float(), dim=-1)
    cdf = torch.cumsum(probs, dim=-1)
    target = uniforms.unsqueeze(-1) * cdf[..., -1:]
    idx = (cdf < target).sum(-1)
    return idx.clamp(max=log_probs.shape[-1] - 1)


def draw_uniforms(shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """Uniforms in (0, 1] (``1 - U[0, 1)``), the range :func:`sample_categorical` needs."""
    return 1.0 - torch.rand(shape, generator=generator, device=device)


def make_generator(seed: int | None, device: torch.device | str) -> torch.Generator:
    """A torch.Generator on ``device``, seeded with ``seed`` (a fresh nondeterministic seed if None)."""
    gen = torch.Generator(device=device)
    if seed is None:
        gen.seed()
    else:
        gen.manual_seed(int(seed))
    return gen
