"""Ancestral (DDPM-style) sampling of an MDLM, plain and cached.

T steps on the grid t_i = i / T, s_i = (i - 1) / T, i = T..1, from z_1 = all-mask (or a
template whose fixed positions are carried over). Each step draws z_s ~ p_theta(z_s | z_t) =
q(z_s | z_t, x = x_theta(z_t, t)) independently per position:

    unmasked z_t^l       -> z_s^l = z_t^l                                      (carry-over)
    masked   z_t^l = m   -> m    with probability (1 - alpha_s) / (1 - alpha_t)
                            v    with probability (alpha_s - alpha_t) / (1 - alpha_t) * x_theta^l(v)

implemented as: unmask when u^l < (alpha_s - alpha_t) / (1 - alpha_t), and then take the token
drawn from x_theta^l (after temperature and top-p) with a second uniform. The last step (s = 0)
fills every remaining mask from x_theta (a draw, or the argmax with ``final="argmax"``), which
is what the posterior does anyway when alpha_0 = 1.

Caching: without time conditioning x_theta depends on z only, so a sequence whose z did not
change since its last evaluation keeps its x_theta, and a sequence with no mask left needs none.
The cached sampler runs the network only on the rows that need it; every sequence then takes
part in at most min(T, L) evaluations (one at the start, then one after each step that unmasked
something while masks remain). Both samplers draw the same uniforms at every step, so with the
same seed they return the same sequences.
"""

from __future__ import annotations

import torch

from dnadiff.objectives.schedules import NoiseSchedule
from dnadiff.sampling.calls import DenoiserCalls, DenoiserFn
from dnadiff.sampling.common import SampleOutput, check_precision, check_sampling_args, draw_tokens, draw_uniforms

FINAL_MODES = ("sample", "argmax")


def check_run(z_init: torch.Tensor, steps: int, final: str, temperature: float, top_p: float,
              precision: str) -> torch.dtype:
    """The arguments every MDLM sampler shares, checked (one-line ValueErrors); returns the draws' dtype."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    if final not in FINAL_MODES:
        raise ValueError(f"final must be one of {FINAL_MODES}, got {final!r}")
    check_sampling_args(temperature, top_p)
    dtype = check_precision(precision)
    if z_init.dim() != 2:
        raise ValueError(f"z_init must be (batch, length), got shape {tuple(z_init.shape)}")
    return dtype


@torch.no_grad()
def ancestral_sample(
    denoiser: DenoiserFn,
    z_init: torch.Tensor,
    steps: int,
    schedule: NoiseSchedule,
    mask_id: int,
    cache: bool = False,
    temperature: float = 1.0,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
    final: str = "sample",
    precision: str = "float32",
) -> SampleOutput:
    """Sample from ``z_init`` (B, L): mask ids are generated, every other id is kept (infilling).

    ``denoiser(z, t, rows)`` returns log x_theta (rows: the batch rows z holds, None = all);
    ``cache=True`` reuses x_theta of unchanged rows (ignored for a time-conditioned denoiser,
    whose x_theta moves with t); ``precision="float64"`` draws the tokens in float64
    (:mod:`dnadiff.sampling.common`). Returns ids, NFE and the masked count after every step.
    """
    dtype = check_run(z_init, steps, final, temperature, top_p, precision)
    z = z_init.clone()
    batch, length = z.shape
    device = z.device
    calls = DenoiserCalls(denoiser, batch, device, cache, temperature, top_p, dtype)
    counts = [(z == mask_id).sum()]
    for i in range(steps, 0, -1):
        t_val, s_val = i / steps, (i - 1) / steps
        u_unmask = torch.rand((batch, length), generator=generator, device=device)
        u_token = draw_uniforms((batch, length), generator, device, precision)
        masked = z == mask_id
        log_x = calls.get(z, t_val, masked.any(-1))
        a_t = schedule.alpha(torch.tensor(t_val, device=device))
        a_s = schedule.alpha(torch.tensor(s_val, device=device))
        p_unmask = (a_s - a_t) / (1.0 - a_t) if i > 1 else torch.tensor(1.0, device=device)
        unmask = masked & (u_unmask < p_unmask)
        if log_x is not None and bool(unmask.any()):
            z = draw_tokens(z, unmask, log_x, u_token, i == 1 and final == "argmax", precision)
        calls.changed(unmask.any(-1))
        counts.append((z == mask_id).sum())
    return SampleOutput(z, calls.nfe, calls.nfe_rows, steps, torch.stack(counts).cpu())


def all_mask(num_samples: int, length: int, mask_id: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """z_1: a (num_samples, length) batch of mask ids, checking the sizes."""
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"num_samples must be a positive int, got {num_samples!r}")
    if isinstance(length, bool) or not isinstance(length, int) or length < 1:
        raise ValueError(f"length must be a positive int, got {length!r}")
    return torch.full((num_samples, length), int(mask_id), dtype=torch.long, device=device)
