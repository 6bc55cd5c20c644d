"""Backbones (issue 4): Mamba maths and init, BiMamba tying, Caduceus-PS exact RC equivariance,
PH conjoining, causal decoding, and the registry contract (build_model / model_from_config)."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from pyfaidx import Fasta

import dnadiff
from dnadiff.models import (
    BiMamba,
    Mamba,
    RCPSWrapper,
    available_models,
    build_model,
    model_from_config,
    rc_hidden,
    rc_invariant_pool,
)
from dnadiff.models.mamba import RMSNorm, SelectiveSSM

TINY = dict(d_model=32, n_layer=2, scan_backend="torch")
WINDOW_STARTS = (20_000, 523_456, 1_234_567)  # 0-based; chr2:1-10,000 is N (telomere)


@pytest.fixture(scope="module")
def genome_ids(hg38_fasta, tokenizer) -> torch.Tensor:
    """(3, 96) token ids of real hg38 chr2 windows (soft-masked repeats included)."""
    fa = Fasta(str(hg38_fasta))
    seqs = [str(fa["chr2"][s : s + 96]) for s in WINDOW_STARTS]
    return tokenizer.encode_batch(seqs)


def _randomize(model: torch.nn.Module, seed: int = 1) -> None:
    """Replace every parameter by random values: equivariance must hold for ANY weights."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)


def _rc_logits(model, logits: torch.Tensor) -> torch.Tensor:
    """flip_seq(logits)[..., complement]: what logits(rc(x)) must equal."""
    return logits.flip(1)[..., model.complement_map[: model.vocab_size]]


# ---------------------------------------------------------------- Caduceus-PS equivariance
@pytest.mark.parametrize("n_classes", [0, 3])
def test_caduceus_ps_exactly_rc_equivariant_on_genome(genome_ids, tokenizer, n_classes):
    model = build_model("caduceus_ps", n_classes=n_classes, **TINY).eval()
    _randomize(model)
    x = genome_ids
    x_rc = tokenizer.reverse_complement(x)
    cond = torch.tensor([0, 2, n_classes]) if n_classes else None
    with torch.no_grad():
        logits, logits_rc = model(x, cond), model(x_rc, cond)
        hid, hid_rc = model.hidden_states(x, cond), model.hidden_states(x_rc, cond)
    assert model.rc_equivariant and hid.shape == (3, 96, 2 * 32)
    torch.testing.assert_close(logits_rc, _rc_logits(model, logits), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(hid_rc, rc_hidden(hid), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(rc_invariant_pool(hid_rc), rc_invariant_pool(hid), rtol=1e-5, atol=1e-5)
    # the check is not vacuous: the logits do depend on the strand
    assert (logits_rc - logits).abs().max() > 1e-2


def test_caduceus_ps_embedding_is_the_rcps_formula(genome_ids, tokenizer):
    """Layer 0 input = [E(x), flipSC(E(rc(x)))], computed here from the embedding matrix (the
    stack runs on the strands stacked along the batch, RCPSWrapper.stack of that input)."""
    model = build_model("caduceus_ps", **TINY)
    seen = {}
    model.blocks[0].module.register_forward_pre_hook(lambda m, args: seen.setdefault("h", args[0]))
    with torch.no_grad():
        model(genome_ids)
    w = model.embedding.weight
    expected = torch.cat([w[genome_ids], w[tokenizer.reverse_complement(genome_ids)].flip(1, 2)], dim=-1)
    torch.testing.assert_close(RCPSWrapper.unstack(seen["h"], genome_ids.shape[0]), expected)
    torch.testing.assert_close(seen["h"], RCPSWrapper.stack(expected))


def test_plain_bimamba_is_not_rc_equivariant(genome_ids, tokenizer):
    """Negative control: without RCPS the same check fails."""
    model = build_model("bimamba", **TINY).eval()
    _randomize(model)
    with torch.no_grad():
        logits, logits_rc = model(genome_ids), model(tokenizer.reverse_complement(genome_ids))
    assert not model.rc_equivariant
    assert (logits_rc - _rc_logits(model, logits)).abs().max() > 1e-2


# ---------------------------------------------------------------- Caduceus-PH conjoining
def test_caduceus_ph_conjoined_outputs_are_rc_invariant(genome_ids, tokenizer):
    model = build_model("caduceus_ph", **TINY).eval()
    _randomize(model)
    x_rc = tokenizer.reverse_complement(genome_ids)
    with torch.no_grad():
        conj, conj_rc = model.conjoined_logits(genome_ids), model.conjoined_logits(x_rc)
        plain = model(genome_ids)
        conj_model = model_from_config({**model.config, "conjoin": True})
        conj_model.load_state_dict(model.state_dict())
        via_config = conj_model(genome_ids)
    torch.testing.assert_close(conj_rc, _rc_logits(model, conj), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(via_config, conj)
    expected = 0.5 * (plain + _rc_logits(model, model(x_rc).detach()))
    torch.testing.assert_close(conj, expected)


# ---------------------------------------------------------------- causal Mamba
def test_causal_mamba_output_ignores_future_tokens(genome_ids):
    model = build_model("mamba", **TINY).eval()
    x = genome_ids[:1]
    i = 40
    y = x.clone()
    y[:, i + 1 :] = torch.randint(7, 12, (1, x.shape[1] - i - 1), generator=torch.Generator().manual_seed(3))
    assert (y != x).any()
    with torch.no_grad():
        lx, ly = model(x), model(y)
    assert model.causal
    torch.testing.assert_close(lx[:, : i + 1], ly[:, : i + 1], rtol=0, atol=0)
    assert (lx[:, i + 1 :] - ly[:, i + 1 :]).abs().max() > 1e-4


@pytest.mark.parametrize("n_classes", [0, 2])
def test_causal_step_decoding_equals_full_forward(genome_ids, n_classes):
    model = build_model("mamba", n_classes=n_classes, **TINY).eval()
    _randomize(model)
    x = genome_ids[:, :48]
    cond = torch.tensor([0, 1, 2]) if n_classes else None
    with torch.no_grad():
        full = model(x, cond)
        state = model.allocate_inference_state(x.shape[0])
        steps = []
        for t in range(x.shape[1]):
            logits, state = model.step(x[:, t], state, cond)
            steps.append(logits)
    torch.testing.assert_close(torch.stack(steps, dim=1), full, rtol=1e-4, atol=1e-4)


def _mixer_by_hand(mixer: Mamba, h: torch.Tensor) -> torch.Tensor:
    """The Mamba mixer written out from its definition, one position at a time."""
    ssm = mixer.ssm
    xz = h @ mixer.in_proj.weight.t()
    x, z = xz.chunk(2, dim=-1)  # (b, l, di)
    b, length, di = x.shape
    k = ssm.d_conv
    w = ssm.conv1d.weight[:, 0, :]  # (di, k)
    xpad = torch.cat([x.new_zeros(b, k - 1, di), x], dim=1)
    conv = torch.stack([(xpad[:, t : t + k] * w.t()).sum(1) + ssm.conv1d.bias for t in range(length)], 1)
    u = F.silu(conv)
    proj = u @ ssm.x_proj.weight.t()
    dt_low, bmat, cmat = proj.split([ssm.dt_rank, ssm.d_state, ssm.d_state], dim=-1)
    dt = F.softplus(dt_low @ ssm.dt_proj.weight.t() + ssm.dt_proj.bias)
    a = -torch.exp(ssm.A_log)
    state = x.new_zeros(b, di, ssm.d_state)
    ys = []
    for t in range(length):
        state = torch.exp(dt[:, t, :, None] * a) * state + (dt[:, t] * u[:, t])[..., None] * bmat[:, t, None, :]
        ys.append(torch.einsum("bdn,bn->bd", state, cmat[:, t]) + ssm.D * u[:, t])
    y = torch.stack(ys, 1) * F.silu(z)
    return y @ mixer.out_proj.weight.t()


def test_mamba_mixer_matches_definition():
    mixer = Mamba(16, d_inner=32, d_state=4, d_conv=4, dt_rank=2, scan_backend="torch")
    h = torch.randn(2, 20, 16)
    with torch.no_grad():
        torch.testing.assert_close(mixer(h), _mixer_by_hand(mixer, h), rtol=1e-4, atol=1e-5)


def test_rmsnorm_matches_definition():
    norm = RMSNorm(24, eps=1e-5)
    with torch.no_grad():
        norm.weight.copy_(torch.randn(24))
    x = 3 * torch.randn(2, 7, 24)
    by_hand = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5) * norm.weight
    torch.testing.assert_close(norm(x), by_hand, rtol=1e-6, atol=1e-6)
    assert norm(x.bfloat16()).dtype == torch.float32  # computed in fp32, returned in the weight's dtype


def test_mamba_ssm_initialisation():
    ssm = SelectiveSSM(d_inner=256, d_state=8, dt_rank=4, dt_min=1e-3, dt_max=0.1, dt_init_floor=1e-4)
    dt = F.softplus(ssm.dt_proj.bias.detach())
    assert dt.min() >= 1e-3 * (1 - 1e-4) and dt.max() <= 0.1 * (1 + 1e-4)
    # log-uniform: log dt is spread over the whole range, its mean near the midpoint
    assert abs(dt.log().mean().item() - 0.5 * (math.log(1e-3) + math.log(0.1))) < 0.35
    torch.testing.assert_close(ssm.A_log.detach(), torch.log(torch.arange(1, 9.0)).repeat(256, 1))
    assert torch.equal(ssm.D.detach(), torch.ones(256))
    assert ssm.dt_proj.weight.abs().max() <= 4**-0.5
    assert ssm.A_log._no_weight_decay and ssm.D._no_weight_decay and ssm.dt_proj.bias._no_reinit


def test_model_initialisation_rescales_out_proj():
    n_layer = 4
    model = build_model("mamba", d_model=64, n_layer=n_layer)
    for block in model.blocks:
        w = block.mixer.out_proj.weight
        bound = 1 / math.sqrt(w.shape[1]) / math.sqrt(n_layer)  # kaiming_uniform(a=sqrt 5) / sqrt(n_layer)
        assert w.abs().max() <= bound and w.abs().max() > 0.9 * bound
        assert F.softplus(block.mixer.ssm.dt_proj.bias).min() >= 1e-4  # not zeroed by the re-init
    assert abs(model.embedding.weight.std().item() - 0.02) < 0.004


# ---------------------------------------------------------------- BiMamba
@pytest.mark.parametrize("bias", [False, True])
def test_bimamba_shares_projections_and_matches_two_mambas(bias):
    d, ssm = 16, dict(d_inner=32, d_state=4, d_conv=3, dt_rank=2, scan_backend="torch")
    bi = BiMamba(d, bias=bias, **ssm)
    fwd, rev = Mamba(d, bias=bias, **ssm), Mamba(d, bias=bias, **ssm)
    for m, core in ((fwd, bi.ssm_fwd), (rev, bi.ssm_rev)):
        m.in_proj, m.out_proj, m.ssm = bi.in_proj, bi.out_proj, core
    assert fwd.in_proj.weight is rev.in_proj.weight and fwd.out_proj.weight is rev.out_proj.weight
    if bias:
        torch.nn.init.normal_(bi.out_proj.bias)
    h = torch.randn(2, 24, d)
    with torch.no_grad():
        torch.testing.assert_close(bi(h), fwd(h) + rev(h.flip(1)).flip(1), rtol=1e-5, atol=1e-5)
    core = sum(p.numel() for p in bi.ssm_fwd.parameters())
    proj = sum(p.numel() for p in bi.in_proj.parameters()) + sum(p.numel() for p in bi.out_proj.parameters())
    assert sum(p.numel() for p in bi.parameters()) == proj + 2 * core
    untied = BiMamba(d, bias=bias, weight_tie=False, **ssm)
    assert sum(p.numel() for p in untied.parameters()) == 2 * (proj + core)


def test_bimamba_lm_counts_shared_weights_once():
    model = build_model("bimamba", **TINY)
    keys = [k for k in model.state_dict() if "in_proj" in k]
    assert keys == [f"blocks.{i}.mixer.in_proj.weight" for i in range(2)]
    assert len({id(p) for p in model.parameters()}) == len(list(model.parameters()))


# ---------------------------------------------------------------- registry contract
@pytest.mark.parametrize("name", available_models())
def test_build_every_config(name):
    model = dnadiff.build_model(name)
    x = torch.randint(0, 12, (2, 16))
    with torch.no_grad():
        logits, hid = model(x), model.hidden_states(x)
    assert logits.shape == (2, 16, 12) and logits.dtype == torch.float32
    assert hid.shape == (2, 16, model.d_hidden)
    assert model.vocab_size == 12 and model.config["name"] == name
    assert model.causal == (model.config["arch"] == "mamba")
    assert model.rc_equivariant == (model.config["arch"] == "caduceus_ps")


@pytest.mark.parametrize(
    ("name", "params"), [("caduceus_ps_hg38", 470_702), ("caduceus_ph_hg38", 470_702), ("mamba_hg38", 468_608)]
)
def test_hg38_sizes_match_the_published_470k_models(name, params):
    """MDLM Table 6 / Caduceus Table 1 sizes: Caduceus d_model 118 x 4 layers (470k), Mamba 128 x 4 (468k)."""
    model = build_model(name)
    assert sum(p.numel() for p in model.parameters()) == params


@pytest.mark.parametrize("name", ["mamba", "bimamba", "caduceus_ph", "caduceus_ps"])
def test_config_round_trip(name, genome_ids):
    model = build_model(name, n_classes=2, **TINY).eval()
    config = json.loads(json.dumps(model.config))
    rebuilt = model_from_config(config).eval()
    rebuilt.load_state_dict(model.state_dict())
    assert rebuilt.config == model.config
    cond = torch.tensor([0, 1, 2])
    with torch.no_grad():
        assert torch.equal(rebuilt(genome_ids, cond), model(genome_ids, cond))


def test_scan_backends_agree_through_the_model(genome_ids):
    model = build_model("caduceus_ps", **TINY)
    x = genome_ids[:2, :32]
    out = {}
    for backend in ("ref", "torch"):
        model.scan_backend = backend
        model.zero_grad()
        loss = model(x).logsumexp(-1).sum()
        loss.backward()
        out[backend] = (loss.detach(), model.blocks[0].module.mixer.in_proj.weight.grad.clone())
    assert model.config["scan_backend"] == "torch"
    torch.testing.assert_close(out["torch"][0], out["ref"][0], rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(out["torch"][1], out["ref"][1], rtol=1e-4, atol=1e-5)


def test_class_conditioning(genome_ids):
    model = build_model("bimamba", n_classes=2, **TINY).eval()
    with torch.no_grad():
        null = model(genome_ids)
        assert torch.equal(null, model(genome_ids, torch.full((3,), 2)))
        assert (model(genome_ids, torch.zeros(3, dtype=torch.long)) - null).abs().max() > 1e-4


def test_bad_names_keys_and_inputs():
    with pytest.raises(ValueError, match=r"unknown model name 'caduceus'.*caduceus_ps"):
        build_model("caduceus")
    with pytest.raises(ValueError, match=r"d_modle.*valid keys.*d_model"):
        build_model("mamba", d_modle=8)
    with pytest.raises(ValueError, match=r"unknown arch 'transformer'"):
        model_from_config({"arch": "transformer"})
    with pytest.raises(ValueError, match=r"scan_backend.*'fast'"):
        build_model("mamba", scan_backend="fast")
    with pytest.raises(ValueError, match=r"d_model must be a positive int, got 0"):
        build_model("mamba", d_model=0)
    with pytest.raises(ValueError, match=r"rcps=True contradicts arch='bimamba'"):
        build_model("bimamba", rcps=True)
    with pytest.raises(ValueError, match=r"conjoin=True"):
        build_model("caduceus_ps", conjoin=True)
    model = build_model("caduceus_ps", **TINY)
    with pytest.raises(ValueError, match=r"token id 12"):
        model(torch.tensor([[7, 12]]))
    with pytest.raises(ValueError, match=r"LongTensor"):
        model(torch.zeros(1, 4))
    with pytest.raises(ValueError, match=r"n_classes=0"):
        model(torch.tensor([[7, 8]]), torch.tensor([0]))
    with pytest.raises(ValueError, match=r"needs a causal model"):
        model.allocate_inference_state(1)
    cond_model = build_model("mamba", n_classes=2, **TINY)
    with pytest.raises(ValueError, match=r"class label 3"):
        cond_model(torch.tensor([[7, 8]]), torch.tensor([3]))


def test_time_conditioning_is_optional_keeps_ps_equivariance_and_changes_output() -> None:
    """A time-conditioned PS model depends on t, stays exactly RC-equivariant, and demands t."""
    torch.manual_seed(0)
    model = build_model("caduceus_ps", d_model=16, n_layer=1, scan_backend="ref", time_conditioning=True)
    assert model.time_conditioned
    x = torch.randint(7, 11, (2, 24))
    t = torch.tensor([0.1, 0.9])
    logits = model(x, t=t)
    rc_logits = model(model.reverse_complement(x), t=t)
    torch.testing.assert_close(rc_logits, logits.flip(1)[..., model.complement_map[:12]], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(model(x, t=torch.tensor([0.5, 0.5])), logits)
    with pytest.raises(ValueError, match="time-conditioned"):
        model(x)
    plain = build_model("caduceus_ps", d_model=16, n_layer=1, scan_backend="ref")
    assert not plain.time_conditioned
    with pytest.raises(ValueError, match="time_conditioning=false"):
        plain(x, t=t)
