"""Pieces shared by every sampler: the result type, logit filtering (temperature, nucleus top-p),
seeded categorical draws by inverse CDF, and seeded generators.

Categorical draws use one uniform per position (``sample_categorical``), drawn whether or not
the network ran at that step, so that samplers that skip network calls (the cached ancestral
sampler) consume the random stream exactly as those that do not: same seed, same samples.

Precision: by default the softmax, its CDF and the uniforms are float32. float32 uniforms lie
on a grid of 2^-24 and a float32 CDF cannot resolve an increment below about 6e-8 next to a
running total near 1, so tokens of probability below ~1e-7 are drawn with the wrong
frequency (often never). ``precision="float64"`` computes the CDF and draws the uniforms in
float64 (2^-53 grid): the draw is then the exact categorical for any probability above ~1e-15.
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


PRECISIONS = {"float32": torch.float32, "float64": torch.float64}


def check_precision(precision: str) -> torch.dtype:
    """The dtype of a ``precision`` name (float32 or float64), or a one-line ValueError."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
    return PRECISIONS[precision]


def sample_categorical(log_probs: torch.Tensor, uniforms: torch.Tensor, precision: str = "float32") -> torch.Tensor:
    """Draw one index per row of ``log_probs`` (..., V) by inverse CDF with ``uniforms`` (...) in (0, 1].

    The CDF is left unnormalised and the uniform scaled by its total, so a zero-probability
    token is never drawn and no renormalisation rounding can push past the last valid token.
    ``precision``: the dtype of the softmax and CDF (module docstring); pass uniforms drawn with
    the same precision (:func:`draw_uniforms`).
    """
    dtype = check_precision(precision)
    probs = torch.softmax(log_probs.to(dtype), dim=-1)
    uniforms = uniforms.to(dtype)
    cdf = torch.cumsum(probs, dim=-1)
    target = uniforms.unsqueeze(-1) * cdf[..., -1:]
    idx = (cdf < target).sum(-1)
    return idx.clamp(max=log_probs.shape[-1] - 1)


def draw_uniforms(shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device,
                  precision: str = "float32") -> torch.Tensor:
    """Uniforms in (0, 1] (``1 - U[0, 1)``), the range :func:`sample_categorical` needs, in ``precision``."""
    return 1.0 - torch.rand(shape, generator=generator, device=device, dtype=check_precision(precision))


def make_generator(seed: int | None, device: torch.device | str) -> torch.Generator:
    """A torch.Generator on ``device``, seeded with ``seed`` (a fresh nondeterministic seed if None)."""
    gen = torch.Generator(device=device)
    if seed is None:
        gen.seed()
    else:
        gen.manual_seed(int(seed))
    return gen


def draw_tokens(z: torch.Tensor, where: torch.Tensor, log_x: torch.Tensor, uniforms: torch.Tensor,
                argmax: bool = False, precision: str = "float32") -> torch.Tensor:
    """A copy of z with the positions ``where`` filled from log x_theta: its argmax, or a draw with
    the given uniforms. Tokens are drawn only where they are used (row-wise, so the values equal
    drawing everywhere)."""
    z = z.clone()
    z[where] = log_x[where].argmax(-1) if argmax else sample_categorical(log_x[where], uniforms[where], precision)
    return z
