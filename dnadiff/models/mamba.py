"""Mamba (selective SSM) mixer, its pre-norm residual block and RMSNorm.

The mixer follows mamba-ssm's ``mamba_simple.Mamba``:

    [x, z] = in_proj(h);  x = silu(causal_depthwise_conv1d(x));  [dt_low, B, C] = x_proj(x)
    dt = softplus(dt_proj(dt_low));  y = selective_scan(x, dt, A = -exp(A_log), B, C, D) * silu(z)
    out = out_proj(y)

``SelectiveSSM`` is the part between ``in_proj`` and ``out_proj`` (conv, x_proj, dt_proj,
A_log, D): one direction of the sequence. Splitting it out lets :class:`BiMamba`
(``dnadiff.models.caduceus``) share ``in_proj``/``out_proj`` between its two directions while
keeping one SSM per direction. ``step`` runs one token through the recurrence with a
(conv_state, ssm_state) pair: O(1) work and memory per generated token.

On CPU with the ``cpu_fused`` scan backend (what ``auto`` picks there), the mixers hand
``xz = in_proj(h)`` (channels-last, no transposes) to :func:`cpu_fused_directions`: one fused
autograd node for conv + SiLU, x_proj, dt_proj, the scan and the gate, for one direction or for
both directions of a BiMamba layer at once (the same maths, see ``dnadiff.models.kernels``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from dnadiff.models.kernels.cpu_fused import rms_norm_cpu_fused
from dnadiff.models.kernels.scan import causal_conv1d, cpu_fused_applies, fused_mixer, selective_scan


def project_channels_first(proj: nn.Linear, h: torch.Tensor) -> torch.Tensor:
    """proj(h) for h (b, l, d) as (b, out, l) with unit stride along l: the layout mamba-ssm's
    kernels read, from one matmul and no copy (as mamba-ssm's ``Mamba`` computes ``xz``)."""
    b, length, d = h.shape
    out = (proj.weight @ h.reshape(b * length, d).t()).view(-1, b, length).transpose(0, 1)
    if proj.bias is not None:
        out = out + proj.bias.to(out.dtype)[:, None]
    return out


def resolve_dt_rank(dt_rank: int | str, d_model: int) -> int:
    """mamba-ssm's ``dt_rank="auto"`` rule: ceil(d_model / 16); an int is used as given."""
    if dt_rank == "auto":
        return math.ceil(d_model / 16)
    if isinstance(dt_rank, bool) or not isinstance(dt_rank, int) or dt_rank < 1:
        raise ValueError(f"dt_rank must be 'auto' or a positive int, got {dt_rank!r}")
    return dt_rank


class RMSNorm(nn.Module):
    """Root-mean-square norm with a learned gain, computed in fp32 (as mamba-ssm's RMSNorm).

    ``scan_backend`` is the model's kernel backend (switched with the model's): where it resolves
    to ``cpu_fused`` and no gradient is needed (evaluation, sampling), the norm is one fused CPU
    pass; elsewhere ``F.rms_norm``.
    """

    def __init__(self, d: int, eps: float = 1e-5, scan_backend: str = "torch") -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d))
        self.scan_backend = scan_backend

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x * rsqrt(mean(x^2) + eps) * weight in fp32
        if self._fused_cpu(x):
            out = rms_norm_cpu_fused(x, self.weight, self.eps)
        else:
            out = F.rms_norm(x.float(), (x.shape[-1],), self.weight.float(), self.eps)
        return out.to(self.weight.dtype)

    def _fused_cpu(self, x: torch.Tensor) -> bool:
        if torch.is_grad_enabled() and (x.requires_grad or self.weight.requires_grad):
            return False
        return x.device.type == "cpu" and cpu_fused_applies(x, self.scan_backend, d_state=1)  # no state


class SelectiveSSM(nn.Module):
    """One direction of a Mamba mixer: causal depthwise conv -> SiLU -> selective scan -> gate.

    Initialisation is mamba-ssm's: dt_proj weight uniform in +-dt_rank^-0.5, dt_proj bias the
    inverse softplus of dt ~ log-uniform[dt_min, dt_max] floored at dt_init_floor (so
    softplus(bias) starts in that range), A_log = log(1..d_state) per channel (S4D-real),
    D = 1. ``dt_proj.bias`` is marked ``_no_reinit`` and ``A_log``/``D`` ``_no_weight_decay``.
    """

    def __init__(
        self,
        d_inner: int,
        d_state: int = 16,
        d_conv: int = 4,
        dt_rank: int = 8,
        dt_min: float = 1e-3,
        dt_max: float = 0.1,
        dt_init_floor: float = 1e-4,
        conv_bias: bool = True,
        scan_backend: str = "auto",
    ) -> None:
        super().__init__()
        if not 0 < dt_min <= dt_max:
            raise ValueError(f"need 0 < dt_min <= dt_max, got dt_min={dt_min}, dt_max={dt_max}")
        self.d_inner, self.d_state, self.d_conv, self.dt_rank = d_inner, d_state, d_conv, dt_rank
        self.scan_backend = scan_backend
        self.conv1d = nn.Conv1d(
            d_inner, d_inner, kernel_size=d_conv, groups=d_inner, padding=d_conv - 1, bias=conv_bias
        )
        self.x_proj = nn.Linear(d_inner, dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(dt_rank, d_inner, bias=True)
        std = dt_rank**-0.5
        nn.init.uniform_(self.dt_proj.weight, -std, std)
        dt = torch.exp(
            torch.rand(d_inner) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)
        ).clamp(min=dt_init_floor)
        with torch.no_grad():
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))
        self.dt_proj.bias._no_reinit = True
        a = torch.arange(1, d_state + 1, dtype=torch.float32).repeat(d_inner, 1)
        self.A_log = nn.Parameter(torch.log(a))
        self.A_log._no_weight_decay = True
        self.D = nn.Parameter(torch.ones(d_inner))
        self.D._no_weight_decay = True

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """x, z: (batch, d_inner, length) -> gated scan output y (batch, d_inner, length)."""
        x = causal_conv1d(x, self.conv1d.weight[:, 0, :], self.conv1d.bias, activation="silu")
        dt, b, c = torch.split(
            self.x_proj(x.transpose(1, 2)), [self.dt_rank, self.d_state, self.d_state], dim=-1
        )
        delta = (dt @ self.dt_proj.weight.t()).transpose(1, 2)
        return selective_scan(
            x,
            delta,
            -torch.exp(self.A_log.float()),
            b.transpose(1, 2),
            c.transpose(1, 2),
            D=self.D.float(),
            z=z,
            delta_bias=self.dt_proj.bias.float(),
            delta_softplus=True,
            backend=self.scan_backend,
        )

    def fused_kernel(self, h: torch.Tensor) -> Callable | None:
        """mamba-ssm's fused ``mamba_inner_fn`` when it can run on ``h`` with this scan backend
        (see ``scan.fused_mixer``), else None."""
        return fused_mixer(h, self.scan_backend)

    def fused(self, fn: Callable, xz: torch.Tensor, out_proj: nn.Linear) -> torch.Tensor:
        """out_proj(forward(x, z)) as (b, l, d_model) through ``fn`` (from :meth:`fused_kernel`),
        for xz = [x; z] (b, 2 * d_inner, l) from :func:`project_channels_first`."""
        return fn(
            xz, self.conv1d.weight, self.conv1d.bias, self.x_proj.weight, self.dt_proj.weight,
            out_proj.weight, out_proj.bias, -torch.exp(self.A_log.float()), None, None,
            self.D.float(), delta_bias=self.dt_proj.bias.float(), delta_softplus=True,
        )

    def allocate_state(self, batch: int, device=None, dtype=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Zero (conv_state (b, d_inner, d_conv), ssm_state (b, d_inner, d_state)) for :meth:`step`."""
        device = device or self.A_log.device
        dtype = dtype or self.conv1d.weight.dtype
        conv = torch.zeros(batch, self.d_inner, self.d_conv, device=device, dtype=dtype)
        ssm = torch.zeros(batch, self.d_inner, self.d_state, device=device, dtype=torch.float32)
        return conv, ssm

    def step(
        self, x: torch.Tensor, z: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """One token: x, z (batch, d_inner) -> y (batch, d_inner) and the updated state.

        conv_state holds the last d_conv inputs (newest last), so the dot product with the
        kernel equals the causal conv's output at this position; the SSM update is
        h <- exp(dt A) h + dt B x, y = <C, h> + D x, gated by silu(z).
        """
        conv_state, ssm_state = state
        conv_state = torch.cat([conv_state[..., 1:], x.unsqueeze(-1).to(conv_state.dtype)], dim=-1)
        x = (conv_state * self.conv1d.weight[:, 0, :]).sum(-1)
        if self.conv1d.bias is not None:
            x = x + self.conv1d.bias
        x = F.silu(x)
        dt, b, c = torch.split(self.x_proj(x), [self.dt_rank, self.d_state, self.d_state], dim=-1)
        dt = F.softplus((dt @ self.dt_proj.weight.t()).float() + self.dt_proj.bias.float())
        a = -torch.exp(self.A_log.float())
        xf = x.float()
        ssm_state = ssm_state * torch.exp(dt.unsqueeze(-1) * a) + (dt * xf).unsqueeze(-1) * b.float().unsqueeze(1)
        y = (ssm_state * c.float().unsqueeze(1)).sum(-1) + self.D.float() * xf
        y = y * F.silu(z.float())
        return y.to(x.dtype), (conv_state, ssm_state)


def cpu_fused_directions(ssms: Sequence[SelectiveSSM], xz: torch.Tensor, reverse: Sequence[bool]) -> torch.Tensor:
    """The SSM part (conv -> scan -> gate) of one or more directions in one fused CPU call.

    ``xz`` = in_proj(h) is (b, l, 2 * d_inner), read by every direction, or (b, l, G, 2 * d_inner),
    one slice per direction; ``reverse[g]`` runs direction g from the last position to the first
    (a BiMamba reverse direction without flipping anything). Returns (b, l, d_inner) summed over
    the directions for a shared xz, else (b, l, G, d_inner).
    """
    from dnadiff.models.kernels.cpu_fused import fused_mixer_cpu

    def stack(get: Callable[[SelectiveSSM], torch.Tensor]) -> torch.Tensor:
        return torch.stack([get(m) for m in ssms]) if len(ssms) > 1 else get(ssms[0]).unsqueeze(0)

    has_bias = ssms[0].conv1d.bias is not None
    return fused_mixer_cpu(
        xz,
        stack(lambda m: m.conv1d.weight[:, 0, :]),
        stack(lambda m: m.conv1d.bias) if has_bias else None,
        stack(lambda m: m.x_proj.weight),
        stack(lambda m: m.dt_proj.weight),
        -torch.exp(stack(lambda m: m.A_log).float()),
        stack(lambda m: m.D),
        stack(lambda m: m.dt_proj.bias),
        reverse,
    )


def ssm_kwargs(cfg: dict, d_model: int) -> dict:
    """The :class:`SelectiveSSM` arguments read from a model config dict."""
    return dict(
        d_inner=int(cfg["expand"] * d_model),
        d_state=cfg["d_state"],
        d_conv=cfg["d_conv"],
        dt_rank=resolve_dt_rank(cfg["dt_rank"], d_model),
        dt_min=cfg["dt_min"],
        dt_max=cfg["dt_max"],
        dt_init_floor=cfg["dt_init_floor"],
        conv_bias=cfg["conv_bias"],
        scan_backend=cfg["scan_backend"],
    )


class Mamba(nn.Module):
    """Causal Mamba mixer (b, l, d_model) -> (b, l, d_model), with recurrent :meth:`step`."""

    def __init__(self, d_model: int, bias: bool = False, **ssm: Any) -> None:
        super().__init__()
        self.ssm = SelectiveSSM(**ssm)
        d_inner = self.ssm.d_inner
        self.in_proj = nn.Linear(d_model, 2 * d_inner, bias=bias)
        self.out_proj = nn.Linear(d_inner, d_model, bias=bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        fn = self.ssm.fused_kernel(h)
        if fn is not None:
            return self.ssm.fused(fn, project_channels_first(self.in_proj, h), self.out_proj)
        if cpu_fused_applies(h, self.ssm.scan_backend, self.ssm.d_state):
            return self.out_proj(cpu_fused_directions([self.ssm], self.in_proj(h), (False,)))
        x, z = self.in_proj(h).transpose(1, 2).chunk(2, dim=1)
        return self.out_proj(self.ssm(x, z).transpose(1, 2))

    def allocate_state(self, batch: int, device=None, dtype=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Zero recurrent state for :meth:`step`."""
        return self.ssm.allocate_state(batch, device, dtype)

    def step(
        self, h: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """One token h (batch, d_model) -> (out (batch, d_model), new state)."""
        x, z = self.in_proj(h).chunk(2, dim=-1)
        y, state = self.ssm.step(x, z, state)
        return self.out_proj(y), state


class Block(nn.Module):
    """Pre-norm residual block h <- h + mixer(norm(h)); the residual stream h stays fp32.

    This is mamba-ssm's (hidden, residual) Block written on the residual stream directly: the
    same maths with ``residual_in_fp32=True``.
    """

    def __init__(self, d_model: int, mixer: nn.Module, norm_eps: float = 1e-5, scan_backend: str = "torch") -> None:
        super().__init__()
        self.norm = RMSNorm(d_model, eps=norm_eps, scan_backend=scan_backend)
        self.mixer = mixer

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.mixer(self.norm(h)).float()

    def step(self, h: torch.Tensor, state: tuple) -> tuple[torch.Tensor, tuple]:
        """One token through the block with the mixer's recurrent state."""
        out, state = self.mixer.step(self.norm(h), state)
        return h + out.float(), state
