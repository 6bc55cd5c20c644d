"""ReMDM remasking sampler: unmasked tokens may be masked again, so later steps can revise them.

After Wang, Schiff, Sahoo & Kuleshov 2025, "Remasking Discrete Diffusion Models with
Inference-Time Scaling" (arXiv:2503.00307; the strategies and defaults follow the authors' code,
github.com/kuleshov-group/remdm, ``diffusion.py``). The reverse step from t to s < t is, per
position, with a remasking probability sigma_t in [0, sigma_max], sigma_max = min(1, (1 - alpha_s) / alpha_t):

    z_t^l unmasked:  keep it with probability 1 - sigma_t, mask it with probability sigma_t;
    z_t^l = m:       unmask with probability (alpha_s - (1 - sigma_t) alpha_t) / (1 - alpha_t),
                     the token drawn from x_theta^l; else stay masked.

With one sigma_t for all positions this keeps the forward marginals: from a masked fraction
1 - alpha_t the expected masked fraction after the step is 1 - alpha_s, as for MDLM
(sigma_t = 0 is MDLM's ancestral step).
Strategies for sigma_t:

- ``cap``:     sigma_t = min(eta, sigma_max)                  (ReMDM-cap);
- ``rescale``: sigma_t = eta * sigma_max                      (ReMDM-rescale);
- ``conf``:    sigma_t^l = sigma_max * softmax_l(-psi^l) over the unmasked positions, psi^l the
               x_theta probability of token l when it was last unmasked (ReMDM-conf: the tokens
               drawn with least confidence are remasked first; masked positions use sigma = 0, so
               unlike the other strategies the expected masked fraction can exceed 1 - alpha_s:
               remasked tokens are not compensated, as in the authors' code);
- ``loop``:    ReMDM-loop. alpha follows its own path: from 0 at t = 1 linearly to ``alpha_on``
               at ``t_on`` (MDLM steps), held at alpha_on on [t_off, t_on] where every step
               remasks unmasked tokens with sigma = eta and unmasks masked ones with probability
               eta * alpha_on / (1 - alpha_on) (same expected count), then linearly to 1 at t = 0
               (MDLM steps). The ``schedule`` argument is not used on this path, except when
               no step of the grid t_i = i / T falls inside the loop (T <= 3 with the defaults):
               there is then nothing to remask and the loop path would only unmask more tokens
               per early step than MDLM does (a fraction alpha_on by t_on; at T = 2 that cost
               +2.3% TER against ancestral on the hg38 Markov chain), so such a run follows
               ``schedule``: it is MDLM's ancestral sampler.

The last step (s = 0) never remasks and fills every remaining mask. Positions that are not masked
in ``z_init`` (an infilling template) are never remasked. With ``cache=True`` rows whose z did not
change reuse x_theta (rare here: remasking changes z at most steps); NFE is reported as usual.
"""

from __future__ import annotations

import torch

from dnadiff.objectives.schedules import NoiseSchedule
from dnadiff.sampling.ancestral import DenoiserFn, check_run
from dnadiff.sampling.calls import DenoiserCalls
from dnadiff.sampling.common import SampleOutput, draw_tokens, draw_uniforms

STRATEGIES = ("cap", "rescale", "conf", "loop")


def loop_alpha(t: float, t_on: float, t_off: float, alpha_on: float) -> float:
    """alpha on the ReMDM-loop path at time t (module docstring)."""
    if t > t_on:
        return alpha_on * (1.0 - t) / (1.0 - t_on)
    if t >= t_off:
        return alpha_on
    return 1.0 - (1.0 - alpha_on) * t / t_off if t_off > 0 else 1.0


def in_loop(i: int, steps: int, t_on: float, t_off: float) -> bool:
    """Whether step i of ``steps`` (from t = i / steps to s = (i - 1) / steps) lies inside [t_off, t_on]."""
    return t_off <= (i - 1) / steps and i / steps <= t_on


def _check_options(strategy: str, eta: float, t_on: float, t_off: float, alpha_on: float) -> None:
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    if not 0.0 <= eta <= 1.0:
        raise ValueError(f"eta must be in [0, 1], got {eta}")
    if strategy == "loop":
        if not 0.0 <= t_off < t_on < 1.0:
            raise ValueError(f"ReMDM-loop needs 0 <= t_off < t_on < 1, got t_off={t_off}, t_on={t_on}")
        if not 0.0 < alpha_on < 1.0:
            raise ValueError(f"alpha_on must be in (0, 1), got {alpha_on}")
        if eta * alpha_on / (1.0 - alpha_on) > 1.0:
            raise ValueError(f"eta={eta} is too large for alpha_on={alpha_on}: need eta <= (1 - alpha_on) / alpha_on")


@torch.no_grad()
def remask_sample(
    denoiser: DenoiserFn,
    z_init: torch.Tensor,
    steps: int,
    schedule: NoiseSchedule,
    mask_id: int,
    strategy: str = "loop",
    eta: float = 0.02,
    t_on: float = 0.55,
    t_off: float = 0.05,
    alpha_on: float = 0.9,
    cache: bool = True,
    temperature: float = 1.0,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
    final: str = "sample",
    precision: str = "float32",
) -> SampleOutput:
    """ReMDM sampling from ``z_init`` (B, L) in ``steps`` steps (module docstring)."""
    dtype = check_run(z_init, steps, final, temperature, top_p, precision)
    _check_options(strategy, eta, t_on, t_off, alpha_on)
    z = z_init.clone()
    batch, length = z.shape
    device = z.device
    fixed = z_init != mask_id
    psi = torch.full((batch, length), float("inf"), dtype=torch.float64, device=device)
    calls = DenoiserCalls(denoiser, batch, device, cache, temperature, top_p, dtype)
    counts = [(z == mask_id).sum()]
    loop_path = strategy == "loop" and any(in_loop(i, steps, t_on, t_off) for i in range(2, steps + 1))
    for i in range(steps, 0, -1):
        t_val, s_val = i / steps, (i - 1) / steps
        u_move = torch.rand((batch, length), generator=generator, device=device, dtype=torch.float64)
        u_token = draw_uniforms((batch, length), generator, device, precision)
        masked = z == mask_id
        log_x = calls.get(z, t_val, masked.any(-1))
        if loop_path:
            a_t = loop_alpha(t_val, t_on, t_off, alpha_on)
            a_s = loop_alpha(s_val, t_on, t_off, alpha_on)
        else:
            a_t = float(schedule.alpha(torch.tensor(t_val, dtype=torch.float64)))
            a_s = float(schedule.alpha(torch.tensor(s_val, dtype=torch.float64)))
        sigma_max = min(1.0, (1.0 - a_s) / a_t) if a_t > 0 else 1.0
        if i == 1:
            sigma = torch.zeros((batch, length), dtype=torch.float64, device=device)
        elif strategy == "cap":
            sigma = torch.full((batch, length), min(eta, sigma_max), dtype=torch.float64, device=device)
        elif strategy == "rescale":
            sigma = torch.full((batch, length), eta * sigma_max, dtype=torch.float64, device=device)
        elif strategy == "conf":
            weights = torch.softmax(-psi, dim=-1).nan_to_num(0.0)
            sigma = weights * sigma_max
        else:
            sigma = torch.full((batch, length), eta if in_loop(i, steps, t_on, t_off) else 0.0, dtype=torch.float64,
                               device=device)
        if i == 1:
            p_unmask = torch.ones_like(sigma)
        elif loop_path and a_t == a_s:
            p_unmask = sigma * alpha_on / (1.0 - alpha_on)
        elif strategy == "conf":
            p_unmask = torch.full_like(sigma, (a_s - a_t) / (1.0 - a_t))
        else:
            p_unmask = ((a_s - (1.0 - sigma) * a_t) / (1.0 - a_t)).clamp(0.0, 1.0)
        unmask = masked & (u_move < p_unmask)
        remask = ~masked & ~fixed & (u_move < sigma)
        if log_x is not None and bool(unmask.any()):
            z = draw_tokens(z, unmask, log_x, u_token, i == 1 and final == "argmax", precision)
            if strategy == "conf":
                prob = log_x[unmask].gather(-1, z[unmask].unsqueeze(-1)).squeeze(-1).double().exp()
                psi = psi.clone()
                psi[unmask] = prob
        z = torch.where(remask, torch.full_like(z, mask_id), z)
        psi = torch.where(remask, torch.full_like(psi, float("inf")), psi)
        calls.changed(unmask.any(-1) | remask.any(-1))
        counts.append((z == mask_id).sum())
    return SampleOutput(z, calls.nfe, calls.nfe_rows, steps, torch.stack(counts).cpu())
