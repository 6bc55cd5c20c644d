"""Samplers: ancestral correctness against known x_theta, caching, the one-step
marginal of the forward process, infilling, semi-AR, guidance, AR recurrence, and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
from scipy import stats

from dnadiff import Tokenizer, build_model
from dnadiff.objectives.schedules import build_schedule
from dnadiff.sampling import (
    ClassifierFreeGuidance,
    ClassifierGuidance,
    Denoiser,
    all_mask,
    ancestral_sample,
    ar_sample,
    cfg_log_probs,
    filter_log_probs,
    infill_sample,
    make_generator,
    motif_template,
    onehot_gradient,
    parse_region,
    parse_span,
    sample_categorical,
    semi_ar_sample,
    span_template,
)

TOK = Tokenizer()
MASK = TOK.mask_id
ACGT = list(TOK.nucleotide_ids)
SCHED = build_schedule("loglinear")


class FixedCategorical(nn.Module):
    """A 'network' whose x_theta is a fixed per-position categorical over A, C, G, T, whatever z is."""

    def __init__(self, probs: torch.Tensor) -> None:
        super().__init__()
        logits = torch.full((probs.shape[0], len(TOK)), -30.0)
        logits[:, ACGT] = probs.log()
        self.register_buffer("logits", logits)
        self.dummy = nn.Parameter(torch.zeros(()))
        self.calls = 0

    def forward(self, ids: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        self.calls += 1
        return self.logits[: ids.shape[1]].expand(ids.shape[0], -1, -1)


class TimeConditionedFixed(FixedCategorical):
    time_conditioned = True

    def forward(
        self, ids: torch.Tensor, cond: torch.Tensor | None = None, t: torch.Tensor | None = None
    ) -> torch.Tensor:
        assert t is not None and t.shape == (ids.shape[0],)
        return super().forward(ids, cond)


def tiny(name: str = "bimamba", **kw) -> nn.Module:
    torch.manual_seed(0)
    return build_model(name, d_model=16, n_layer=1, **kw).eval()


def test_ancestral_reproduces_known_x_theta_chi_square() -> None:
    probs = torch.tensor([[0.7, 0.1, 0.1, 0.1], [0.25, 0.25, 0.25, 0.25], [0.05, 0.45, 0.45, 0.05]])
    model = FixedCategorical(probs)
    out = ancestral_sample(Denoiser(model, MASK), all_mask(3000, 3, MASK), 6, SCHED, MASK,
                           generator=make_generator(1, "cpu"))
    assert not (out.ids == MASK).any()
    for pos in range(3):
        counts = np.array([(out.ids[:, pos] == v).sum().item() for v in ACGT])
        expected = probs[pos].double().numpy()
        p_ok = stats.chisquare(counts, expected / expected.sum() * counts.sum()).pvalue
        assert p_ok > 1e-3, (pos, counts)
        wrong = probs[(pos + 1) % 3].double().numpy()
        assert stats.chisquare(counts, wrong / wrong.sum() * counts.sum()).pvalue < 1e-6


@pytest.mark.parametrize("schedule", ["loglinear", "cosine"])
def test_one_step_marginal_matches_forward_process(schedule: str) -> None:
    sched = build_schedule(schedule)
    steps, batch, length = 8, 1000, 8
    model = FixedCategorical(torch.full((length, 4), 0.25))
    out = ancestral_sample(Denoiser(model, MASK), all_mask(batch, length, MASK), steps, sched, MASK,
                           generator=make_generator(2, "cpu"))
    counts = out.masked_counts.double()
    assert counts[0] == batch * length and counts[-1] == 0
    for k, i in enumerate(range(steps, 1, -1)):
        a_t = float(sched.alpha(torch.tensor(i / steps)))
        a_s = float(sched.alpha(torch.tensor((i - 1) / steps)))
        expected_unmasked = 1.0 - (1.0 - a_s) / (1.0 - a_t)
        n = counts[k].item()
        observed = 1.0 - counts[k + 1].item() / n
        se = np.sqrt(expected_unmasked * (1 - expected_unmasked) / n)
        assert abs(observed - expected_unmasked) < 5 * se + 1e-9, (i, observed, expected_unmasked)


def test_cached_equals_uncached_and_bounds_nfe() -> None:
    model = tiny()
    steps, length = 24, 10
    plain = ancestral_sample(Denoiser(model, MASK), all_mask(4, length, MASK), steps, SCHED, MASK,
                             generator=make_generator(3, "cpu"))
    cached = ancestral_sample(Denoiser(model, MASK), all_mask(4, length, MASK), steps, SCHED, MASK, cache=True,
                              generator=make_generator(3, "cpu"))
    assert torch.equal(plain.ids, cached.ids)
    assert plain.nfe == steps and bool((plain.nfe_per_sequence == steps).all())
    assert int(cached.nfe_per_sequence.max()) <= min(steps, length)
    assert cached.nfe < plain.nfe
    one = ancestral_sample(Denoiser(model, MASK), all_mask(1, length, MASK), steps, SCHED, MASK, cache=True,
                           generator=make_generator(4, "cpu"))
    assert one.nfe <= min(steps, length)


def test_cache_is_off_for_time_conditioned_models() -> None:
    model = TimeConditionedFixed(torch.full((6, 4), 0.25))
    out = ancestral_sample(Denoiser(model, MASK), all_mask(2, 6, MASK), 20, SCHED, MASK, cache=True,
                           generator=make_generator(0, "cpu"))
    assert out.nfe == 20 and model.calls == 20


def test_infilling_keeps_fixed_positions() -> None:
    model = tiny()
    gen = torch.Generator().manual_seed(5)
    template = torch.randint(7, 12, (14,), generator=gen)
    hole = torch.rand(14, generator=gen) < 0.5
    template[hole] = MASK
    out = infill_sample(Denoiser(model, MASK), template, 6, 5, SCHED, MASK, cache=True,
                        generator=make_generator(6, "cpu"))
    assert torch.equal(out.ids[:, ~hole], template[~hole].expand(6, -1))
    assert bool(torch.isin(out.ids[:, hole], torch.tensor(ACGT)).all())


def test_templates_and_coordinates() -> None:
    assert parse_region("chr2:1,001-1,100") == ("chr2", 1000, 1100)
    assert parse_span("11-20", 100) == (10, 20)
    ids = span_template("ACGTACGTAC", 2, 5)
    assert TOK.decode(ids) == "AC[MASK][MASK][MASK]CGTAC"
    assert TOK.decode(motif_template(6, "GG", 3)) == "[MASK]" * 3 + "GG[MASK]"
    for bad, fn in (("chr2:5-1", parse_region), ("chr2-1-5", parse_region)):
        with pytest.raises(ValueError, match="invalid region"):
            fn(bad)
    with pytest.raises(ValueError, match="21-30"):
        parse_span("21-30", 25)
    with pytest.raises(ValueError, match="does not fit"):
        motif_template(4, "ACGTA", 0)


def test_infill_from_real_genome_region(hg38_fasta: Path) -> None:
    from dnadiff.data.genome import Genome

    contig, start, end = parse_region("chr2:150001-150024")
    seq = Genome(hg38_fasta).fetch(contig, start, end)
    m0, m1 = parse_span("9-16", len(seq))
    out = infill_sample(Denoiser(tiny(), MASK), span_template(seq, m0, m1), 3, 4, SCHED, MASK,
                        generator=make_generator(0, "cpu"))
    for s in TOK.decode(out.ids):
        assert s[:8] == seq[:8].upper() and s[16:] == seq[16:].upper() and len(s) == 24


def test_semi_ar_three_blocks_keep_prefixes() -> None:
    block, prefix = 8, 4
    out = semi_ar_sample(Denoiser(tiny(), MASK), 3, 3 * block, block, prefix, 4, SCHED, MASK, cache=True,
                         generator=make_generator(7, "cpu"))
    assert out.ids.shape == (3, 3 * block) and not (out.ids == MASK).any()
    assert torch.equal(out.blocks[0], out.ids[:, :block])
    pos = block
    for prev, blk in zip(out.blocks, out.blocks[1:]):
        assert torch.equal(blk[:, :prefix], prev[:, -prefix:])
        new = blk.shape[1] - prefix
        assert torch.equal(blk[:, prefix:], out.ids[:, pos : pos + new])
        pos += new
    assert pos == 3 * block
    with pytest.raises(ValueError, match="prefix_length"):
        semi_ar_sample(Denoiser(tiny(), MASK), 1, 16, 8, 8, 2, SCHED, MASK)


def test_cfg_formula_and_gamma_zero_is_unconditional() -> None:
    gen = torch.Generator().manual_seed(0)
    lc = torch.log_softmax(torch.randn(2, 5, 4, generator=gen), -1)
    lu = torch.log_softmax(torch.randn(2, 5, 4, generator=gen), -1)
    assert torch.equal(cfg_log_probs(lc, lu, 0.0), lu)
    assert torch.allclose(cfg_log_probs(lc, lu, 1.0), lc, atol=1e-6)
    assert torch.allclose(cfg_log_probs(lc, lu, 2.5), torch.log_softmax(2.5 * lc - 1.5 * lu, -1), atol=1e-6)
    model = tiny(n_classes=2)
    uncond = ancestral_sample(Denoiser(model, MASK), all_mask(3, 10, MASK), 6, SCHED, MASK,
                              generator=make_generator(8, "cpu"))
    target = torch.ones(3, dtype=torch.long)
    guided = ancestral_sample(ClassifierFreeGuidance(Denoiser(model, MASK), target, 0.0), all_mask(3, 10, MASK), 6,
                              SCHED, MASK, generator=make_generator(8, "cpu"))
    assert torch.equal(uncond.ids, guided.ids)
    cond = ancestral_sample(Denoiser(model, MASK, cond=target), all_mask(3, 10, MASK), 6, SCHED, MASK,
                            generator=make_generator(8, "cpu"))
    one = ancestral_sample(ClassifierFreeGuidance(Denoiser(model, MASK), target, 1.0), all_mask(3, 10, MASK), 6,
                           SCHED, MASK, generator=make_generator(8, "cpu"))
    assert torch.equal(cond.ids, one.ids)
    strong = ancestral_sample(ClassifierFreeGuidance(Denoiser(model, MASK), target, 3.0), all_mask(3, 10, MASK), 6,
                              SCHED, MASK, generator=make_generator(8, "cpu"))
    assert not torch.equal(uncond.ids, strong.ids)
    with pytest.raises(ValueError, match="n_classes"):
        ClassifierFreeGuidance(Denoiser(tiny(), MASK), target, 1.0)


class GCClassifier(nn.Module):
    """Class 1 logit = scale * mean over positions of e(x_l), e = +1 for G/C, -1 for A/T, 0 otherwise."""

    def __init__(self, scale: float = 4.0, rc_input: bool = False) -> None:
        super().__init__()
        self.embed = nn.Embedding(len(TOK), 1)
        with torch.no_grad():
            self.embed.weight.zero_()
            self.embed.weight[[TOK.token_to_id[c] for c in "GC"]] = 1.0
            self.embed.weight[[TOK.token_to_id[c] for c in "AT"]] = -1.0
            self.embed.weight[TOK.token_to_id["A"]] = -0.5
        self.scale = scale
        self.rc_input = rc_input

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        if self.rc_input:
            ids = TOK.reverse_complement(ids)
        h = self.embed(ids).mean(dim=1).squeeze(-1)
        return torch.stack([torch.zeros_like(h), self.scale * h], dim=-1)


@pytest.mark.parametrize("rc_input", [False, True])
def test_onehot_gradient_matches_analytic(rc_input: bool) -> None:
    clf = GCClassifier(rc_input=rc_input)
    z = torch.tensor([[MASK, 7, 7, 8, 9, MASK], [8, 8, 10, MASK, 7, 9]])
    grad = onehot_gradient(clf, z, torch.tensor([1, 1]), len(TOK))
    w = clf.embed.weight.detach().squeeze(-1)
    h = w[TOK.reverse_complement(z) if rc_input else z].mean(dim=1)
    p1 = torch.sigmoid(clf.scale * h)
    w_z = w[TOK.complement_map] if rc_input else w
    expected = (clf.scale * (1 - p1) / z.shape[1])[:, None, None] * w_z.expand(2, z.shape[1], -1)
    assert torch.allclose(grad, expected, atol=1e-6)
    palindrome = torch.tensor([[MASK, 7, 8, 9, 10, MASK]])
    direct = onehot_gradient(GCClassifier(), palindrome, torch.tensor([1]), len(TOK))
    p1_pal = float(torch.sigmoid(torch.tensor(4 * 0.5 / 6)))
    assert torch.allclose(direct[0, 1, 7], torch.tensor(-0.5 * 4.0 * (1 - p1_pal) / 6))


def test_classifier_guidance_moves_samples_toward_class() -> None:
    length = 12
    model = FixedCategorical(torch.full((length, 4), 0.25))
    target = torch.ones(400, dtype=torch.long)

    def gc(gamma: float) -> float:
        guided = ClassifierGuidance(Denoiser(model, MASK), GCClassifier(scale=4.0), target, gamma)
        ids = ancestral_sample(guided, all_mask(400, length, MASK), 8, SCHED, MASK,
                               generator=make_generator(9, "cpu")).ids
        return float(torch.isin(ids, torch.tensor([8, 9])).float().mean())

    plain, pushed = gc(0.0), gc(20.0)
    assert abs(plain - 0.5) < 0.05
    assert pushed > plain + 0.2


def test_ar_recurrent_equals_full_forward() -> None:
    model = tiny("mamba")
    rec = ar_sample(model, 3, 14, generator=make_generator(10, "cpu"), recurrent=True)
    full = ar_sample(model, 3, 14, generator=make_generator(10, "cpu"), recurrent=False)
    assert torch.equal(rec.ids, full.ids) and rec.nfe == 14
    assert bool(torch.isin(rec.ids, torch.tensor(ACGT)).all())
    with pytest.raises(ValueError, match="causal"):
        ar_sample(tiny(), 1, 4)


def test_filtering_and_categorical_draws() -> None:
    lp = torch.tensor([0.6, 0.3, 0.1]).log()
    assert torch.isinf(filter_log_probs(lp, top_p=0.5)[1:]).all()
    kept = filter_log_probs(lp, top_p=0.7)
    assert torch.isfinite(kept[:2]).all() and torch.isinf(kept[2])
    assert torch.allclose(torch.softmax(filter_log_probs(lp, temperature=0.5), -1),
                          torch.tensor([0.36, 0.09, 0.01]) / 0.46)
    probs = torch.tensor([0.0, 0.5, 0.0, 0.5, 0.0]).log().expand(4, -1)
    draws = sample_categorical(probs, torch.tensor([1e-12, 0.5, 0.5000001, 1.0]))
    assert draws.tolist() == [1, 1, 3, 3]
    for bad in ({"temperature": 0.0}, {"top_p": 1.5}):
        with pytest.raises(ValueError, match=str(list(bad.values())[0])):
            filter_log_probs(lp, **bad)
    with pytest.raises(ValueError, match="steps must be a positive int, got 0"):
        den = Denoiser(FixedCategorical(torch.full((2, 4), 0.25)), MASK)
        ancestral_sample(den, all_mask(1, 2, MASK), 0, SCHED, MASK)


def _export(model: nn.Module, folder: Path, objective: dict, classes: list[str] | None = None) -> Path:
    from safetensors.torch import save_file

    from dnadiff.checkpoint import metadata

    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "model.safetensors"))
    meta = metadata(model.config, objective, classes, config={"data": {"seq_len": 16}})
    (folder / "config.json").write_text(json.dumps(meta))
    return folder


MDLM_OBJ = {"name": "mdlm", "schedule": "loglinear", "eps": 1e-3}


def compose_config(name: str, overrides: list[str]) -> dict:
    """The entry point's Hydra config with overrides, as plain data (checks the YAML matches the code)."""
    from omegaconf import OmegaConf

    from dnadiff import cli

    return OmegaConf.to_container(cli.compose_config(name, overrides), resolve=True)


def _records(path: Path) -> list[tuple[str, str]]:
    from dnadiff.data.fasta import read_fasta

    return read_fasta(path)


def test_generate_cli_writes_fasta(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from dnadiff.generate import generate

    base = compose_config("generate", ["num_samples=5", "length=20", "steps=6", "seed=3", "batch_size=2",
                                       "device=cpu", "ckpt=unset", "out=unset"])
    mdlm = _export(tiny(n_classes=2), tmp_path / "mdlm", MDLM_OBJ, ["neg", "pos"])
    ar = _export(tiny("mamba"), tmp_path / "ar", {"name": "ar"})
    runs = {
        "cached": {"ckpt": str(mdlm)},
        "semi": {"ckpt": str(mdlm), "sampler": "semi_ar", "length": 40,
                 "guidance": {**base["guidance"], "class": "pos", "weight": 2.0}},
        "ar": {"ckpt": str(ar)},
    }
    for name, over in runs.items():
        cfg = {**base, **over, "out": str(tmp_path / f"{name}.fa")}
        stats_ = generate(cfg)
        recs = _records(tmp_path / f"{name}.fa")
        assert len(recs) == 5 and stats_["sequences_per_second"] > 0
        for header, seq in recs:
            fields = dict(f.split("=", 1) for f in header.split()[1:])
            assert int(fields["steps"]) > 0 and int(fields["nfe"]) >= 1 and len(seq) == cfg["length"]
            assert set(seq) <= set("ACGT")
        assert fields["sampler"] == {"cached": "cached", "semi": "semi_ar", "ar": "ar_recurrent"}[name]
    assert "guidance=cfg:pos:w=2.0" in _records(tmp_path / "semi.fa")[0][0]
    with pytest.raises(ValueError, match="'nope'"):
        bad = {**base["guidance"], "class": "nope"}
        generate({**base, "ckpt": str(mdlm), "out": str(tmp_path / "x.fa"), "guidance": bad})
    with pytest.raises(ValueError, match="sampler must be one of"):
        generate({**base, "ckpt": str(mdlm), "out": str(tmp_path / "x.fa"), "sampler": "ddim"})


def test_entry_points_help() -> None:
    import os
    import subprocess
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for module, key in (("dnadiff.generate", "num_samples"), ("dnadiff.evaluate_samples", "nn_both_strands")):
        run = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, timeout=120,
                             env=env)
        assert run.returncode == 0 and key in run.stdout, run.stderr[-500:]
