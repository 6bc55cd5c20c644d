"""The ``cpu_fused`` backend (dnadiff.models.kernels): the fused C++ scan and mixer against the
sequential ``ref`` scan, outputs and the gradient of every input and parameter.

Tolerance (fp32): rtol 1e-5, atol 1e-6 after scaling both sides by the reference's largest
magnitude (at least 1); the kernel reorders float sums and evaluates exp, softplus and sigmoid
with its own polynomials (within 4 ulp: test_softplus_of_delta_and_silu_gate_are_accurate), so
differences are at the 1e-7 level.

Also: the layouts the kernel reads (position-contiguous, channels-last, arbitrary strides), the
backward segment length, multi-threading, ``auto`` and ``DNADIFF_SCAN_BACKEND``, the fallback
to ``torch`` when the kernels cannot be built, a forked data-loader worker, DDP (gloo, two
processes), the whole Caduceus-PS LM on real hg38 windows, and that the inference paths
(evaluation forward, both ancestral samplers incl. the cached one's per-row calls, the
fine-tuning classifier, the sample-metrics oracle) run on it.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from pyfaidx import Fasta

import dnadiff.models.kernels.cpu_fused as cpu_fused
from dnadiff import Tokenizer
from dnadiff.models import BiMamba, Mamba, build_model
from dnadiff.models.kernels.scan import (
    BACKEND_ENV,
    ScanBackendError,
    available_backends,
    resolve_backend,
    selective_scan,
    selective_scan_ref,
)
from tests.models import test_scan as scan_tests
from tests.models.test_cpu_fused_fallback import _run_fallback
from tests.models.test_scan import outputs_and_grads

RTOL, ATOL = 1e-5, 1e-6
REPO = Path(__file__).resolve().parents[2]
WHY = cpu_fused.cpu_fused_unavailable_reason()
pytestmark = pytest.mark.skipif(bool(WHY), reason=f"cpu_fused kernels unavailable here: {WHY}")


def make_inputs(b: int, d: int, n: int, length: int, decay: float = 1.0, with_d: bool = True,
                with_z: bool = True, with_bias: bool = True, seed: int = 0) -> dict:
    """test_scan's random scan inputs, seeded by the shape so that every case differs."""
    return scan_tests.make_inputs(b, d, n, length, decay=decay, with_d=with_d, with_z=with_z, with_bias=with_bias,
                                  seed=1000 + 7 * length + 13 * d + n + seed)


def assert_close_scaled(a: torch.Tensor, b: torch.Tensor, what: str) -> None:
    """test_scan's scaled comparison at this module's tighter tolerances."""
    scan_tests.assert_close_scaled(a, b, what, rtol=RTOL, atol=ATOL)


def check_scan(xs: dict, softplus: bool, **kw) -> None:
    ref_out, ref_g = outputs_and_grads(selective_scan_ref, xs, delta_softplus=softplus)
    out, g = outputs_and_grads(selective_scan, xs, delta_softplus=softplus, backend="cpu_fused", **kw)
    assert out.shape == ref_out.shape and out.dtype == ref_out.dtype
    assert_close_scaled(out, ref_out, "output")
    assert set(g) == set(ref_g)
    for name in ref_g:
        assert_close_scaled(g[name], ref_g[name], f"grad of {name}")


# Shapes: d below, at and above a SIMD block (8 or 16 channels) and partial blocks; L = 1, below,
# at and across the 16-position tiles and 32-position backward segments, not powers of two;
# d_state 1..64 (16 has its own unrolled code path).
SHAPES = [
    (1, 1, 1, 1, True, {}),
    (3, 4, 2, 1, True, {}),
    (2, 3, 4, 37, True, {}),
    (1, 5, 16, 100, False, {}),
    (2, 16, 16, 16, True, {}),
    (2, 17, 3, 33, True, {"with_z": False}),
    (1, 24, 8, 257, True, {}),
    (2, 33, 16, 65, False, {"with_bias": False}),
    (1, 40, 32, 50, True, {"with_d": False}),
    (2, 6, 3, 65, True, {"with_d": False, "with_z": False, "with_bias": False}),
    (1, 20, 64, 47, True, {}),
    (2, 64, 16, 130, True, {}),
]


@pytest.mark.parametrize("b,d,n,length,softplus,opts", SHAPES)
def test_scan_matches_ref(b, d, n, length, softplus, opts) -> None:
    check_scan(make_inputs(b, d, n, length, **opts), softplus)


def test_last_state_matches_ref() -> None:
    for b, d, n, length in [(2, 3, 4, 29), (1, 17, 16, 64), (2, 20, 7, 1)]:
        xs = make_inputs(b, d, n, length)
        with torch.no_grad():
            out, last = selective_scan(**xs, delta_softplus=True, return_last_state=True, backend="cpu_fused")
            ref_out, ref_last = selective_scan_ref(**xs, delta_softplus=True, return_last_state=True)
        assert last.shape == (b, d, n) and last.dtype == torch.float32
        assert_close_scaled(last, ref_last, "last state")
        assert_close_scaled(out, ref_out, "output")
    # with gradients enabled too (the autograd path returns the state, not differentiable)
    xs = make_inputs(1, 17, 16, 40)
    out, last = selective_scan(**xs, delta_softplus=True, return_last_state=True, backend="cpu_fused")
    assert out.requires_grad and not last.requires_grad


@pytest.mark.parametrize("segment", [1, 5, 16, 48, 1000])
def test_backward_segment_length_changes_nothing(segment) -> None:
    xs = make_inputs(2, 20, 6, 101)
    ref_out, ref_g = outputs_and_grads(selective_scan_ref, xs, delta_softplus=True)
    out, g = outputs_and_grads(cpu_fused.selective_scan_cpu_fused, xs, delta_softplus=True, segment=segment)
    assert_close_scaled(out, ref_out, "output")
    for name in ref_g:
        assert_close_scaled(g[name], ref_g[name], f"grad of {name}")


def test_layouts_channels_last_and_odd_strides() -> None:
    """The kernel reads (b, d, L) views of channels-last memory and arbitrary strides in place."""
    base = make_inputs(2, 24, 5, 41)
    ref_out, ref_g = outputs_and_grads(selective_scan_ref, base, delta_softplus=True)
    for layout in ("channels_last", "strided"):
        xs = {}
        for k, v in base.items():
            if v is None or v.dim() != 3:
                xs[k] = v
            elif layout == "channels_last":  # (b, L, k) memory viewed as (b, k, L)
                xs[k] = v.detach().transpose(1, 2).contiguous().transpose(1, 2).requires_grad_()
            else:  # every other element of a larger buffer
                big = torch.zeros(v.shape[0], v.shape[1], 2 * v.shape[2])
                big[..., ::2] = v.detach()
                xs[k] = big[..., ::2].requires_grad_()
        out, g = outputs_and_grads(selective_scan, xs, delta_softplus=True, backend="cpu_fused")
        assert_close_scaled(out, ref_out, f"{layout} output")
        for name in ref_g:
            assert_close_scaled(g[name], ref_g[name], f"{layout} grad of {name}")


def test_long_sequence_strong_decay_is_stable() -> None:
    """delta*A sums to about -1e4 over the sequence: no overflow, no NaN, same as ref."""
    xs = make_inputs(1, 3, 4, 3000, decay=5.0)
    with torch.no_grad():
        dt = F.softplus(xs["delta"] + xs["delta_bias"][None, :, None])
        assert (dt.sum(-1)[..., None] * xs["A"]).min().item() < -1e4
    check_scan(xs, softplus=True)


@pytest.mark.parametrize("n", [16, 5])
def test_spans_with_decays_below_the_clamp_match_ref(n) -> None:
    """With softplus and A <= 0 the kernel skips the decay clamp for runs of positions whose
    exponents delta A log2(e) all lie in [-125, 0], and clamps the others: a few huge deltas
    (exponents near -450) among ordinary ones put both kinds of run in one sequence and one block
    of channels, forward and backward; both must agree with ref."""
    xs = make_inputs(2, 19, n, 100)
    with torch.no_grad():
        for b, c, t in ((0, 3, 37), (1, 12, 70), (1, 12, 71), (0, 18, 99)):
            xs["delta"][b, c, t] = 150.0
        dt = F.softplus(xs["delta"] + xs["delta_bias"][None, :, None])
        x = dt[..., None] * xs["A"][None, :, None, :] * math.log2(math.e)  # (b, d, L, n)
        assert x.min().item() < -400 and (x < -125).sum().item() <= 4 * n  # only at the huge deltas
    check_scan(xs, softplus=True)


def test_one_step_decays_over_the_whole_exponent_range() -> None:
    """Two steps: the first sets h_1 = 1 (delta = u = B = 1 from h_0 = 0, exp(-1) * 0 + 1), the
    second (u = 0) gives y_2 = exp(delta A) h_1: the decay alone; delta A from -200 (exp underflows: 2^-125 at most, i.e. 0 to fp32 precision) to
    0. Where exp(delta A) is a normal float its relative error is within 4 ulp plus |delta A| 2^-23:
    the exponent is delta * (A log2 e), and rounding A log2 e and the product moves it by
    |delta A| 2^-24 each (as rounding delta * A alone does for any exp of it). NaN is kept."""
    n = 16
    x = -torch.logspace(-6, math.log10(200.0), 512, dtype=torch.float64).float()  # delta A values
    d = x.numel()
    A = -torch.ones(d, n)
    delta = torch.stack([torch.ones(d), -x], dim=-1)[None]  # step 2 decays by exp(x)
    delta[0, -1, 1] = float("nan")
    u = torch.stack([torch.ones(d), torch.zeros(d)], dim=-1)[None]
    B = torch.ones(1, n, 2)
    C = torch.stack([torch.zeros(n), torch.ones(n) / n], dim=-1)[None]
    with torch.no_grad():
        out = selective_scan(u, delta, A, B, C, backend="cpu_fused")[0, :, 1].double()
    want = torch.exp(x.double())
    assert torch.isnan(out[-1])
    normal = want[:-1] > 2.0 ** -125
    rel = ((out[:-1] - want[:-1]).abs() / want[:-1])[normal]
    assert (rel <= 4 * 2.0 ** -23 + x[:-1][normal].abs().double() * 2.0 ** -23).all()
    assert (out[:-1][~normal] <= 2.0 ** -125).all() and (out[:-1] >= 0).all()


def _one_step(delta: torch.Tensor, z: torch.Tensor | None, softplus: bool) -> torch.Tensor:
    """y of one step from h_0 = 0 with u = B = C = 1 and no D: softplus(delta) (or delta), times
    silu(z) when z is given; one channel per input value."""
    d, n = delta.numel(), 4
    ones = torch.ones(1, d, 1)
    with torch.no_grad():
        out = selective_scan(ones, delta.view(1, d, 1), -torch.ones(d, n), torch.ones(1, n, 1),
                             torch.ones(1, n, 1) / n, z=None if z is None else z.view(1, d, 1),
                             delta_softplus=softplus, backend="cpu_fused")
    return out.view(d).double()


def _assert_within_ulps(out: torch.Tensor, want: torch.Tensor, ulps: float, what: str) -> None:
    rel = (out - want).abs() / want.abs()
    worst = rel.argmax()
    assert rel.max().item() <= ulps * 2.0 ** -23, (
        f"{what}: relative error {rel.max().item():.3g} at input #{worst.item()} (want {want[worst].item():.9g}, "
        f"got {out[worst].item():.9g})")


def test_softplus_of_delta_and_silu_gate_are_accurate() -> None:
    """The kernel's softplus of delta and SiLU of the gate against float64, one step at a time:
    within 4 ulp (relative 4 * 2^-23) wherever the result is a normal float, from -87 to 90; at
    softplus's threshold 20 and either side of it the result is x itself, as torch's; NaN stays
    NaN; below -87.3 (exp's clamp) softplus gives at most 2^-125 and SiLU at most |z| 2^-125."""
    x = torch.cat([torch.linspace(-87.0, 90.0, 200_001), torch.tensor([20.0, 19.999998, 20.000002, 16.0, -0.0, 0.0])])
    want = F.softplus(x.double())
    _assert_within_ulps(_one_step(x, None, True), want, 4, "softplus")
    z = torch.cat([torch.linspace(-87.0, 88.0, 200_001), torch.tensor([-0.0, 0.0, 1e-30, -1e-30])])
    nonzero = z != 0
    out, want = _one_step(torch.ones_like(z), z, False), F.silu(z.double())
    _assert_within_ulps(out[nonzero], want[nonzero], 4, "silu")
    assert (out[~nonzero] == 0).all()
    far = torch.tensor([-88.0, -100.0, -1e4, float("-inf")])
    assert (_one_step(far, None, True) <= 2.0 ** -125).all() and (_one_step(far, None, True) >= 0).all()
    assert (_one_step(torch.ones(3), far[:3], False).abs() <= far[:3].abs().double() * 2.0 ** -125).all()
    assert _one_step(torch.tensor([float("nan"), 1.0]), None, True)[0].isnan()
    assert _one_step(torch.ones(2), torch.tensor([float("nan"), 1.0]), False)[0].isnan()


def test_rms_norm_inference_pass_matches_torch(monkeypatch) -> None:
    """RMSNorm's fused CPU pass (backend cpu_fused, no gradient needed) equals F.rms_norm to float
    rounding for rows of any width (a multiple of the vector width or not, one channel); it is
    taken only where no gradient is needed and the backend is cpu_fused (not torch or ref)."""
    from dnadiff.models import mamba

    calls = []
    fused = mamba.rms_norm_cpu_fused
    monkeypatch.setattr(mamba, "rms_norm_cpu_fused", lambda *a: calls.append(1) or fused(*a))
    gen = torch.Generator().manual_seed(5)
    for shape in [(4, 33, 64), (3, 5, 13), (7, 1), (2, 9, 24)]:
        x = torch.randn(*shape, generator=gen) * 3
        norm = mamba.RMSNorm(shape[-1], scan_backend="cpu_fused")
        with torch.no_grad():
            norm.weight.normal_(generator=gen)
            want = F.rms_norm(x, (shape[-1],), norm.weight, norm.eps)
            got = norm(x)
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)
        assert len(calls) == 1
        calls.clear()
        out = norm(x.requires_grad_())  # autograd: torch's norm, differentiable
        assert out.grad_fn is not None and not calls
        torch.testing.assert_close(out.detach(), want, rtol=1e-6, atol=1e-6)
        for backend in ("torch", "ref"):
            norm.scan_backend = backend
            with torch.no_grad():
                norm(x)
            assert not calls


def test_output_gradient_is_read_in_its_own_layout() -> None:
    """(batch, d, L) and channels-last gradients are passed to the kernel as they are (no copy);
    a broadcast (stride 0) one is made contiguous."""
    g = torch.ones(2, 8, 5)
    for view in (g.transpose(1, 2), g):
        assert cpu_fused._unit_last(view).data_ptr() == view.data_ptr()
        assert cpu_fused._unit_last(view) is view
    expanded = torch.ones(1, 1, 1).expand(2, 5, 8)
    assert cpu_fused._unit_last(expanded).is_contiguous()


def test_bf16_inputs_keep_dtype() -> None:
    xs = make_inputs(1, 20, 3, 30)
    xs = {k: (v.detach().bfloat16() if k in ("u", "delta", "z") else v) for k, v in xs.items()}
    out = selective_scan(**xs, delta_softplus=True, backend="cpu_fused")
    ref = selective_scan_ref(**xs, delta_softplus=True)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), ref.float(), rtol=1e-2, atol=1e-2)


def test_two_threads_match_one_thread() -> None:
    """Forward tasks do not depend on the thread count (bitwise); backward sums in another order."""
    xs = make_inputs(3, 40, 16, 70)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one, g1 = outputs_and_grads(selective_scan, xs, delta_softplus=True, backend="cpu_fused")
        torch.set_num_threads(2)
        two, g2 = outputs_and_grads(selective_scan, xs, delta_softplus=True, backend="cpu_fused")
    finally:
        torch.set_num_threads(before)
    assert torch.equal(one, two)
    for name in g1:
        assert_close_scaled(g2[name], g1[name], f"grad of {name}")


@pytest.mark.parametrize("rank,n", [(1, 16), (3, 5), (16, 16)])
def test_delta_formed_from_its_low_rank_input_matches_the_given_delta(rank, n) -> None:
    """scan_fwd/scan_bwd with delta_proj (dt_proj fused in) equal the same scan given
    delta = dt_low @ delta_proj^T: outputs, the checkpointed states and every gradient. Two groups,
    one of them reversed, a partial channel block, and dt_low a strided slice (as in the mixer)."""
    G, b, length, d = 2, 2, 45, 21
    g = torch.Generator().manual_seed(rank)
    rnd = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    u, z = rnd(G, b, length, d), rnd(G, b, length, d)
    wide = rnd(G, b, length, rank + 3)  # dt_low is its first `rank` columns: unit stride, row stride rank + 3
    dt_low, proj = wide[..., :rank], rnd(G, d, rank) * rank**-0.5
    delta = torch.einsum("gblr,gdr->gbld", dt_low, proj).contiguous()
    A, B, C = -torch.rand(G, d, n, generator=g) - 0.2, rnd(G, b, length, n), rnd(G, b, length, n)
    D, bias = rnd(G, d), rnd(G, d) * 0.3 - 1.0
    ops, segment, gout = cpu_fused._ops(), 16, rnd(G, b, length, d)
    given = ops.scan_fwd(u, delta, A, B, C, D, z, bias, True, 2, False, True, segment)
    formed = ops.scan_fwd(u, dt_low, A, B, C, D, z, bias, True, 2, False, True, segment, proj)
    assert_close_scaled(formed[0], given[0], "output")
    assert_close_scaled(formed[1], given[1], "last state")
    assert_close_scaled(formed[2][:, :, 1:], given[2][:, :, 1:], "segment states")  # segment 0 starts at 0, unstored
    bwd = lambda dl, ckpt, **kw: ops.scan_bwd(u, dl, A, B, C, D, z, bias, True, 2, ckpt, segment, gout,  # noqa: E731
                                              torch.empty_like(z), **kw)
    grads_given, grads_formed = bwd(delta, given[2]), bwd(dt_low, formed[2], delta_proj=proj)
    for what, a, e in zip(("u", "delta", "A", "B", "C", "D", "bias"), grads_formed, grads_given):
        assert a.shape == e.shape
        assert_close_scaled(a, e, f"grad of {what}")
    with pytest.raises(RuntimeError, match="low-rank input"):
        ops.scan_fwd(u, delta, A, B, C, D, z, bias, True, 2, False, False, segment, proj)


# ---------------------------------------------------------------- mixers (conv + projections + scan)
def _randomize(module: torch.nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)


def _module_grads(module: torch.nn.Module, h: torch.Tensor, backend: str) -> tuple[torch.Tensor, dict]:
    for m in module.modules():
        if hasattr(m, "scan_backend"):
            m.scan_backend = backend
    out = module(h)
    w = torch.randn(out.shape, generator=torch.Generator().manual_seed(5))
    named = dict(module.named_parameters())
    grads = torch.autograd.grad((out * w).sum(), [h, *named.values()])
    return out, dict(zip(["input", *named], grads))


SSM = dict(d_inner=40, d_state=8, d_conv=4, dt_rank=2)


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: Mamba(16, **SSM), id="mamba"),
        pytest.param(lambda: Mamba(16, bias=True, **{**SSM, "d_conv": 3}), id="mamba-bias-conv3"),
        pytest.param(lambda: BiMamba(16, **SSM), id="bimamba-tied"),
        pytest.param(lambda: BiMamba(16, bias=True, **{**SSM, "d_state": 16}), id="bimamba-tied-bias-n16"),
        pytest.param(lambda: BiMamba(16, weight_tie=False, bias=True, **SSM), id="bimamba-untied-bias"),
        pytest.param(lambda: BiMamba(16, **{**SSM, "conv_bias": False, "d_conv": 2}), id="bimamba-noconvbias"),
    ],
)
def test_fused_mixer_matches_ref(make) -> None:
    """The fused CPU mixer (one node for conv, x_proj, dt_proj, scan, gate; both directions of a
    BiMamba in one call, the reverse one walking backwards) equals the plain modules on ref."""
    module = make()
    _randomize(module, seed=11)
    h = torch.randn(3, 37, 16, requires_grad=True)
    ref, ref_g = _module_grads(module, h, "ref")
    calls = []
    real = cpu_fused.fused_mixer_cpu
    cpu_fused.fused_mixer_cpu = lambda xz, *a: calls.append(xz.shape) or real(xz, *a)
    try:
        out, g = _module_grads(module, h, "cpu_fused")
    finally:
        cpu_fused.fused_mixer_cpu = real
    assert len(calls) == 1, "both directions should go through one fused call"
    assert_close_scaled(out, ref, "output")
    assert set(g) == set(ref_g)
    for name in ref_g:
        assert_close_scaled(g[name], ref_g[name], f"grad of {name}")


@pytest.mark.parametrize("length", [1, 2, 3, 5, 6])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["mamba", "bimamba"])
def test_fused_mixer_on_sequences_shorter_than_a_position_group_matches_ref(length, bidirectional) -> None:
    """Lengths below and around the conv width (4) and the kernels' groups of 4 positions: the
    window's zero history, the partial last group and the backward's flush of pending dL/dx."""
    module = BiMamba(16, **SSM) if bidirectional else Mamba(16, bias=True, **SSM)
    _randomize(module, seed=12)
    h = torch.randn(2, length, 16, generator=torch.Generator().manual_seed(length), requires_grad=True)
    ref, ref_g = _module_grads(module, h, "ref")
    out, g = _module_grads(module, h, "cpu_fused")
    assert_close_scaled(out, ref, "output")
    for name in ref_g:
        assert_close_scaled(g[name], ref_g[name], f"grad of {name}")


def test_fused_mixer_under_bf16_autocast_runs_fp32_inside() -> None:
    """CPU autocast (bf16 matmuls around the mixer) leaves the fused node in fp32: it runs, its
    output is bf16 like the projections around it, and the gradients are finite."""
    module = BiMamba(16, **SSM)
    h = torch.randn(2, 21, 16, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        for m in module.modules():
            if hasattr(m, "scan_backend"):
                m.scan_backend = "cpu_fused"
        out = module(h)
    assert out.dtype == torch.bfloat16
    out.float().square().sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in module.parameters())
    with torch.no_grad():
        for m in module.modules():
            if hasattr(m, "scan_backend"):
                m.scan_backend = "ref"
        ref = module(h)
    torch.testing.assert_close(out.float(), ref, rtol=5e-2, atol=5e-2)


@pytest.fixture(scope="module")
def hg38_ids(hg38_fasta: Path) -> torch.Tensor:
    chrom = Fasta(str(hg38_fasta))["chr2"]
    return Tokenizer().encode_batch([str(chrom[s : s + 150]) for s in (20_000, 777_777, 1_234_567)])


@pytest.mark.parametrize("swap", [False, True], ids=["plain", "rcps_swap_halves"])
def test_caduceus_ps_lm_on_hg38_matches_ref_and_stays_rc_equivariant(hg38_ids, tokenizer, swap) -> None:
    """The whole RC-equivariant LM (d_model 32, 2 layers) on real windows: logits and the gradient
    of every parameter equal the ref scan's, and logits(rc(x)) = flip(logits(x))[..., comp]; also
    with the halves-swapped RCPS wiring of the Hugging Face checkpoints (run in the stacked layout)."""
    model = build_model("caduceus_ps", d_model=32, n_layer=2, rcps_swap_halves=swap)
    _randomize(model, seed=2)
    results = {}
    for backend in ("ref", "cpu_fused"):
        model.scan_backend = backend
        logits = model(hg38_ids)
        loss = F.cross_entropy(logits.flatten(0, 1), hg38_ids.flatten())
        results[backend] = (logits.detach(), torch.autograd.grad(loss, list(model.parameters())))
    assert_close_scaled(results["cpu_fused"][0], results["ref"][0], "logits")
    for name, g, g_ref in zip(dict(model.named_parameters()), results["cpu_fused"][1], results["ref"][1]):
        assert_close_scaled(g, g_ref, f"grad of {name}")
    with torch.no_grad():
        rc_logits = model(tokenizer.reverse_complement(hg38_ids))
    expected = results["cpu_fused"][0].flip(1)[..., model.complement_map[: model.vocab_size]]
    torch.testing.assert_close(rc_logits, expected, rtol=1e-5, atol=1e-5)
    assert (rc_logits - results["cpu_fused"][0]).abs().max() > 1e-2  # not vacuous


# ---------------------------------------------------------------- backend selection and fallback
def test_auto_picks_cpu_fused_and_the_env_switch_forces_another(monkeypatch) -> None:
    x = torch.zeros(1, 2, 3)
    monkeypatch.delenv(BACKEND_ENV, raising=False)
    assert resolve_backend("auto", x) == "cpu_fused"
    assert "cpu_fused" in available_backends()
    assert resolve_backend("auto", x, d_state=300) == "torch"  # beyond the kernel's 256 states
    assert resolve_backend("ref", x) == "ref"
    monkeypatch.setenv(BACKEND_ENV, "torch")
    assert resolve_backend("auto", x) == "torch"
    assert resolve_backend("cpu_fused", x) == "cpu_fused"  # an explicit choice stays
    monkeypatch.setenv(BACKEND_ENV, "fastest")
    with pytest.raises(ValueError, match=f"{BACKEND_ENV}='fastest' is not a scan backend"):
        resolve_backend("auto", x)


def test_cpu_fused_refuses_non_cpu_tensors_in_one_line() -> None:
    xs = {k: (v.detach().to("meta") if v is not None else None) for k, v in make_inputs(1, 2, 3, 5).items()}
    with pytest.raises(ScanBackendError, match="needs CPU tensors, got tensors on meta"):
        selective_scan(**xs, backend="cpu_fused")


def test_build_is_cached_and_loads_in_a_fresh_process(tmp_path: Path) -> None:
    """First use compiles into the cache directory; a second process loads the same library."""
    first = _run_fallback(tmp_path)
    libs = sorted((tmp_path / "cache" / "kernels").glob("*.so"))
    assert first["backend"] == "cpu_fused" and first["same"] and not first["notes"] and len(libs) == 1
    stamp = libs[0].stat().st_mtime_ns
    second = _run_fallback(tmp_path)
    assert second["backend"] == "cpu_fused" and libs[0].stat().st_mtime_ns == stamp


# ---------------------------------------------------------------- forked workers, DDP
class _ModelOutputs(torch.utils.data.Dataset):
    """Each item runs the model (cpu_fused) inside the data-loader worker. Workers keep torch's
    one intra-op thread: GNU OpenMP cannot start a thread team in a forked child of a process
    that has used one (torch's own ops hang there too), and the kernels run on torch's runtime."""

    def __init__(self, model: torch.nn.Module, ids: torch.Tensor) -> None:
        self.model, self.ids = model, ids

    def __len__(self) -> int:
        return self.ids.shape[0]

    def __getitem__(self, i: int) -> tuple[str, torch.Tensor]:
        with torch.no_grad():
            return resolve_backend("auto", self.ids), self.model(self.ids[i : i + 1])[0]


def test_forked_dataloader_workers_run_the_kernel(monkeypatch, hg38_ids) -> None:
    monkeypatch.delenv(BACKEND_ENV, raising=False)  # auto, as in a user's run (the workers inherit it)
    model = build_model("caduceus_ps", d_model=32, n_layer=2).eval()
    with torch.no_grad():
        expected = model(hg38_ids)  # the parent has loaded the kernels before forking
    loader = torch.utils.data.DataLoader(_ModelOutputs(model, hg38_ids), batch_size=None, num_workers=2,
                                         multiprocessing_context="fork")
    got = list(loader)
    assert [b for b, _ in got] == ["cpu_fused"] * hg38_ids.shape[0]
    for i, (_, logits) in enumerate(got):
        torch.testing.assert_close(logits, expected[i], rtol=1e-5, atol=1e-6)


def _ddp_rank(rank: int, world: int, port: int, ids: torch.Tensor, out_dir: str) -> None:
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = build_model("caduceus_ps", d_model=16, n_layer=2, scan_backend="cpu_fused")
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    part = ids.chunk(world)[rank]
    logits = ddp(part)
    F.cross_entropy(logits.flatten(0, 1), part.flatten()).backward()
    grads = {k: p.grad for k, p in model.named_parameters()}
    torch.save({"grads": grads, "backend": resolve_backend("auto", part)}, Path(out_dir) / f"rank{rank}.pt")
    dist.destroy_process_group()


def test_ddp_two_processes_average_the_full_batch_gradient(tmp_path: Path, hg38_ids) -> None:
    """Two gloo ranks on the kernel, half the batch each: DDP's averaged gradient equals one
    process's gradient of the mean loss over the whole batch on the ref scan."""
    import socket

    import torch.multiprocessing as mp

    ids = hg38_ids[:2, :64]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_ddp_rank, args=(2, port, ids, str(tmp_path)), nprocs=2, join=True)
    torch.manual_seed(0)
    model = build_model("caduceus_ps", d_model=16, n_layer=2, scan_backend="ref")
    logits = model(ids)
    F.cross_entropy(logits.flatten(0, 1), ids.flatten()).backward()
    for rank in range(2):
        got = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        for name, p in model.named_parameters():
            assert_close_scaled(got["grads"][name], p.grad, f"rank {rank} grad of {name}")


# ---------------------------------------------------------------- inference paths
def test_inference_paths_run_on_the_fused_kernel(monkeypatch, hg38_ids) -> None:
    """Evaluation forward, plain and cached ancestral sampling (the latter on subsets of rows),
    the fine-tuning classifier and the sample-metrics oracle all go through the fused mixer."""
    from dnadiff.metrics.oracle import classifier_outputs
    from dnadiff.models.heads import SequenceClassifier
    from dnadiff.objectives.schedules import build_schedule
    from dnadiff.sampling import Denoiser, all_mask, ancestral_sample
    from dnadiff.finetuning.loop import predict_proba

    monkeypatch.delenv(BACKEND_ENV, raising=False)
    batches: list[int] = []
    real = cpu_fused.fused_mixer_cpu
    monkeypatch.setattr(cpu_fused, "fused_mixer_cpu", lambda xz, *a: batches.append(xz.shape[0]) or real(xz, *a))
    tok = Tokenizer()
    model = build_model("caduceus_ps", d_model=16, n_layer=1).eval()

    def count(fn) -> list[int]:
        batches.clear()
        fn()
        return list(batches)

    with torch.no_grad():
        assert count(lambda: model(hg38_ids))
    sched = build_schedule("loglinear")
    gen = torch.Generator().manual_seed(0)
    plain = count(lambda: ancestral_sample(Denoiser(model, tok.mask_id), all_mask(4, 12, tok.mask_id), 12, sched,
                                           tok.mask_id, generator=gen))
    cached = count(lambda: ancestral_sample(Denoiser(model, tok.mask_id), all_mask(4, 12, tok.mask_id), 12, sched,
                                            tok.mask_id, cache=True, generator=gen))
    assert plain and cached
    assert min(cached) < 2 * 4, "the cached sampler should have run the network on a subset of rows"
    clf = SequenceClassifier(model, num_classes=2)
    assert count(lambda: predict_proba(clf, hg38_ids))
    clf.train()
    assert count(lambda: F.cross_entropy(clf(hg38_ids), torch.tensor([0, 1, 0])).backward())
    assert count(lambda: classifier_outputs(clf.eval(), ["ACGTACGTAC", "TTGACCAGTA"]))
