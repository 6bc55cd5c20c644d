"""Caduceus pieces: BiMamba, the RCPS (reverse-complement parameter sharing) wrapper, and the
reverse-complement helpers.

Weight sharing in BiMamba (the Caduceus choice, ``bidirectional_weight_tie=True``): the forward
and reverse directions share ``in_proj`` and ``out_proj`` (one parameter tensor each, so they
are counted once and appear once in the state dict) and have separate conv1d / x_proj / dt_proj
/ A_log / D. Since in_proj acts per position, in_proj(flip(h)) = flip(in_proj(h)): it is
computed once for both directions, and out_proj(y_f) + out_proj(y_r) is one matmul on y_f + y_r.

RC on hidden states of width 2D: RC(h) = h flipped along the sequence AND the channels.
:class:`RCPSWrapper` runs a width-D module f on both halves,

    block(h) = [ f(h[..., :D]),  flipSC( f(flipSC(h[..., D:])) ) ],

so block(RC(h)) = RC(block(h)) for any f (the halves are stacked along the batch so that f
runs once). The two halves never mix until the LM head.

``swap_halves=True`` first swaps the halves, h -> [h[..., D:], h[..., :D]]: the wiring of the
Caduceus authors' ``fused_add_norm`` code path (config key ``rcps_swap_halves``, see
``dnadiff.models.hf_caduceus``). The swap commutes with RC (RC([a, b]) = [flipSC(b), flipSC(a)]),
so the block stays exactly RC-equivariant.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from dnadiff.models.mamba import SelectiveSSM, cpu_fused_applies, cpu_fused_directions, project_channels_first


def flip_seq_channels(h: torch.Tensor) -> torch.Tensor:
    """flipSC: reverse a (batch, length, channels) tensor along the sequence and the channels."""
    return h.flip(dims=(-2, -1))


def rc_hidden(h: torch.Tensor) -> torch.Tensor:
    """RC of RCPS hidden states (batch, length, 2D): the whole tensor flipped in sequence and channels."""
    return flip_seq_channels(h)


def fold_rc_channels(h: torch.Tensor) -> torch.Tensor:
    """Fold 2D RC-equivariant channels into D: ``h[..., :D] + flip_channels(h[..., D:])``.

    For Caduceus-PS, hidden(rc(x)) = flipSC(hidden(x)), so the folded states only flip along the
    sequence under RC; anything pooled over positions from them is exactly RC-invariant.
    """
    if h.shape[-1] % 2:
        raise ValueError(f"RCPS hidden states need an even channel count, got {h.shape[-1]}")
    d = h.shape[-1] // 2
    return h[..., :d] + h[..., d:].flip(-1)


def rc_invariant_pool(hidden: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Pool Caduceus-PS hidden states (batch, length, 2D) to (batch, D), invariant to RC of the input:
    the (masked) mean over positions of :func:`fold_rc_channels`. ``mask`` (batch, length) marks
    positions to keep; reverse it with the input."""
    summed = fold_rc_channels(hidden)
    if mask is None:
        return summed.mean(dim=1)
    m = mask.to(summed.dtype).unsqueeze(-1)
    return (summed * m).sum(1) / m.sum(1).clamp(min=1.0)


class RCPSWrapper(nn.Module):
    """Make a width-D sequence module RC-equivariant on width-2D hidden states (see module doc)."""

    def __init__(self, module: nn.Module, swap_halves: bool = False) -> None:
        super().__init__()
        self.module = module
        self.swap_halves = bool(swap_halves)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.unstack(self.run_stacked(self.stack(h)), h.shape[0])

    @staticmethod
    def stack(h: torch.Tensor) -> torch.Tensor:
        """(batch, length, 2D) -> (2 * batch, length, D): [h[..., :D]; flipSC(h[..., D:])]."""
        if h.shape[-1] % 2:
            raise ValueError(f"RCPS hidden states need an even channel count, got {h.shape[-1]}")
        d = h.shape[-1] // 2
        return torch.cat([h[..., :d], flip_seq_channels(h[..., d:])], dim=0)

    @staticmethod
    def unstack(s: torch.Tensor, batch: int) -> torch.Tensor:
        """The inverse of :meth:`stack`: (2 * batch, length, D) -> (batch, length, 2D)."""
        return torch.cat([s[:batch], flip_seq_channels(s[batch:])], dim=-1)

    def run_stacked(self, s: torch.Tensor) -> torch.Tensor:
        """The block on the stacked layout of :meth:`stack` (what ``DNALM`` keeps between blocks).

        With ``swap_halves`` the halves [a, b] become [b, a]; stacked, [a; flipSC(b)] becomes
        [b; flipSC(a)] = [flipSC(s[B:]); flipSC(s[:B])].
        """
        if self.swap_halves:
            batch = s.shape[0] // 2
            s = torch.cat([flip_seq_channels(s[batch:]), flip_seq_channels(s[:batch])], dim=0)
        return self.module(s)


class BiMamba(nn.Module):
    """Bidirectional Mamba mixer: out = f(h) + flip(f_rev(flip(h))) along the sequence.

    ``weight_tie=True`` (default, as Caduceus): one ``in_proj``/``out_proj`` for both directions;
    ``False`` gives the reverse direction its own ``in_proj_rev``/``out_proj_rev``.
    """

    def __init__(self, d_model: int, bias: bool = False, weight_tie: bool = True, **ssm: Any) -> None:
        super().__init__()
        self.ssm_fwd = SelectiveSSM(**ssm)
        self.ssm_rev = SelectiveSSM(**ssm)
        d_inner = self.ssm_fwd.d_inner
        self.weight_tie = weight_tie
        self.in_proj = nn.Linear(d_model, 2 * d_inner, bias=bias)
        self.out_proj = nn.Linear(d_inner, d_model, bias=bias)
        if not weight_tie:
            self.in_proj_rev = nn.Linear(d_model, 2 * d_inner, bias=bias)
            self.out_proj_rev = nn.Linear(d_inner, d_model, bias=bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        fn = self.ssm_fwd.fused_kernel(h)
        if fn is not None:
            return self._fused(fn, h)
        if cpu_fused_applies(h, self.ssm_fwd.scan_backend, self.ssm_fwd.d_state):
            return self._cpu_fused(h)
        x, z = self.in_proj(h).transpose(1, 2).chunk(2, dim=1)
        y_fwd = self.ssm_fwd(x, z)
        if self.weight_tie:
            y_rev = self.ssm_rev(x.flip(-1), z.flip(-1)).flip(-1)
            out = self.out_proj((y_fwd + y_rev).transpose(1, 2))
            if self.out_proj.bias is not None:
                out = out + self.out_proj.bias
            return out
        xr, zr = self.in_proj_rev(h.flip(1)).transpose(1, 2).chunk(2, dim=1)
        y_rev = self.ssm_rev(xr, zr)
        return self.out_proj(y_fwd.transpose(1, 2)) + self.out_proj_rev(y_rev.transpose(1, 2)).flip(1)

    def _cpu_fused(self, h: torch.Tensor) -> torch.Tensor:
        """Both directions in one fused CPU call (see ``cpu_fused_directions``): the reverse
        direction walks the sequence backwards instead of reading flipped copies."""
        ssms, reverse = [self.ssm_fwd, self.ssm_rev], (False, True)
        if self.weight_tie:
            out = self.out_proj(cpu_fused_directions(ssms, self.in_proj(h), reverse))  # y_fwd + y_rev
            return out if self.out_proj.bias is None else out + self.out_proj.bias
        bias = None
        if self.in_proj.bias is not None:
            bias = torch.cat([self.in_proj.bias, self.in_proj_rev.bias])
        xz = F.linear(h, torch.cat([self.in_proj.weight, self.in_proj_rev.weight]), bias)
        y = cpu_fused_directions(ssms, xz.unflatten(-1, (2, -1)), reverse)  # (b, l, 2, d_inner)
        return self.out_proj(y[:, :, 0]) + self.out_proj_rev(y[:, :, 1])

    def _fused(self, fn: Callable, h: torch.Tensor) -> torch.Tensor:
        """Both directions through mamba-ssm's fused kernel ``fn``: with tied weights the reverse
        direction reads the same xz, flipped, so in_proj runs once."""
        xz = project_channels_first(self.in_proj, h)
        out_fwd = self.ssm_fwd.fused(fn, xz, self.out_proj)
        if self.weight_tie:
            out_rev = self.ssm_rev.fused(fn, xz.flip(-1), self.out_proj)
        else:
            xz_rev = project_channels_first(self.in_proj_rev, h.flip(1))
            out_rev = self.ssm_rev.fused(fn, xz_rev, self.out_proj_rev)
        return out_fwd + out_rev.flip(1)
