"""dnadiff's Mamba pieces against mamba-ssm's and causal-conv1d's own reference code (on CPU).

The cuda backend hands tensors to mamba-ssm's kernels (``selective_scan_fn``, and the fused
``mamba_inner_fn`` when causal-conv1d is there). mamba-ssm tests those kernels against its
pure-PyTorch references ``selective_scan_ref`` / ``mamba_inner_ref``; here the same references
check, without a GPU, that dnadiff computes what mamba-ssm computes:

- the scan (our ``ref``, ``torch`` and ``cpu_fused`` backends) equals mamba-ssm's ``selective_scan_ref``;
- our ``Mamba`` mixer with a given set of weights equals mamba-ssm's ``Mamba`` module with the
  same weights, slow and fast path (ours on ``torch`` and on the fused ``cpu_fused`` mixer), and
  the two initialise alike;
- our fused path (the call that passes our weights to ``mamba_inner_fn``), run with
  ``mamba_inner_ref`` in the kernel's place, equals our unfused path for Mamba, BiMamba (tied
  and untied) and the whole Caduceus-PS LM, in outputs and every gradient.

Tolerance: fp32, rtol 1e-4 / atol 1e-5 after scaling by the reference's largest magnitude
(the implementations differ only in the order of float sums).
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from pyfaidx import Fasta
from tests.models.test_scan import assert_close_scaled, make_inputs, outputs_and_grads

import dnadiff.models.mamba as mamba_module
from dnadiff.data.genome import Genome
from dnadiff.models import BiMamba, Mamba, build_model
from dnadiff.models.kernels.scan import (
    ScanBackendError,
    _mamba_inner_import,
    available_backends,
    causal_conv1d,
    fused_mixer,
    selective_scan,
    selective_scan_ref,
)
from dnadiff.resources import default_fasta

D_MODEL = 16
SSM = dict(d_inner=32, d_state=8, d_conv=4, dt_rank=math.ceil(D_MODEL / 16))


def _as_mamba_ssm_state(ours: Mamba) -> dict[str, torch.Tensor]:
    """Our Mamba's state dict under mamba-ssm's names (the SSM part sits under ``ssm.`` here)."""
    return {k.removeprefix("ssm."): v for k, v in ours.state_dict().items()}


def _randomize(module: torch.nn.Module, seed: int) -> None:
    """Random weights of O(1) (and A_log of either sign), so that no term of the mixer is negligible."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)


def _grads(module: torch.nn.Module, h: torch.Tensor, out: torch.Tensor) -> dict[str, torch.Tensor]:
    """Gradients of <out, w> (w fixed) w.r.t. the input and every parameter, by name."""
    w = torch.randn(out.shape, generator=torch.Generator().manual_seed(5))
    named = dict(module.named_parameters())
    grads = torch.autograd.grad((out * w).sum(), [h, *named.values()])
    return dict(zip(["input", *named], grads))


@pytest.mark.parametrize(
    "b,d,n,length,softplus,opts",
    [
        (2, 3, 4, 37, True, {}),
        (1, 5, 16, 100, False, {}),
        (2, 6, 3, 65, True, {"with_d": False, "with_z": False, "with_bias": False}),
        (2, 20, 16, 70, True, {}),
    ],
)
@pytest.mark.parametrize("backend", ["ref", "torch", pytest.param("cpu_fused", marks=pytest.mark.skipif(
    "cpu_fused" not in available_backends(), reason="the cpu_fused kernels cannot be built here"))])
def test_scan_matches_mamba_ssm_selective_scan_ref(mamba_ssm_reference, backend, b, d, n, length, softplus, opts):
    xs = make_inputs(b, d, n, length, **opts)
    theirs, their_g = outputs_and_grads(mamba_ssm_reference.selective_scan_ref, xs, delta_softplus=softplus)
    ours, our_g = outputs_and_grads(selective_scan, xs, delta_softplus=softplus, backend=backend)
    assert_close_scaled(ours, theirs, "output")
    assert set(our_g) == set(their_g)
    for name in their_g:
        assert_close_scaled(our_g[name], their_g[name], f"grad of {name}")
    with torch.no_grad():
        _, last = selective_scan(**xs, delta_softplus=softplus, return_last_state=True, backend=backend)
        _, their_last = mamba_ssm_reference.selective_scan_ref(**xs, delta_softplus=softplus, return_last_state=True)
    assert_close_scaled(last, their_last, "last state")


def test_causal_conv1d_matches_causal_conv1d_ref(mamba_ssm_reference):
    x, w, bias = torch.randn(2, 5, 33), torch.randn(5, 4), torch.randn(5)
    for activation in (None, "silu"):
        torch.testing.assert_close(
            causal_conv1d(x, w, bias, activation), mamba_ssm_reference.causal_conv1d_ref(x, w, bias, activation=activation)
        )


@pytest.mark.parametrize("ours_backend", ["torch", pytest.param("cpu_fused", marks=pytest.mark.skipif(
    "cpu_fused" not in available_backends(), reason="the cpu_fused kernels cannot be built here"))])
@pytest.mark.parametrize("fast_path", [False, True])
def test_mamba_mixer_equals_mamba_ssm_module(mamba_ssm_reference, monkeypatch, fast_path, ours_backend):
    """Same weights -> same outputs and gradients as mamba_ssm.modules.mamba_simple.Mamba."""
    if fast_path:  # the fused branch (mamba_inner_fn, here its reference) needs causal_conv1d_fn
        monkeypatch.setattr(mamba_ssm_reference.mamba_simple, "causal_conv1d_fn", mamba_ssm_reference.causal_conv1d_ref)
    ours = Mamba(D_MODEL, scan_backend=ours_backend, **SSM)
    theirs = mamba_ssm_reference.Mamba(D_MODEL, d_state=SSM["d_state"], d_conv=SSM["d_conv"], expand=2,
                                       use_fast_path=fast_path)
    _randomize(ours, seed=3)
    theirs.load_state_dict(_as_mamba_ssm_state(ours), strict=True)  # same names, same shapes
    h = torch.randn(2, 37, D_MODEL, requires_grad=True)
    out, out_theirs = ours(h), theirs(h)
    assert_close_scaled(out, out_theirs, "output")
    g, g_theirs = _grads(ours, h, out), _grads(theirs, h, out_theirs)
    assert {k.removeprefix("ssm.") for k in g} == set(g_theirs)
    for name, grad in g.items():
        assert_close_scaled(grad, g_theirs[name.removeprefix("ssm.")], f"grad of {name}")


def test_mamba_initialisation_matches_mamba_ssm(mamba_ssm_reference):
    """A_log, D, the dt bias range and the dt_proj bound are initialised as mamba-ssm does."""
    torch.manual_seed(0)
    ours = _as_mamba_ssm_state(Mamba(64, d_inner=128, d_state=16, d_conv=4, dt_rank=4))
    theirs = mamba_ssm_reference.Mamba(64, d_state=16, d_conv=4, expand=2).state_dict()
    assert {k: v.shape for k, v in ours.items()} == {k: v.shape for k, v in theirs.items()}
    for name in ("A_log", "D"):
        torch.testing.assert_close(ours[name], theirs[name], rtol=0, atol=0)
    for state in (ours, theirs):
        dt = F.softplus(state["dt_proj.bias"])
        assert dt.min() >= 1e-4 * (1 - 1e-4) and dt.max() <= 0.1 * (1 + 1e-4)
        assert state["dt_proj.weight"].abs().max() <= 4**-0.5
        assert state["dt_proj.weight"].abs().max() > 0.9 * 4**-0.5


@pytest.fixture()
def fused_with_reference(mamba_ssm_reference, monkeypatch):
    """Make the mixers take their fused path on CPU, with mamba_inner_ref in mamba_inner_fn's place."""
    calls = []

    def fake_fused_mixer(x: torch.Tensor, backend: str):
        def inner(*args, **kwargs):
            calls.append(args[0].shape)
            return mamba_ssm_reference.mamba_inner_ref(*args, **kwargs)

        return inner

    monkeypatch.setattr(mamba_module, "fused_mixer", fake_fused_mixer)
    return calls


def _outputs_and_grads_both_paths(make, h: torch.Tensor, monkeypatch) -> tuple:
    """(unfused output, grads), (fused output, grads) of the same module on the same input."""
    module = make()
    _randomize(module, seed=11)
    with monkeypatch.context() as m:
        m.setattr(mamba_module, "fused_mixer", lambda x, backend: None)
        plain = module(h)
        plain_g = _grads(module, h, plain)
    fused = module(h)
    return (plain, plain_g), (fused, _grads(module, h, fused))


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: Mamba(D_MODEL, **SSM), id="mamba"),
        pytest.param(lambda: Mamba(D_MODEL, bias=True, **SSM), id="mamba-bias"),
        pytest.param(lambda: BiMamba(D_MODEL, **SSM), id="bimamba-tied"),
        pytest.param(lambda: BiMamba(D_MODEL, bias=True, **SSM), id="bimamba-tied-bias"),
        pytest.param(lambda: BiMamba(D_MODEL, weight_tie=False, bias=True, **SSM), id="bimamba-untied-bias"),
    ],
)
def test_fused_path_equals_unfused_path(fused_with_reference, monkeypatch, make):
    h = torch.randn(2, 29, D_MODEL, requires_grad=True)
    (plain, plain_g), (fused, fused_g) = _outputs_and_grads_both_paths(make, h, monkeypatch)
    assert fused_with_reference, "the fused path was not taken"
    assert all(shape == (2, 2 * SSM["d_inner"], 29) for shape in fused_with_reference)
    assert_close_scaled(fused, plain, "output")
    for name in plain_g:
        assert_close_scaled(fused_g[name], plain_g[name], f"grad of {name}")


def test_fused_path_through_caduceus_ps_lm(fused_with_reference, monkeypatch, tokenizer, hg38_fasta):
    """The whole RC-equivariant LM on real hg38 windows, fused vs unfused (and still equivariant)."""
    chrom = Fasta(str(hg38_fasta))["chr2"]
    ids = tokenizer.encode_batch([str(chrom[s : s + 61]) for s in (20_000, 1_234_567)])
    model = build_model("caduceus_ps", d_model=16, n_layer=2)
    _randomize(model, seed=2)
    with monkeypatch.context() as m:
        m.setattr(mamba_module, "fused_mixer", lambda x, backend: None)
        plain = model(ids)
        loss_plain = F.cross_entropy(plain.flatten(0, 1), ids.flatten())
        plain_g = dict(zip(dict(model.named_parameters()), torch.autograd.grad(loss_plain, list(model.parameters()))))
    fused = model(ids)
    assert len(fused_with_reference) == 2 * 2  # two directions in each of the two layers
    loss = F.cross_entropy(fused.flatten(0, 1), ids.flatten())
    fused_g = dict(zip(dict(model.named_parameters()), torch.autograd.grad(loss, list(model.parameters()))))
    assert_close_scaled(fused, plain, "logits")
    for name in plain_g:
        assert_close_scaled(fused_g[name], plain_g[name], f"grad of {name}")
    with torch.no_grad():
        rc_logits = model(tokenizer.reverse_complement(ids))
    assert_close_scaled(rc_logits, fused.detach().flip(1)[..., model.complement_map[: model.vocab_size]], "RC logits")


FUSED_ON_GPU = torch.cuda.is_available() and fused_mixer(torch.zeros(1, device="cuda"), "cuda") is not None


@pytest.mark.skipif(not FUSED_ON_GPU, reason="needs a CUDA GPU with mamba-ssm and causal-conv1d (pip install dnadiff[cuda])")
@pytest.mark.parametrize("arch", ["mamba", "caduceus_ps"])
def test_fused_kernel_on_gpu_matches_reference_scan(arch, tokenizer):
    """The real kernels (mamba_inner_fn) against the same model on the sequential ``ref`` scan, fp32,
    on windows of the hg38 sample embedded in the package (a GPU machine may lack ../shared)."""
    genome = Genome(default_fasta())
    chrom = next(iter(genome.contigs))
    ids = tokenizer.encode_batch([genome.fetch(chrom, s, s + 200) for s in (20_000, 1_234_567)]).cuda()
    model = build_model(arch, d_model=32, n_layer=2, scan_backend="cuda").cuda()
    results = {}
    for backend in ("cuda", "ref"):
        model.scan_backend = backend
        logits = model(ids)
        loss = F.cross_entropy(logits.flatten(0, 1), ids.flatten())
        grads = torch.autograd.grad(loss, list(model.parameters()))
        results[backend] = (logits.detach().cpu(), [g.cpu() for g in grads])
    assert_close_scaled(results["cuda"][0], results["ref"][0], "logits")
    for name, g, g_ref in zip(dict(model.named_parameters()), results["cuda"][1], results["ref"][1]):
        assert_close_scaled(g, g_ref, f"grad of {name}")


@pytest.mark.skipif(torch.cuda.is_available() and "cuda" in available_backends(), reason="mamba-ssm's kernels are installed here")
def test_kernel_less_mamba_ssm_is_reported_unusable(mamba_ssm_reference):
    """A CPU install of mamba-ssm (sources, no kernels) leaves dnadiff on its own backends, saying why."""
    x = torch.randn(1, 2, 5)
    assert "cuda" not in available_backends()
    assert _mamba_inner_import() is None
    assert fused_mixer(x, "auto") is None and fused_mixer(x, "cuda") is None
    xs = make_inputs(1, 2, 3, 5)
    with pytest.raises(ScanBackendError, match="importing mamba_ssm failed"):
        selective_scan(**xs, backend="cuda")
    with torch.no_grad():
        torch.testing.assert_close(selective_scan(**xs), selective_scan_ref(**xs))
