"""Baseline objectives on the same backbones: AR (exact NLL), MLM (BERT 15% 80/10/10), SEDD (absorbing).

Checks are against independent computations on real hg38 windows: the AR NLL against a prefix-by-prefix
forward pass, the MLM corruption rates against their binomial standard errors, SEDD against MDLM in
the SUBS-normalised case (where the two bounds coincide) and SEDD's Monte Carlo estimator against the
exact bound (all 2^8 mask patterns of a real octamer, Gauss-Legendre in t, the score entropy written
from its definition). Each objective must also lower its validation figure in a short CPU run.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
from omegaconf import OmegaConf

import dnadiff
from dnadiff.cli import compose_config
from dnadiff.data.genome import Genome
from dnadiff.objectives import OBJECTIVES, build_objective
from dnadiff.objectives.ar import AutoRegressive
from dnadiff.objectives.mdlm import MDLM
from dnadiff.objectives.mlm import MaskedLM
from dnadiff.objectives.schedules import LogLinearSchedule
from dnadiff.objectives.sedd import SEDD
from dnadiff.tokenizer import Tokenizer

TOK = Tokenizer()
K = len(TOK)


@pytest.fixture(scope="module")
def genome(hg38_fasta: Path) -> Genome:
    return Genome(hg38_fasta)


def real_windows(genome: Genome, n: int, length: int, start: int = 300_000, step: int = 7_919) -> torch.Tensor:
    """n real windows of chr2 (skipping any with N), as (n, length) ids."""
    seqs, pos = [], start
    while len(seqs) < n:
        s = genome.fetch("chr2", pos, pos + length).upper()
        if "N" not in s:
            seqs.append(s)
        pos += step
    return TOK.encode_batch(seqs)


def tiny(arch: str, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return dnadiff.build_model(arch, d_model=16, n_layer=1, scan_backend="ref").eval()


# ---------------------------------------------------------------------------------------------- AR
def test_ar_loss_equals_prefix_by_prefix_next_token_nll(genome: Genome) -> None:
    model = tiny("mamba", 1)
    x = real_windows(genome, 2, 16)
    x = torch.cat([x, TOK.encode_batch(["ACGTNACG"], length=16)])  # a padded row: pads are not scored
    obj = AutoRegressive(TOK.bos_id, TOK.pad_id)
    with torch.no_grad():
        out = obj.loss(model, x)
        total, count = 0.0, 0
        for b in range(x.shape[0]):
            for i in range(x.shape[1]):
                if x[b, i] == TOK.pad_id:
                    continue
                prefix = torch.cat([torch.tensor([TOK.bos_id]), x[b, :i]])[None]
                log_p = torch.log_softmax(model(prefix)[0, -1].double(), -1)
                total -= float(log_p[x[b, i]])
                count += 1
        from dnadiff.sampling.ar import ar_log_likelihood

        sampler_ll = ar_log_likelihood(model, x[:2]).double().sum()
    assert int(out.n_tokens) == count == 2 * 16 + 8
    assert float(out.nll_sum) == pytest.approx(total, rel=1e-5)
    assert float(out.loss) == pytest.approx(total / count, rel=1e-5)
    assert float(out.per_sequence[:2].sum()) == pytest.approx(-float(sampler_ll), rel=1e-5)
    batch = {"input_ids": x, "t_u": torch.rand(3, 4), "uniforms": torch.rand(3, 4, 16)}
    assert obj.is_bound is False and obj.likelihood is True
    torch.testing.assert_close(obj.eval_batch(model, batch).nll_sum, out.nll_sum)  # exact: draws ignored


def test_ar_objective_is_causal_and_a_bidirectional_model_would_peek(genome: Genome) -> None:
    x = real_windows(genome, 2, 32, start=900_000)
    obj = AutoRegressive(TOK.bos_id, TOK.pad_id)
    i = 19
    changed = x.clone()
    changed[:, i + 1:] = TOK.complement(x[:, i + 1:])  # every token after i differs
    with torch.no_grad():
        a, b = obj.token_nll(tiny("mamba", 2), x), obj.token_nll(tiny("mamba", 2), changed)
    torch.testing.assert_close(a[:, : i + 1], b[:, : i + 1], rtol=0, atol=1e-6)
    assert (a[:, i + 1:] - b[:, i + 1:]).abs().min() > 0
    # The same check with a bidirectional network (bypassing the guard) fails: the test can fail.
    bidir = tiny("bimamba", 2)
    bidir.causal = True
    with torch.no_grad():
        a, b = obj.token_nll(bidir, x), obj.token_nll(bidir, changed)
    assert (a[:, : i + 1] - b[:, : i + 1]).abs().max() > 1e-4


# --------------------------------------------------------------------------------------------- MLM
def test_mlm_rates_are_bert_rates_on_real_windows(genome: Genome) -> None:
    x = real_windows(genome, 64, 512, start=100_000, step=15_013)
    x[-1, 400:] = TOK.pad_id
    g = torch.Generator().manual_seed(11)
    u = torch.rand(x.shape, generator=g)
    obj = MaskedLM(TOK.mask_id, TOK.pad_id, list(TOK.nucleotide_ids))
    z, selected = obj.corrupt(x, u)
    real = x != TOK.pad_id
    n = int(real.sum())
    assert not bool(selected[~real].any()) and torch.equal(z[~selected], x[~selected])

    def within(count: int, total: int, p: float) -> None:
        se = math.sqrt(p * (1 - p) / total)
        assert abs(count / total - p) < 4 * se, (count / total, p, se)

    n_sel = int(selected.sum())
    within(n_sel, n, 0.15)
    zs, xs = z[selected], x[selected]
    masked = zs == TOK.mask_id
    replaced = ~masked & (zs != xs)
    within(int(masked.sum()), n_sel, 0.8)
    within(int(replaced.sum()), n_sel, 0.1 * 3 / 4)  # a random nucleotide equals the original 1 time in 4
    within(int((zs == xs).sum()), n_sel, 0.1 + 0.1 / 4)
    assert set(zs[replaced].tolist()) <= set(TOK.nucleotide_ids)
    counts = torch.bincount(zs[replaced], minlength=K)[list(TOK.nucleotide_ids)]
    assert int(counts.min()) > 0.15 * int(counts.sum())  # all four nucleotides used as replacements
    torch.testing.assert_close(obj.corrupt(x, u)[0], z)  # a pure function of the uniforms


def test_mlm_loss_is_cross_entropy_on_selected_and_uses_no_global_rng(genome: Genome) -> None:
    model = tiny("caduceus_ps", 3)
    x = real_windows(genome, 3, 64, start=1_500_000)
    u = torch.rand(x.shape)
    obj = build_objective({"name": "mlm", "model_arch": "caduceus_ps"}, TOK)
    batch = {"input_ids": x, "uniforms": u, "t_u": torch.rand(3)}
    state = torch.get_rng_state()
    with torch.no_grad():
        out = obj.batch_loss(model, batch)
    assert torch.equal(torch.get_rng_state(), state)
    z, selected = obj.corrupt(x, u)
    with torch.no_grad():
        log_p = torch.log_softmax(model(z).double(), -1)
    ref = -log_p.gather(-1, x[..., None])[..., 0][selected]
    assert int(out.n_tokens) == int(selected.sum()) > 0
    assert float(out.loss) == pytest.approx(float(ref.mean()), rel=1e-5)
    assert obj.likelihood is False and obj.is_bound is False


# -------------------------------------------------------------------------------------------- SEDD
class SubsNormalised(nn.Module):
    """Outputs log x_theta + log(K - 1): SEDD then reads s_y = alpha/(1 - alpha) * x_theta(y) (SUBS scores)."""

    def __init__(self, base: nn.Module) -> None:
        super().__init__()
        self.base = base

    def forward(self, z: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        logits = self.base(z).masked_fill(torch.arange(K) == TOK.mask_id, float("-inf"))
        return torch.log_softmax(logits, -1) + math.log(K - 1)


def test_sedd_equals_mdlm_for_subs_normalised_scores_and_exceeds_it_otherwise(genome: Genome) -> None:
    base = tiny("caduceus_ps", 4)
    x = real_windows(genome, 6, 48, start=1_100_000)
    batch = {"input_ids": x, "t_u": torch.linspace(0.05, 1.0, 6), "uniforms": torch.rand(6, 48),
             "position": torch.arange(6)}
    eval_batch = {"input_ids": x, "t_u": torch.rand(6, 3) * 0.99 + 0.01, "uniforms": torch.rand(6, 3, 48)}
    mdlm = build_objective({"name": "mdlm"}, TOK)
    sedd = build_objective({"name": "sedd", "model_arch": "caduceus_ps"}, TOK)
    with torch.no_grad():
        m, s = mdlm.batch_loss(base, batch), sedd.batch_loss(SubsNormalised(base), batch)
        torch.testing.assert_close(s.per_sequence, m.per_sequence, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(sedd.eval_batch(SubsNormalised(base), eval_batch).nll_sum,
                                   mdlm.eval_batch(base, eval_batch).nll_sum, rtol=1e-5, atol=1e-5)
        raw = sedd.batch_loss(base, batch)  # unnormalised scores: Z - 1 > log Z, so SEDD's bound is larger
    assert torch.all(raw.per_sequence > m.per_sequence)
    assert sedd.is_bound and sedd.likelihood


def _patterns(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    patterns = torch.tensor(list(itertools.product([0, 1], repeat=x.shape[-1])), dtype=torch.bool)
    z = torch.where(patterns, torch.full_like(x, TOK.mask_id).expand(len(patterns), -1), x.expand(len(patterns), -1))
    return patterns, z


def exact_sedd_bound(model: nn.Module, x: torch.Tensor, sched: LogLinearSchedule, t_min: float) -> float:
    """E_{t ~ U[t_min,1]} E_{z_t} sum_{masked l} sigma'(t) sum_{y != m} (s_y - r_y log s_y + r_y (log r_y - 1)).

    Written from the definition (scores s_y = exp(o_y) / (K-1) * alpha/(1-alpha), true ratios
    r_y = [y = x] alpha/(1-alpha), sigma' = -alpha'/alpha), exact over all mask patterns, Gauss-Legendre in t.
    """
    patterns, z = _patterns(x)
    with torch.no_grad():
        out = model(z).double()  # (P, L, K); the model is not time-conditioned
    real = [v for v in range(K) if v != TOK.mask_id]
    nodes, weights = np.polynomial.legendre.leggauss(300)
    t = torch.tensor(t_min + (1 - t_min) * (nodes + 1) / 2, dtype=torch.float64)
    w = torch.tensor(weights / 2, dtype=torch.float64)  # E over U[t_min, 1]
    total = torch.zeros((), dtype=torch.float64)
    onehot = nn.functional.one_hot(torch.tensor([real.index(int(v)) for v in x]), K - 1).double()  # (L, K-1)
    n = x.shape[-1]
    for tj, wj in zip(t, w):
        alpha, dalpha = sched.alpha(tj), sched.dalpha(tj)
        c = alpha / (1 - alpha)
        sigma_dot = -dalpha / alpha
        s = torch.exp(out[..., real]) / (K - 1) * c  # (P, L, K-1)
        r = c * onehot.expand_as(s)
        kr = torch.where(r > 0, r * (torch.log(r.clamp_min(1e-300)) - 1), torch.zeros_like(r))
        dse = (s - r * torch.log(s) + kr).sum(-1)  # (P, L)
        per_pattern = sigma_dot * (dse * patterns).sum(-1)
        k = patterns.sum(-1).double()
        prob = (1 - alpha) ** k * alpha ** (n - k)
        total += wj * (prob * per_pattern).sum()
    return float(total)


def test_sedd_monte_carlo_matches_exact_enumeration_on_real_octamer(genome: Genome) -> None:
    model = tiny("caduceus_ps", 6)
    x = real_windows(genome, 1, 8, start=1_700_000)[0]
    sched = LogLinearSchedule(1e-3)
    obj = SEDD(sched, TOK.mask_id, TOK.pad_id, t_min=1e-3)
    exact = exact_sedd_bound(model, x, sched, 1e-3)
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        est = torch.stack([obj.loss(model, x.expand(256, -1), generator=g).per_sequence.mean() for _ in range(8)])
    est = est.double()
    se = est.std() / math.sqrt(len(est))
    assert abs(float(est.mean()) - exact) < 4 * float(se) + 1e-6, (float(est.mean()), exact, float(se))
    # ... and the exact SEDD bound is above MDLM's for the same (unnormalised) network, as Z - 1 >= log Z.
    mdlm = MDLM(sched, TOK.mask_id, TOK.pad_id, t_min=1e-3)
    with torch.no_grad():
        m = torch.stack([mdlm.loss(model, x.expand(256, -1), generator=g).per_sequence.mean() for _ in range(8)])
    assert exact > float(m.double().mean())


# ------------------------------------------------------------------------------------ build errors
def test_build_objective_errors() -> None:
    with pytest.raises(ValueError, match=r"objective.name must be one of mdlm, sedd, ar, mlm; got 'plaid'"):
        build_objective({"name": "plaid"}, TOK)
    with pytest.raises(ValueError, match=r"objective=ar needs a causal model.*'caduceus_ps' is bidirectional"):
        build_objective({"name": "ar", "model_arch": "caduceus_ps"}, TOK)
    for name in ("sedd", "mlm"):
        with pytest.raises(ValueError, match=rf"objective={name} needs a bidirectional model.*'mamba' is causal"):
            build_objective({"name": name, "model_arch": "mamba"}, TOK)
    with pytest.raises(ValueError, match="select_prob"):
        build_objective({"name": "mlm", "select_prob": 1.5}, TOK)
    with pytest.raises(ValueError, match="objective=ar needs a causal model"):
        AutoRegressive(TOK.bos_id, TOK.pad_id).loss(tiny("bimamba", 0), TOK.encode_batch(["ACGT"]))
    assert set(OBJECTIVES) == {"mdlm", "sedd", "ar", "mlm"}


def make_cfg(out_dir: Path, fasta: Path, *overrides: str) -> dict:
    base = [f"out_dir={out_dir}", f"data.fasta={fasta}", "data.seq_len=128", "data.batch_size=8",
            "data.max_eval_windows=16", "data.eval_batch_size=16", "model.d_model=32", "model.n_layer=2",
            "model.scan_backend=torch", "trainer.enable_progress_bar=false", "trainer.log_every_n_steps=10",
            "eval.draws=2"]
    return OmegaConf.to_container(compose_config("pretrain", [*base, *overrides]), resolve=True)


def test_pretrain_refuses_ar_on_a_bidirectional_model_at_startup(tmp_path: Path, hg38_fasta: Path) -> None:
    from dnadiff.pretrain import run

    cfg = make_cfg(tmp_path, hg38_fasta, "objective=ar", "model=caduceus_ps")
    assert cfg["objective"]["model_arch"] == "caduceus_ps"
    with pytest.raises(ValueError) as err:
        run(cfg)
    msg = str(err.value)
    assert "\n" not in msg and "objective=ar" in msg and "caduceus_ps" in msg and "mamba" in msg
    assert not (tmp_path / "last.ckpt").exists()


# ------------------------------------------------------------------------------ learning, end to end
def _initial_figure(cfg: dict) -> float:
    """The validation figure (nats per scored token) of a freshly initialised model, as validation computes it."""
    from dnadiff.config import to_typed
    from dnadiff.data.datamodule import PretrainDataModule
    from dnadiff.train.config import PretrainConfig
    from dnadiff.train.module import LMModule

    typed = to_typed(cfg, PretrainConfig)
    torch.manual_seed(typed.seed)
    data = PretrainDataModule(typed.data, typed.seed, typed.trainer.max_steps, eval_draws=typed.eval.draws,
                              eval_seed=typed.eval.seed)
    module = LMModule(typed)
    nll, n = 0.0, 0.0
    with torch.no_grad():
        for batch in data.val_dataloader():
            out = module.objective.eval_batch(module.model.eval(), batch)
            nll, n = nll + float(out.nll_sum), n + float(out.n_tokens)
    return nll / n


@pytest.mark.parametrize(("objective", "model"), [("mdlm", "caduceus_ps"), ("sedd", "caduceus_ps"),
                                                  ("ar", "mamba"), ("mlm", "caduceus_ps")])
def test_every_objective_lowers_its_validation_figure_on_real_windows(
    tmp_path: Path, hg38_fasta: Path, objective: str, model: str
) -> None:
    from dnadiff.pretrain import run

    torch.set_num_threads(1)
    cfg = make_cfg(tmp_path, hg38_fasta, f"objective={objective}", f"model={model}", "trainer.max_steps=40",
                   "trainer.val_check_interval=40", "trainer.checkpoint_every=40", "optim.warmup_steps=10")
    before = _initial_figure(cfg)
    summary = run(cfg)
    after = summary["val_nats_per_token"] if summary["likelihood"] else summary["val_masked_token_ce_nats"]
    print(f"{objective} on {model}: validation {before:.4f} -> {after:.4f} nats/token "
          f"({before / math.log(2):.4f} -> {after / math.log(2):.4f} bits)")
    assert after < before - 0.25, (before, after)
