"""Selective-scan backends against the sequential reference: outputs and every gradient.

Tolerance (fp32): rtol 1e-4, atol 1e-5 on values scaled to O(1); the fast backends only
reorder float sums, so differences are at the 1e-6 level.
"""

from __future__ import annotations

import pytest
import torch

from dnadiff.models.kernels.scan import (
    ScanBackendError,
    available_backends,
    causal_conv1d,
    selective_scan,
    selective_scan_ref,
    selective_scan_torch,
)

RTOL, ATOL = 1e-4, 1e-5
NAMES = ["u", "delta", "A", "B", "C", "D", "z", "delta_bias"]
HAS_CUDA_SCAN = "cuda" in available_backends()
HAS_CPU_FUSED = "cpu_fused" in available_backends()
CPU_BACKENDS = ["torch", pytest.param("cpu_fused", marks=pytest.mark.skipif(
    not HAS_CPU_FUSED, reason="the cpu_fused kernels cannot be built here (see dnadiff.models.kernels.build)"))]


def make_inputs(b: int, d: int, n: int, length: int, device: str = "cpu", decay: float = 1.0,
                with_d: bool = True, with_z: bool = True, with_bias: bool = True, seed: int | None = None) -> dict:
    """Random scan inputs (leaf tensors requiring grad); ``decay`` scales -A; ``seed`` null = 1234 + length."""
    g = torch.Generator().manual_seed(1234 + length if seed is None else seed)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    xs = {
        "u": r(b, d, length), "delta": 0.5 * r(b, d, length),
        "A": -decay * (0.1 + 2 * torch.rand(d, n, generator=g)),
        "B": r(b, n, length), "C": r(b, n, length),
        "D": r(d) if with_d else None, "z": r(b, d, length) if with_z else None,
        "delta_bias": 0.3 * r(d) if with_bias else None,
    }
    return {k: (v.to(device).requires_grad_() if v is not None else None) for k, v in xs.items()}


def outputs_and_grads(fn, xs: dict, seed: int = 7, **kw) -> tuple[torch.Tensor, dict]:
    """fn(**xs) and the gradient of <out, w> (w fixed random) w.r.t. every given input."""
    out = fn(**xs, **kw)
    w = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed)).to(out.device)
    given = {k: v for k, v in xs.items() if v is not None}
    grads = torch.autograd.grad((out * w).sum(), list(given.values()))
    return out, dict(zip(given, grads))


def assert_close_scaled(a: torch.Tensor, b: torch.Tensor, what: str, rtol: float = RTOL, atol: float = ATOL) -> None:
    """Compare after scaling by b's largest magnitude (gradients of A sum over many terms)."""
    scale = b.abs().max().clamp_min(1.0)
    torch.testing.assert_close(a / scale, b / scale, rtol=rtol, atol=atol, msg=lambda m: f"{what}: {m}")


def check_against_ref(xs: dict, softplus: bool, **kw) -> None:
    ref_out, ref_g = outputs_and_grads(selective_scan_ref, xs, delta_softplus=softplus)
    out, g = outputs_and_grads(selective_scan, xs, delta_softplus=softplus, **kw)
    assert out.shape == ref_out.shape and out.dtype == ref_out.dtype
    assert_close_scaled(out, ref_out, "output")
    assert set(g) == set(ref_g)
    for name in ref_g:
        assert_close_scaled(g[name], ref_g[name], f"grad of {name}")


@pytest.mark.parametrize(
    "b,d,n,length,softplus,opts",
    [
        (2, 3, 4, 37, True, {}),
        (1, 5, 16, 100, False, {}),
        (3, 4, 2, 1, True, {}),
        (2, 6, 3, 65, True, {"with_d": False, "with_z": False, "with_bias": False}),
        (1, 4, 5, 50, False, {"with_z": False}),
        (2, 20, 16, 70, True, {}),
    ],
)
@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_cpu_backends_match_ref(backend, b, d, n, length, softplus, opts) -> None:
    check_against_ref(make_inputs(b, d, n, length, **opts), softplus, backend=backend)


@pytest.mark.parametrize(
    "chunk,block_elems",
    [(1, None), (5, 2 * 3 * 4 * 15), (8, 2 * 3 * 4 * 8), (40, 2 * 3 * 4 * 40), (16, 10**6)],
)
def test_torch_layouts_match_ref(chunk, block_elems) -> None:
    """Chunk/block sizes that do and do not divide L, one chunk per block and many."""
    xs = make_inputs(2, 3, 4, 37)
    ref_out, ref_g = outputs_and_grads(selective_scan_ref, xs, delta_softplus=True)
    out, g = outputs_and_grads(selective_scan_torch, xs, delta_softplus=True, chunk=chunk,
                               block_elems=block_elems)
    assert_close_scaled(out, ref_out, "output")
    for name in ref_g:
        assert_close_scaled(g[name], ref_g[name], f"grad of {name}")


def test_long_sequence_strong_decay_is_stable() -> None:
    """delta*A sums to about -1e4 over the sequence: no overflow, no NaN, same as ref."""
    xs = make_inputs(1, 3, 4, 3000, decay=5.0)
    with torch.no_grad():
        dt = torch.nn.functional.softplus(xs["delta"] + xs["delta_bias"][None, :, None])
        total = (dt.sum(-1)[..., None] * xs["A"]).min().item()
    assert total < -1e4
    out, g = outputs_and_grads(selective_scan_torch, xs, delta_softplus=True, chunk=64)
    ref_out, ref_g = outputs_and_grads(selective_scan_ref, xs, delta_softplus=True)
    assert torch.isfinite(out).all() and all(torch.isfinite(v).all() for v in g.values())
    assert_close_scaled(out, ref_out, "output")
    for name in ref_g:
        assert_close_scaled(g[name], ref_g[name], f"grad of {name}")


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_return_last_state_matches_ref(backend) -> None:
    xs = make_inputs(2, 3, 4, 29)
    with torch.no_grad():
        out, last = selective_scan(**xs, delta_softplus=True, return_last_state=True, backend=backend)
        ref_out, ref_last = selective_scan_ref(**xs, delta_softplus=True, return_last_state=True)
    assert last.shape == (2, 3, 4)
    torch.testing.assert_close(last, ref_last, rtol=RTOL, atol=ATOL)
    torch.testing.assert_close(out, ref_out, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_bf16_inputs_keep_dtype(backend) -> None:
    xs = make_inputs(1, 2, 3, 10)
    xs = {k: (v.detach().bfloat16() if k in ("u", "delta", "z") else v) for k, v in xs.items()}
    out = selective_scan(**xs, delta_softplus=True, backend=backend)
    ref = selective_scan_ref(**xs, delta_softplus=True)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), ref.float(), rtol=1e-2, atol=1e-2)


def test_unavailable_cuda_backend_raises_clear_error() -> None:
    xs = make_inputs(1, 2, 3, 5)
    if HAS_CUDA_SCAN:
        match = "needs CUDA tensors"  # mamba-ssm is there, but these tensors are on the CPU
    else:
        match = r"pip install dnadiff\[cuda\]"
    with pytest.raises(ScanBackendError, match=match):
        selective_scan(**xs, backend="cuda")
    assert issubclass(ScanBackendError, RuntimeError)


def test_auto_on_cpu_and_bad_inputs_are_named(monkeypatch) -> None:
    """auto on CPU is cpu_fused where its kernels build (bitwise the same call), else torch."""
    monkeypatch.delenv("DNADIFF_SCAN_BACKEND", raising=False)
    xs = make_inputs(1, 2, 3, 5)
    with torch.no_grad():
        expected = "cpu_fused" if HAS_CPU_FUSED else "torch"
        assert torch.equal(selective_scan(**xs), selective_scan(**xs, backend=expected))
    with pytest.raises(ValueError, match="'cudnn'"):
        selective_scan(**xs, backend="cudnn")
    bad = dict(xs, B=xs["B"][:, :, :4])
    with pytest.raises(ValueError, match="B must have shape"):
        selective_scan(**bad)
    with pytest.raises(ValueError, match=r"non-empty, got shape \(1, 2, 0\)"):
        selective_scan_torch(**make_inputs(1, 2, 3, 0))
    with pytest.raises(ValueError, match="chunk must be >= 1, got 0"):
        selective_scan_torch(**xs, chunk=0)
    assert available_backends()[-2:] == ["torch", "ref"]


NEEDS_CUDA_SCAN = pytest.mark.skipif(not HAS_CUDA_SCAN, reason="needs a CUDA GPU and mamba-ssm (pip install dnadiff[cuda])")
NEEDS_GPU = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.parametrize(
    "backend,softplus,length",
    [
        pytest.param("cuda", True, 37, marks=NEEDS_CUDA_SCAN),
        pytest.param("cuda", False, 300, marks=NEEDS_CUDA_SCAN),
        pytest.param("cuda", True, 2048, marks=NEEDS_CUDA_SCAN),
        pytest.param("torch", True, 300, marks=NEEDS_GPU),
    ],
)
def test_gpu_backends_match_ref(backend, softplus, length) -> None:
    xs = make_inputs(2, 8, 16, length, device="cuda")
    ref_xs = {k: (v.detach().cpu().requires_grad_() if v is not None else None) for k, v in xs.items()}
    ref_out, ref_g = outputs_and_grads(selective_scan_ref, ref_xs, delta_softplus=softplus)
    out, g = outputs_and_grads(selective_scan, xs, delta_softplus=softplus, backend=backend)
    assert_close_scaled(out.cpu(), ref_out, "output")
    for name in ref_g:
        assert_close_scaled(g[name].cpu(), ref_g[name], f"grad of {name}")


def test_causal_conv1d_is_causal_and_matches_manual() -> None:
    x = torch.randn(2, 3, 10)
    w, bias = torch.randn(3, 4), torch.randn(3)
    out = causal_conv1d(x, w, bias, activation="silu")
    manual = torch.zeros(2, 3, 10)
    for t in range(10):
        for k in range(4):  # weight[:, -1] multiplies the current position
            if t - (3 - k) >= 0:
                manual[:, :, t] += w[:, k] * x[:, :, t - (3 - k)]
    torch.testing.assert_close(out, torch.nn.functional.silu(manual + bias[:, None]))
    with pytest.raises(ValueError, match="'relu'"):
        causal_conv1d(x, w, activation="relu")


def test_torch_backend_saves_nothing_of_size_length_times_state() -> None:
    """Memory bound: autograd keeps inputs and block-start states, never a (b, d, L, n) tensor."""
    b, d, n, length = 1, 4, 16, 2048
    xs = make_inputs(b, d, n, length)

    def largest_saved(fn, **kw) -> tuple[int, torch.Tensor]:
        sizes: list[int] = []

        def pack(t: torch.Tensor) -> torch.Tensor:
            sizes.append(t.numel())
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            out = fn(**xs, delta_softplus=True, **kw)
        return max(sizes), out

    torch_max, out = largest_saved(selective_scan_torch, block_elems=b * d * n * 256)
    ref_max, _ = largest_saved(selective_scan_ref)
    assert ref_max >= b * d * n * length  # the check can fail: the reference keeps such a tensor
    # the largest saved tensors are inputs such as B (b, n, L); block-start states are smaller
    assert torch_max <= b * max(d, n) * length < b * d * n * length
    out.sum().backward()
    assert all(torch.isfinite(v.grad).all() for v in xs.values() if v is not None)
