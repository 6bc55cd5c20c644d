"""The ``cpu_fused`` backend: autograd wrappers around the fused CPU kernels (``cpu_kernels.cpp``).

Two entry points:

- :func:`selective_scan_cpu_fused`: ``selective_scan_fn`` semantics on (batch, d, length)
  tensors (the backend behind ``selective_scan(..., backend="cpu_fused")``). The kernel reads
  such position-contiguous tensors in place (tiles of positions transposed in registers), and
  channels-last ones directly; other strides work too, element by element.
- :func:`fused_mixer_cpu`: the part of a Mamba mixer between ``in_proj`` and ``out_proj`` as one
  autograd node on the channels-last ``xz = in_proj(h)`` (batch, length, 2 * d_inner), for one
  direction (Mamba) or both directions of a BiMamba layer in one call (a reversed group walks
  the sequence backwards, so nothing is flipped): depthwise causal conv + SiLU, ``x_proj`` and
  ``dt_proj`` (x_proj a batched matmul over the directions; dt_proj formed inside the scan, position by
  position, so the full-width delta never goes through memory), the scan with the delta bias, softplus,
  exp(delta A), D and the SiLU gate fused in, and for tied BiMamba weights the sum of the two
  directions. Like mamba-ssm's ``mamba_inner_fn`` it keeps only xz, the small x_proj output and
  the scan's segment-start states for backward, and recomputes the conv output and delta.

The scan backward is a reverse-time scan per segment of ``SEGMENT`` positions that recomputes
the segment's states from the stored one (as mamba-ssm's kernel does per chunk).
"""

from __future__ import annotations

import functools
import threading
import warnings
from collections.abc import Sequence

import torch

from dnadiff.models.kernels.build import load_cpu_kernels

__all__ = ["SEGMENT", "cpu_fused_unavailable_reason", "fused_mixer_cpu", "release_workspace", "rms_norm_cpu_fused",
           "selective_scan_cpu_fused"]

# Positions per backward segment: the recomputed states and decays of one segment (2 * SEGMENT *
# d_state vectors of 8 or 16 channels) stay in L2 cache; the stored states take d_state / SEGMENT
# of an input tensor's memory. Measured (d_state 16, 1 thread): 64 is 5-15% faster in backward
# than 32, and 128 no faster than 64.
SEGMENT = 64
MAX_STATE = 256


_WORKSPACE = threading.local()


def _buffer(name: str, shape: tuple[int, ...]) -> torch.Tensor:
    """A reusable fp32 scratch tensor of ``shape`` for this thread (grows, never shrinks).

    The mixer's internal temporaries (conv output, delta, their gradients) are the size of an
    activation and are not returned or saved, so one buffer per name serves every layer: this
    avoids faulting fresh pages in for each of them (measured as a large share of a CPU training
    step's time). :func:`release_workspace` frees them.
    """
    pool = getattr(_WORKSPACE, "pool", None)
    if pool is None:
        pool = _WORKSPACE.pool = {}
    numel = 1
    for s in shape:
        numel *= s
    buf = pool.get(name)
    if buf is None or buf.numel() < numel:
        buf = pool[name] = torch.empty(numel)
    return buf[:numel].view(shape)


def release_workspace() -> None:
    """Free this thread's scratch buffers of the fused mixer (they are re-created on next use)."""
    _WORKSPACE.pool = {}


def _ops():
    ops, why = load_cpu_kernels()
    if ops is None:
        raise RuntimeError(f"the cpu_fused kernels are unavailable: {why}")
    return ops


def cpu_fused_unavailable_reason() -> str:
    """Why the cpu_fused backend cannot run here ("" when it can; builds the kernels once)."""
    return load_cpu_kernels()[1]


@functools.lru_cache(maxsize=None)
def warn_unavailable_once(why: str) -> None:
    """The one-line notice shown (once per process) when ``auto`` falls back to ``torch``."""
    warnings.warn(f"dnadiff: cpu_fused scan kernels unavailable ({why}); using the torch scan backend",
                  RuntimeWarning, stacklevel=3)


def _mask(reverse: Sequence[bool]) -> int:
    return sum(1 << i for i, r in enumerate(reverse) if r)


def _cl(x: torch.Tensor) -> torch.Tensor:
    """(batch, d, length) -> a (1, batch, length, d) fp32 view (no copy for fp32 input)."""
    return x.float().transpose(1, 2).unsqueeze(0)


def _unit_last(x: torch.Tensor) -> torch.Tensor:
    """x itself when its channel (last) or position axis has unit stride, else a contiguous copy.

    The kernels read both layouts in place (position-contiguous tiles are transposed in
    registers), so the output gradient of a (batch, d, L) scan is never copied.
    """
    unit = x.stride(-1) == 1 or x.shape[-1] == 1 or x.stride(-2) == 1
    return x if unit and min(x.stride()) > 0 else x.contiguous()


def _needs_grad(*tensors: torch.Tensor | None) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


class _Scan(torch.autograd.Function):
    """Channels-last scan: u, delta, z (G|1, b, L, d); A (G, d, n); B, C (G, b, L, n); D, bias (G, d)."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, bias, softplus: bool, reverse: int, segment: int):  # noqa: D102
        save = any(ctx.needs_input_grad)
        out, last, ckpt = _ops().scan_fwd(u, delta, A, B, C, D, z, bias, softplus, reverse, False, save, segment)
        ctx.mark_non_differentiable(last)
        if save:
            ctx.save_for_backward(u, delta, A, B, C, D, z, bias, ckpt)
            ctx.cfg = (softplus, reverse, segment)
        return out, last

    @staticmethod
    def backward(ctx, gout, _glast):  # noqa: D102
        u, delta, A, B, C, D, z, bias, ckpt = ctx.saved_tensors
        softplus, reverse, segment = ctx.cfg
        gz = torch.empty_like(z) if z is not None else None
        gu, gdelta, gA, gB, gC, gD, gbias = _ops().scan_bwd(
            u, delta, A, B, C, D, z, bias, softplus, reverse, ckpt, segment, _unit_last(gout), gz, None, None)
        return (gu, gdelta, gA, gB, gC, gD if D is not None else None, gz,
                gbias if bias is not None else None, None, None, None)


def selective_scan_cpu_fused(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
    segment: int = SEGMENT,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """``selective_scan_fn`` on CPU tensors through the fused kernel (fp32 inside; shapes checked
    by the caller). ``segment`` only trades backward speed for memory."""
    if A.shape[1] > MAX_STATE:
        raise ValueError(f"the cpu_fused scan supports d_state up to {MAX_STATE}, got {A.shape[1]}")
    if segment < 1:
        raise ValueError(f"segment must be >= 1, got {segment}")
    dtype_in = u.dtype
    if B.stride(1) != C.stride(1):  # the kernel reads B and C with one state stride
        B, C = B.contiguous(), C.contiguous()
    args = (
        _cl(u), _cl(delta), A.float().contiguous().unsqueeze(0), _cl(B), _cl(C),
        None if D is None else D.float().contiguous().unsqueeze(0),
        None if z is None else _cl(z),
        None if delta_bias is None else delta_bias.float().contiguous().unsqueeze(0),
        bool(delta_softplus), 0,
    )
    if _needs_grad(u, delta, A, B, C, D, z, delta_bias):
        out, last = _Scan.apply(*args, int(segment))
    else:  # inference: no autograd node, no states kept for backward
        out, last, _ = _ops().scan_fwd(*args, False, False, int(segment))
    y = out.squeeze(0).transpose(1, 2).to(dtype_in)  # squeeze, not out[0]: its backward is a view, not a copy
    return (y, last.squeeze(0)) if return_last_state else y


def _xdbl_parts(r: int, n: int) -> tuple[tuple[int, int], ...]:
    """Column ranges of x_proj's output [dt_low, B, C] (widths r, n, n)."""
    return (0, r), (r, r + n), (r + n, r + 2 * n)


class _Mixer(torch.autograd.Function):
    """conv + SiLU -> x_proj -> dt_proj -> scan (+D, gate) for G stacked directions; see module doc."""

    @staticmethod
    @torch.amp.custom_fwd(device_type="cpu", cast_inputs=torch.float32)  # fp32 inside under autocast
    def forward(ctx, xz, conv_w, conv_b, xproj_w, dtproj_w, A, D, dt_bias, reverse: int, dims: tuple):  # noqa: D102
        d, n, r = dims
        ops = _ops()
        G = A.shape[0]
        b, L = xz.shape[:2]
        xzg = xz.permute(2, 0, 1, 3)  # (Gx, b, L, 2d); Gx = 1: both directions read one xz
        x, z = xzg[..., :d], xzg[..., d:]
        u = ops.conv_fwd(x, conv_w, conv_b, True, reverse, _buffer("u", (G, b, L, d)))  # (G, b, L, d)
        xdbl = torch.bmm(u.view(G, b * L, d), xproj_w.transpose(1, 2))  # (G, bL, r + 2n)
        dt_low, Bm, Cm = (xdbl[..., lo:hi].unflatten(1, (b, L)) for lo, hi in _xdbl_parts(r, n))
        save = any(ctx.needs_input_grad)
        shared = xzg.shape[0] == 1
        y, _, ckpt = ops.scan_fwd(u, dt_low, A, Bm, Cm, D, z, dt_bias, True, reverse, shared, save, SEGMENT, dtproj_w)
        if save:
            ctx.save_for_backward(xz, conv_w, conv_b, xproj_w, dtproj_w, A, D, dt_bias, xdbl, ckpt)
            ctx.cfg = (reverse, dims)
        return y if shared else y.permute(1, 2, 0, 3)  # (b, L, d) or (b, L, G, d)

    @staticmethod
    @torch.amp.custom_bwd(device_type="cpu")
    def backward(ctx, gy):  # noqa: D102
        xz, conv_w, conv_b, xproj_w, dtproj_w, A, D, dt_bias, xdbl, ckpt = ctx.saved_tensors
        reverse, (d, n, r) = ctx.cfg
        ops = _ops()
        G = A.shape[0]
        b, L = xz.shape[:2]
        xzg = xz.permute(2, 0, 1, 3)
        x, z = xzg[..., :d], xzg[..., d:]
        shared = xzg.shape[0] == 1
        gy = gy.unsqueeze(0) if shared else gy.permute(2, 0, 1, 3)
        u = ops.conv_fwd(x, conv_w, conv_b, True, reverse, _buffer("u", (G, b, L, d)))
        dt_low, Bm, Cm = (xdbl[..., lo:hi].unflatten(1, (b, L)) for lo, hi in _xdbl_parts(r, n))
        gxz = torch.empty_like(xz)
        gxzg = gxz.permute(2, 0, 1, 3)
        gu, gdelta, gA, gB, gC, gD, gbias = ops.scan_bwd(
            u, dt_low, A, Bm, Cm, D, z, dt_bias, True, reverse, ckpt, SEGMENT, _unit_last(gy), gxzg[..., d:],
            _buffer("gu", (G, b, L, d)), _buffer("gdelta", (G, b, L, d)), dtproj_w)
        gdelta = gdelta.view(G, b * L, d)
        g_dtproj = torch.bmm(gdelta.transpose(1, 2), dt_low.flatten(1, 2))  # (G, d, r)
        g_xdbl = torch.cat([torch.bmm(gdelta, dtproj_w), gB.view(G, b * L, n), gC.view(G, b * L, n)], dim=-1)
        g_xproj = torch.bmm(g_xdbl.transpose(1, 2), u.view(G, b * L, d))  # (G, r + 2n, d)
        gu = gu.view(G, b * L, d).baddbmm_(g_xdbl, xproj_w).view(G, b, L, d)
        g_conv_w, g_conv_b = ops.conv_bwd(x, conv_w, conv_b, True, reverse, gu, gxzg[..., :d])
        return (gxz, g_conv_w, g_conv_b if conv_b is not None else None, g_xproj, g_dtproj, gA, gD, gbias,
                None, None)


def fused_mixer_cpu(
    xz: torch.Tensor,
    conv_w: torch.Tensor,
    conv_b: torch.Tensor | None,
    xproj_w: torch.Tensor,
    dtproj_w: torch.Tensor,
    A: torch.Tensor,
    D: torch.Tensor,
    dt_bias: torch.Tensor,
    reverse: Sequence[bool],
) -> torch.Tensor:
    """y = scan(silu(conv(x)), ...) * silu(z) for G stacked directions of one mixer, channels-last.

    xz: (b, L, 2d) = [x, z] shared by every direction, or (b, L, G, 2d), one per direction.
    conv_w (G, d, K), conv_b (G, d), xproj_w (G, dt_rank + 2n, d), dtproj_w (G, d, dt_rank),
    A (G, d, n) (the negative decay rates), D and dt_bias (G, d); ``reverse[g]`` makes direction g
    run from the last position to the first. Returns (b, L, d), summed over the directions when
    xz is shared, else (b, L, G, d). fp32 inside; the result has xz's dtype.
    """
    G, d, n = A.shape
    r = dtproj_w.shape[-1]
    if n > MAX_STATE:
        raise ValueError(f"the cpu_fused scan supports d_state up to {MAX_STATE}, got {n}")
    if len(reverse) != G:
        raise ValueError(f"reverse needs one flag per direction ({G}), got {len(reverse)}")
    dtype = xz.dtype
    xz4 = xz.unsqueeze(2) if xz.dim() == 3 else xz
    if xz4.shape[2] not in (1, G) or xz4.shape[3] != 2 * d:
        raise ValueError(f"xz must be (b, L, 2*{d}) or (b, L, {G}, 2*{d}), got {tuple(xz.shape)}")
    f = lambda t: None if t is None else t.float().contiguous()  # noqa: E731
    y = _Mixer.apply(f(xz4), f(conv_w), f(conv_b), f(xproj_w), f(dtproj_w), f(A), f(D), f(dt_bias),
                     _mask(reverse), (d, n, r))
    return y.to(dtype)


def rms_norm_cpu_fused(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """``F.rms_norm(x.float(), (d,), weight.float(), eps)`` in one fused pass, without autograd
    (inference only: the caller keeps torch's where a gradient is needed)."""
    return _ops().rms_norm(x.float(), weight.float(), float(eps))
