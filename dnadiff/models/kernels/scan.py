"""Selective-scan backends behind one function.

``selective_scan`` has the signature and semantics of mamba-ssm's ``selective_scan_fn``:

    h_t = exp(delta_t * A) * h_{t-1} + delta_t * B_t * u_t,    y_t = <C_t, h_t> + D * u_t,
    out = y * silu(z) when z is given,

with u, delta, z of shape (batch, d, length), A (d, n), B and C (batch, n, length), D (d,).

Backends:

- ``ref``: a plain sequential loop, the ground truth of the tests (slow).
- ``torch``: a chunked scan in pure PyTorch (any device). The sequence is cut into blocks
  that are processed one after the other, carrying the state; inside a block it is cut into
  ``nc`` chunks of ``T`` steps. A sequential loop over the T steps runs on all chunks at once
  (zero initial state), a short loop over chunks carries the chunk-end states, and one
  correction ``h_t += (a_1 * ... * a_t) * h_chunk_start`` gives the true states
  (a_t = exp(delta_t A) <= 1). Only decays a <= 1 are ever formed or multiplied, never their
  inverses, so nothing overflows however strong the decay (delta*A summing to -1e4 just
  underflows to 0, as it should). When batch * d * n is large one chunk per block is used
  (a plain sequential loop over the block). A custom autograd function keeps only the
  block-start states and recomputes each block in backward (the gradient of the states is a
  reverse scan with the same structure), so memory grows with ``batch * d * length`` (the
  inputs), never with ``batch * d * length * n``.
- ``cuda``: mamba-ssm's fused kernel (``pip install dnadiff[cuda]``), for CUDA tensors.
- ``cpu_fused``: dnadiff's fused C++ kernel for CPU tensors (``dnadiff.models.kernels``), built
  just in time on first use; multi-threaded, state kept in registers/cache, backward a
  reverse-time scan that recomputes each segment's states.

``auto`` picks ``cuda`` for CUDA tensors (when mamba-ssm imports), ``cpu_fused`` for CPU tensors
(when its kernel builds and loads; otherwise ``torch``, with a one-line notice), else ``torch``.
The environment variable ``DNADIFF_SCAN_BACKEND`` (one of the backend names) replaces what
``auto`` picks, e.g. ``DNADIFF_SCAN_BACKEND=torch`` to run everything on the pure-PyTorch scan.

With the ``cuda`` backend and causal-conv1d installed, the mixers go one step further, as
mamba-ssm's own ``Mamba`` does: :func:`fused_mixer` hands them mamba-ssm's ``mamba_inner_fn``,
one autograd node for conv + x_proj + dt_proj + scan + gate + out_proj that recomputes the conv
output and delta in backward instead of storing them.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from types import ModuleType

import torch
import torch.nn.functional as F

__all__ = [
    "ScanBackendError",
    "available_backends",
    "causal_conv1d",
    "fused_mixer",
    "selective_scan",
    "selective_scan_ref",
    "selective_scan_torch",
]

BACKENDS = ("auto", "cuda", "cpu_fused", "torch", "ref")
BACKEND_ENV = "DNADIFF_SCAN_BACKEND"
_CPU_FUSED_MAX_STATE = 256  # dnadiff.models.kernels.cpu_fused.MAX_STATE (not imported: it loads lazily)

# Elements (batch * d * n * positions) of one block of the torch backend; a few buffers of
# this size live at once. On CPU small blocks stay in cache; on GPU large blocks mean few
# kernel launches.
_BLOCK_ELEMS = {"cpu": 1 << 21, "cuda": 1 << 26}
_CHUNK = {"cpu": 8, "cuda": 32}
# State width (batch * d * n) from which one chunk per block is used. On CPU, fwd+bwd with 1
# and 2 threads: at width 8192 one chunk is 10-30% faster than chunks of 8, at 16384 20-25%;
# at 4096 and below chunks of 8 win with 2 threads.
_WIDE = {"cpu": 1 << 13, "cuda": 1 << 40}


class ScanBackendError(RuntimeError):
    """A requested scan backend cannot run here (package missing, or tensors not on CUDA)."""


@functools.lru_cache(maxsize=None)
def _mamba_ssm_import() -> tuple[ModuleType | None, str]:
    """mamba-ssm's selective-scan interface module (or None) and the reason it is missing."""
    try:
        from mamba_ssm.ops import selective_scan_interface
    except Exception as exc:  # ImportError, or a broken build raising at import
        return None, f"importing mamba_ssm failed: {type(exc).__name__}: {exc}"
    return selective_scan_interface, ""


@functools.lru_cache(maxsize=None)
def _causal_conv1d_import() -> object | None:
    """causal-conv1d's ``causal_conv1d_fn`` when the package imports, else None."""
    try:
        from causal_conv1d import causal_conv1d_fn
    except Exception:
        return None
    return causal_conv1d_fn


def _mamba_inner_import() -> Callable | None:
    """mamba-ssm's fused ``mamba_inner_fn`` when it and causal-conv1d's kernels import, else None."""
    ssi = _mamba_ssm_import()[0]
    if ssi is None:
        return None
    # mamba_inner_fn calls causal-conv1d's kernels directly; mamba-ssm sets its handle to them
    # to None when causal-conv1d is missing (2.3: causal_conv1d_fwd_function, 2.2: causal_conv1d_cuda).
    kernels = (getattr(ssi, name, None) for name in ("causal_conv1d_fwd_function", "causal_conv1d_cuda"))
    return ssi.mamba_inner_fn if any(k is not None for k in kernels) else None


def fused_mixer(x: torch.Tensor, backend: str) -> Callable | None:
    """mamba-ssm's ``mamba_inner_fn`` when ``backend`` runs mamba-ssm's kernels on ``x``, else None.

    Used by the mixers: ``auto`` or ``cuda`` on a CUDA tensor with mamba-ssm and causal-conv1d
    importable. None means "call causal_conv1d and selective_scan one by one" (where an
    unusable ``cuda`` backend then raises its :class:`ScanBackendError`).
    """
    if not x.is_cuda or resolve_backend(backend, x) != "cuda" or _cuda_unavailable_reason(x):
        return None
    return _mamba_inner_import()


def available_backends() -> list[str]:
    """Backends that can run on this machine (``cuda`` needs mamba-ssm and a GPU)."""
    names = ["torch", "ref"]
    if not _cpu_fused_unavailable_reason():
        names.insert(0, "cpu_fused")
    if torch.cuda.is_available() and _mamba_ssm_import()[0] is not None:
        names.insert(0, "cuda")
    return names


def _cpu_fused_unavailable_reason() -> str:
    """Why the cpu_fused kernels cannot run here ("" when they can; builds them once)."""
    from dnadiff.models.kernels.cpu_fused import cpu_fused_unavailable_reason

    return cpu_fused_unavailable_reason()


def resolve_backend(backend: str, x: torch.Tensor, d_state: int = 1) -> str:
    """The backend that ``backend`` means for tensors like ``x`` (``auto`` resolved, see module doc;
    on CPU ``auto`` keeps ``torch`` for a d_state beyond the cpu_fused kernel's 256)."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown scan backend {backend!r}; choose one of {BACKENDS}")
    if backend != "auto":
        return backend
    forced = os.environ.get(BACKEND_ENV, "")
    if forced:
        if forced not in BACKENDS or forced == "auto":
            raise ValueError(f"{BACKEND_ENV}={forced!r} is not a scan backend; choose one of {BACKENDS[1:]}")
        return forced
    if x.is_cuda:
        return "cuda" if not _cuda_unavailable_reason(x) else "torch"
    if x.device.type == "cpu" and d_state <= _CPU_FUSED_MAX_STATE:
        why = _cpu_fused_unavailable_reason()
        if not why:
            return "cpu_fused"
        from dnadiff.models.kernels.cpu_fused import warn_unavailable_once

        warn_unavailable_once(why)
    return "torch"


def cpu_fused_applies(x: torch.Tensor, backend: str, d_state: int) -> bool:
    """Whether the mixers should take the fused CPU path for ``x`` with this backend setting."""
    if resolve_backend(backend, x, d_state) != "cpu_fused":
        return False
    _check_cpu_fused(x)
    return True


def _check_cpu_fused(x: torch.Tensor) -> None:
    """Raise ScanBackendError when the cpu_fused backend cannot run on ``x``."""
    if x.device.type != "cpu":
        raise ScanBackendError(
            f"scan backend 'cpu_fused' needs CPU tensors, got tensors on {x.device}; set "
            "model.scan_backend = 'auto' (it picks the backend by device)")
    why = _cpu_fused_unavailable_reason()
    if why:
        raise ScanBackendError(f"scan backend 'cpu_fused' is unavailable: {why}; use 'torch' or 'auto'")


def _cuda_unavailable_reason(u: torch.Tensor) -> str:
    """Why the cuda backend cannot run on ``u`` ("" when it can)."""
    ssi, why = _mamba_ssm_import()
    if ssi is None:
        return (
            f"mamba-ssm is not usable ({why}); install it with `pip install dnadiff[cuda]` "
            "on a machine with a CUDA GPU and nvcc (it compiles CUDA kernels)"
        )
    if not u.is_cuda:
        return (
            f"the cuda backend needs CUDA tensors, got tensors on {u.device}; move the model to a "
            "GPU, or set model.scan_backend = 'auto' (it picks the backend by device)"
        )
    return ""


def _check_shapes(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None,
    z: torch.Tensor | None,
    delta_bias: torch.Tensor | None,
) -> None:
    """Raise ValueError naming the first argument whose shape does not fit u's."""
    if u.dim() != 3:
        raise ValueError(f"u must be (batch, d, length), got shape {tuple(u.shape)}")
    b, d, length = u.shape
    if min(b, d, length) < 1:
        raise ValueError(f"u must be non-empty, got shape {tuple(u.shape)}")
    if A.dim() != 2 or A.shape[0] != d:
        raise ValueError(f"A must be (d={d}, n), got shape {tuple(A.shape)}")
    n = A.shape[1]
    if A.is_complex():
        raise ValueError("complex A is not supported; use a real A (mamba-ssm's default)")
    expected = {"delta": (delta, (b, d, length)), "B": (B, (b, n, length)), "C": (C, (b, n, length))}
    if z is not None:
        expected["z"] = (z, (b, d, length))
    if D is not None:
        expected["D"] = (D, (d,))
    if delta_bias is not None:
        expected["delta_bias"] = (delta_bias, (d,))
    for name, (tensor, shape) in expected.items():
        if tuple(tensor.shape) != shape:
            raise ValueError(f"{name} must have shape {shape}, got {tuple(tensor.shape)}")


def selective_scan_ref(
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
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Plain sequential scan in fp32: the ground truth the fast backends are tested against."""
    dtype_in = u.dtype
    u, delta, B, C = u.float(), delta.float(), B.float(), C.float()
    if delta_bias is not None:
        delta = delta + delta_bias.float()[None, :, None]
    if delta_softplus:
        delta = F.softplus(delta)
    batch, d, length = u.shape
    h = u.new_zeros(batch, d, A.shape[1])
    decay = torch.exp(delta.unsqueeze(-1) * A.float()[None, :, None, :])  # (b, d, l, n)
    drive = (delta * u).unsqueeze(-1) * B.transpose(1, 2).unsqueeze(1)  # (b, d, l, n)
    ys = []
    # unbind (not indexing) so that backward stays linear in length
    for a_t, x_t, c_t in zip(decay.unbind(2), drive.unbind(2), C.unbind(2)):
        h = a_t * h + x_t
        ys.append(torch.einsum("bdn,bn->bd", h, c_t))
    y = torch.stack(ys, dim=-1)
    if D is not None:
        y = y + u * D.float()[None, :, None]
    if z is not None:
        y = y * F.silu(z.float())
    y = y.to(dtype_in)
    return (y, h) if return_last_state else y


# ---------------------------------------------------------------------------------------
# torch backend: chunked scan with block recomputation.
# The autograd function takes position-major inputs (L, b, k). Inside a block, states live
# in a "time-chunk" layout (T, nc, b, n, d): position p = c * T + t of the block sits at
# [t, c]. Slices [t] and [t, c] are contiguous, which keeps the sequential loops cheap, and
# d is the innermost axis, which keeps the broadcasts fast.
# ---------------------------------------------------------------------------------------


def _to_tc(x: torch.Tensor, T: int) -> torch.Tensor:
    """(Lb, b, k) position-major -> view (T, nc, b, k) with Lb = nc * T, k contiguous."""
    lb, b, k = x.shape
    return x.view(lb // T, T, b, k).transpose(0, 1)


def _block_states(
    dtb: torch.Tensor,
    dub: torch.Tensor,
    Bb: torch.Tensor,
    At: torch.Tensor,
    h0: torch.Tensor,
    a: torch.Tensor,
    h: torch.Tensor,
    tmp: torch.Tensor,
) -> torch.Tensor:
    """States of one block into ``h`` (T, nc, b, n, d), decays into ``a``; returns the end state.

    dtb, dub: (T, nc, b, d) views of delta and delta*u; Bb: (T, nc, b, n); At: A transposed,
    (n, d); h0: (b, n, d) state before the block; ``tmp`` is scratch of h's shape. With one
    chunk (nc == 1) this is a plain sequential loop started from h0.
    """
    T, nc = dtb.shape[:2]
    torch.mul(dtb.unsqueeze(-2), At, out=a)
    a.exp_()
    torch.mul(dub.unsqueeze(-2), Bb.unsqueeze(-1), out=h)
    if nc == 1:
        h[0, 0].addcmul_(a[0, 0], h0)
    for t in range(1, T):  # all chunks at once; zero initial state when nc > 1
        h[t].addcmul_(a[t], h[t - 1])
    if nc == 1:
        return h[T - 1, 0].clone()
    torch.cumprod(a, dim=0, out=tmp)  # decay from each chunk's start to t (products of a <= 1)
    starts = torch.empty_like(h[0])
    state = h0
    for c in range(nc):  # carry the true state across chunks
        starts[c] = state
        state = torch.addcmul(h[T - 1, c], tmp[T - 1, c], state)
    h.addcmul_(tmp, starts.unsqueeze(0))
    return state


def _rowdot(x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """sum_j x[..., i, j] * v[..., j] -> (..., i), as one batched matrix product."""
    return torch.matmul(x, v.unsqueeze(-1)).squeeze(-1)


def _coldot(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """sum_i x[..., i, j] * w[..., i] -> (..., j), as one batched matrix product."""
    return torch.matmul(w.unsqueeze(-2), x).squeeze(-2)


class _ChunkedScan(torch.autograd.Function):
    """y_t = <C_t, h_t>, h_t = exp(dt_t A) h_{t-1} + dt_t u_t B_t, in fp32, memory-bounded.

    Inside, states are laid out (n, d) so that the broadcasts run along the long d axis.
    """

    @staticmethod
    def forward(ctx, dt, u, A, B, C, T: int, block: int):  # noqa: D102 (autograd API)
        L, b, d = u.shape
        n = A.shape[1]
        At = A.t().contiguous()
        du = dt * u
        y = torch.empty_like(u)
        starts = []
        state = u.new_zeros(b, n, d)
        shape = (T, block // T, b, n, d)
        a, h, tmp = (u.new_empty(shape) for _ in range(3))
        for l0 in range(0, L, block):
            l1 = min(L, l0 + block)
            nc = (l1 - l0) // T
            ab, hb, tb = a[:, :nc], h[:, :nc], tmp[:, :nc]
            starts.append(state)
            dtb, dub = _to_tc(dt[l0:l1], T), _to_tc(du[l0:l1], T)
            Bb, Cb = _to_tc(B[l0:l1], T), _to_tc(C[l0:l1], T)
            state = _block_states(dtb, dub, Bb, At, state, ab, hb, tb)
            _to_tc(y[l0:l1], T).copy_(_coldot(hb, Cb))
        ctx.save_for_backward(dt, u, At, B, C, torch.stack(starts))
        ctx.T, ctx.block = T, block
        last = state.transpose(1, 2).contiguous()
        ctx.mark_non_differentiable(last)
        return y, last

    @staticmethod
    def backward(ctx, gy, _glast):  # noqa: D102 (autograd API)
        dt, u, At, B, C, starts = ctx.saved_tensors
        T, block = ctx.T, ctx.block
        L, b, d = u.shape
        n = At.shape[0]
        gy = gy.contiguous()
        du = dt * u
        g_dt, g_du = torch.empty_like(dt), torch.empty_like(dt)
        g_B, g_C = torch.empty_like(B), torch.empty_like(C)
        g_At = torch.zeros_like(At)
        carry = u.new_zeros(b, n, d)  # a_{l1} * dL/dh_{l1}, from the block after
        shape = (T, block // T, b, n, d)
        a, h, tmp, gh = (u.new_empty(shape) for _ in range(4))
        for i in reversed(range(starts.shape[0])):
            l0 = i * block
            l1 = min(L, l0 + block)
            nc = (l1 - l0) // T
            ab, hb, tb, gb = a[:, :nc], h[:, :nc], tmp[:, :nc], gh[:, :nc]
            dtb, dub = _to_tc(dt[l0:l1], T), _to_tc(du[l0:l1], T)
            Bb, Cb = _to_tc(B[l0:l1], T), _to_tc(C[l0:l1], T)
            gyb = _to_tc(gy[l0:l1], T)
            h0 = starts[i]
            _block_states(dtb, dub, Bb, At, h0, ab, hb, tb)
            # dL/dh_t = C_t gy_t + a_{t+1} dL/dh_{t+1}: a reverse scan, chunked like forward.
            torch.mul(gyb.unsqueeze(-2), Cb.unsqueeze(-1), out=gb)
            if nc == 1:
                gb[T - 1, 0].add_(carry)
            for t in range(T - 2, -1, -1):
                gb[t].addcmul_(ab[t + 1], gb[t + 1])
            if nc > 1:
                # tb[t] = prod of a after t up to the chunk's end: decay of the chunk-end carry.
                tb[T - 1].fill_(1.0)
                for t in range(T - 2, -1, -1):
                    torch.mul(tb[t + 1], ab[t + 1], out=tb[t])
                ends = torch.empty_like(hb[0])
                for c in range(nc - 1, -1, -1):
                    ends[c] = carry
                    carry = ab[0, c] * torch.addcmul(gb[0, c], tb[0, c], carry)
                gb.addcmul_(tb, ends.unsqueeze(0))
            else:
                carry = ab[0, 0] * gb[0, 0]
            # Gradients of the block's inputs.
            _to_tc(g_C[l0:l1], T).copy_(_rowdot(hb, gyb))
            _to_tc(g_B[l0:l1], T).copy_(_rowdot(gb, dub))
            _to_tc(g_du[l0:l1], T).copy_(_coldot(gb, Bb))
            # dL/d(dt_t A) = dL/dh_t * a_t * h_{t-1}; h_{t-1} is h shifted by one position.
            torch.mul(ab[1:], hb[:-1], out=tb[1:])
            torch.mul(ab[0, 1:], hb[T - 1, :-1], out=tb[0, 1:])
            torch.mul(ab[0, 0], h0, out=tb[0, 0])
            tb.mul_(gb)
            torch.mul(tb, dtb.unsqueeze(-2), out=gb)  # gb is free now: reuse it as scratch
            g_At += gb.sum(dim=(0, 1, 2))
            _to_tc(g_dt[l0:l1], T).copy_(tb.mul_(At).sum(-2))
        g_dt += g_du * u
        g_u = g_du * dt
        return g_dt, g_u, g_At.t(), g_B, g_C, None, None


def _torch_layout(batch: int, d: int, n: int, length: int, device: torch.device,
                  chunk: int | None, block_elems: int | None) -> tuple[int, int]:
    """Chunk length T and block length (a multiple of T) for the torch backend.

    Each step of the sequential loops touches ``nc * batch * d * n`` elements: with a wide
    state (batch * d * n >= _WIDE) one chunk per block (nc = 1) is cheapest; with a narrow one
    several chunks run side by side so that each step does enough work per call.
    """
    kind = "cuda" if device.type == "cuda" else "cpu"
    budget = block_elems if block_elems is not None else _BLOCK_ELEMS[kind]
    if budget < 1:
        raise ValueError(f"block_elems must be >= 1, got {budget}")
    width = batch * d * n
    block = max(1, budget // width)
    if chunk is None:
        chunk = min(block, length) if width >= _WIDE[kind] else max(1, min(block, _CHUNK[kind]))
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    padded = -(-length // chunk) * chunk
    block = max(chunk, block // chunk * chunk)
    return chunk, min(block, padded)


def selective_scan_torch(
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
    chunk: int | None = None,
    block_elems: int | None = None,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Chunked pure-PyTorch scan (fp32 inside), differentiable in every input.

    ``chunk`` (steps per chunk) and ``block_elems`` (batch*d*n*positions per block) only
    trade speed for memory; results do not depend on them beyond float rounding.
    """
    _check_shapes(u, delta, A, B, C, D, z, delta_bias)
    dtype_in = u.dtype
    b, d, length = u.shape
    n = A.shape[1]
    dt = delta.float()
    if delta_bias is not None:
        dt = dt + delta_bias.float()[None, :, None]
    if delta_softplus:
        dt = F.softplus(dt)
    T, block = _torch_layout(b, d, n, length, u.device, chunk, block_elems)
    pad = -length % T
    # Position-major (L, b, k) copies: the scan reads each position's slice contiguously.
    # dt = 0 on padding: decay 1 and no input, so the state passes through unchanged.
    dtL, uL, BL, CL = (
        F.pad(x.float(), (0, pad)).permute(2, 0, 1).contiguous() for x in (dt, u, B, C)
    )
    yL, last = _ChunkedScan.apply(dtL, uL, A.float(), BL, CL, T, block)
    y = yL.permute(1, 2, 0)[..., :length]
    if D is not None:
        y = y + u.float() * D.float()[None, :, None]
    if z is not None:
        y = y * F.silu(z.float())
    y = y.to(dtype_in)
    return (y, last) if return_last_state else y


def selective_scan(
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
    backend: str = "auto",
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Run the selective scan on the chosen backend (``auto``, ``cuda``, ``cpu_fused``, ``torch``
    or ``ref``).

    ``auto`` picks ``cuda`` (mamba-ssm's kernel) for CUDA tensors when mamba-ssm imports,
    ``cpu_fused`` for CPU tensors when its kernel loads, else ``torch``. With
    ``return_last_state`` it returns ``(out, h_last)``, h_last (batch, d, n) in fp32, as
    mamba-ssm does (the state is not differentiable).
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown scan backend {backend!r}; choose one of {BACKENDS}")
    _check_shapes(u, delta, A, B, C, D, z, delta_bias)
    backend = resolve_backend(backend, u, A.shape[1])
    if backend == "cpu_fused":
        _check_cpu_fused(u)
        from dnadiff.models.kernels.cpu_fused import selective_scan_cpu_fused

        return selective_scan_cpu_fused(u, delta, A, B, C, D, z, delta_bias, delta_softplus,
                                        return_last_state)
    if backend == "cuda":
        why = _cuda_unavailable_reason(u)
        if why:
            raise ScanBackendError(f"scan backend 'cuda' is unavailable: {why}")
        fn = _mamba_ssm_import()[0].selective_scan_fn
        return fn(  # type: ignore[misc]
            u.contiguous(), delta.contiguous(), A.contiguous(), B.contiguous(), C.contiguous(),
            None if D is None else D.float().contiguous(),
            None if z is None else z.contiguous(),
            None if delta_bias is None else delta_bias.float().contiguous(),
            delta_softplus, return_last_state,
        )
    if backend == "ref":
        return selective_scan_ref(u, delta, A, B, C, D, z, delta_bias, delta_softplus,
                                  return_last_state)
    return selective_scan_torch(u, delta, A, B, C, D, z, delta_bias, delta_softplus,
                                return_last_state)


def causal_conv1d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    activation: str | None = None,
) -> torch.Tensor:
    """Depthwise causal conv over the length axis: x (b, d, l), weight (d, width) -> (b, d, l).

    Uses causal-conv1d's fused kernel for CUDA tensors when the package imports, else
    ``F.conv1d`` with left padding. ``activation`` is None or ``"silu"``.
    """
    if activation not in (None, "silu", "swish"):
        raise ValueError(f"activation must be None or 'silu', got {activation!r}")
    if x.dim() != 3 or weight.dim() != 2 or weight.shape[0] != x.shape[1]:
        raise ValueError(
            f"need x (b, d, l) and weight (d, width) with the same d, got x {tuple(x.shape)} "
            f"and weight {tuple(weight.shape)}"
        )
    fn = _causal_conv1d_import() if x.is_cuda else None
    if fn is not None:
        return fn(x, weight, bias, activation)  # type: ignore[operator]
    width = weight.shape[1]
    out = F.conv1d(F.pad(x, (width - 1, 0)), weight.unsqueeze(1), bias, groups=x.shape[1])
    return F.silu(out) if activation is not None else out
