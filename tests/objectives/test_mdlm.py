"""MDLM objective: schedules, SUBS, the continuous NELBO, the discrete bound L_T and the evaluation bound.

The estimators are checked against exact computations (:mod:`tests.exact`): for windows of L = 5
or 8 real bases every mask pattern is enumerated, so E_{z_t}[.] is a finite sum and the t-integral
a Gauss-Legendre quadrature, and the T-step model's likelihood p_T(x) is a dynamic programme. The
true statements about L_T are tested (SPEC section 4): -log p_T(x) <= L_T(x) for every x;
L_T -> the continuous bound as T grows; L_T >= the continuous bound in expectation over the data
(for the data's exact denoiser), not per sequence.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

import dnadiff
from dnadiff.data.genome import Genome
from dnadiff.objectives import build_objective
from dnadiff.objectives.mdlm import MDLM, forward_mask, masked_nll, sample_times, subs_log_probs
from dnadiff.objectives.schedules import LogLinearSchedule, NoiseSchedule, build_schedule
from dnadiff.tokenizer import Tokenizer
from tests.exact import BayesOracle, ExactBounds, kmer_distribution, neg_log_p_T

TOK = Tokenizer()
L = 8


def test_loglinear_weight_is_one_over_t_and_matches_generic_formula() -> None:
    sched = LogLinearSchedule(eps=1e-3)
    t = torch.linspace(1e-3, 1.0, 101, dtype=torch.float64)
    generic = NoiseSchedule.weight(sched, t)
    torch.testing.assert_close(sched.weight(t), 1.0 / t)
    torch.testing.assert_close(generic, 1.0 / t, rtol=1e-12, atol=0)


@pytest.mark.parametrize("name", ["loglinear", "cosine"])
def test_schedule_is_decreasing_with_correct_derivative(name: str) -> None:
    sched = build_schedule(name, 1e-3)
    t = torch.linspace(0.01, 0.99, 99, dtype=torch.float64)
    a = sched.alpha(t)
    assert torch.all(a[1:] < a[:-1])
    assert sched.alpha(torch.tensor(0.0, dtype=torch.float64)) > 0.99
    assert sched.alpha(torch.tensor(1.0, dtype=torch.float64)) < 0.01
    h = 1e-6
    numeric = (sched.alpha(t + h) - sched.alpha(t - h)) / (2 * h)
    torch.testing.assert_close(sched.dalpha(t), numeric, rtol=1e-6, atol=1e-8)
    with pytest.raises(ValueError, match="unknown noise schedule"):
        build_schedule("linear")


def test_antithetic_times_are_stratified() -> None:
    g = torch.Generator().manual_seed(0)
    t = sample_times(64, 1e-3, g)
    assert t.min() >= 1e-3 and t.max() <= 1.0
    bins = torch.histc(((t - 1e-3) / (1 - 1e-3)), bins=64, min=0, max=1)
    assert torch.all(bins == 1), "one time per stratum of width 1/B"


def test_forward_mask_rate_matches_alpha() -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.randint(7, 11, (4, 20000), generator=g)
    alpha = torch.tensor([0.9, 0.5, 0.2, 0.01])
    z = forward_mask(x, alpha, TOK.mask_id, generator=g)
    rate = (z == TOK.mask_id).float().mean(1)
    se = torch.sqrt(alpha * (1 - alpha) / x.shape[1])
    assert torch.all((rate - (1 - alpha)).abs() < 4 * se + 1e-6)
    assert torch.equal(z[z != TOK.mask_id], x[z != TOK.mask_id])


def test_subs_mask_logit_is_minus_inf_and_carry_over_holds() -> None:
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(3, 10, 12, generator=g)
    z = torch.randint(7, 11, (3, 10), generator=g)
    z[:, ::2] = TOK.mask_id
    logp = subs_log_probs(logits, z, TOK.mask_id)
    masked = z == TOK.mask_id
    assert torch.all(torch.isneginf(logp[..., TOK.mask_id]))
    torch.testing.assert_close(logp[masked].exp().sum(-1), torch.ones(int(masked.sum())))
    carried = logp[~masked].exp()
    torch.testing.assert_close(carried, nn.functional.one_hot(z[~masked], 12).float())


def test_unmasked_positions_contribute_exactly_zero_loss_and_gradient() -> None:
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(2, 16, 12, generator=g, requires_grad=True)
    x = torch.randint(7, 11, (2, 16), generator=g)
    z = x.clone()
    z[:, :5] = TOK.mask_id
    nll = masked_nll(logits, x, z, TOK.mask_id)
    assert torch.all(nll[:, 5:] == 0) and torch.all(nll[:, :5] > 0)
    nll.sum().backward()
    assert torch.all(logits.grad[:, 5:] == 0)
    ref = -torch.log_softmax(logits.detach().masked_fill(torch.arange(12) == TOK.mask_id, -1e30), -1)
    torch.testing.assert_close(nll[:, :5].detach(), ref[:, :5].gather(-1, x[:, :5, None]).squeeze(-1))


def test_loss_equals_independent_per_position_computation() -> None:
    torch.manual_seed(4)
    model = dnadiff.build_model("bimamba", d_model=16, n_layer=1, scan_backend="ref")
    obj = MDLM(LogLinearSchedule(1e-3), TOK.mask_id, TOK.pad_id)
    x = torch.randint(7, 11, (3, 12))
    t = torch.tensor([0.2, 0.5, 0.9])
    u = torch.rand(3, 12)
    out = obj.loss(model, x, t=t, uniforms=u)
    total = 0.0
    for b in range(3):
        z = x[b].clone()
        z[u[b] < t[b] * (1 - 1e-3)] = TOK.mask_id
        probs = torch.softmax(model(z[None])[0].masked_fill(torch.arange(12) == TOK.mask_id, float("-inf")), -1)
        for pos in range(12):
            if z[pos] == TOK.mask_id:
                total += (1.0 / t[b]) * -torch.log(probs[pos, x[b, pos]])
    torch.testing.assert_close(out.nll_sum, total.float() if torch.is_tensor(total) else torch.tensor(total))
    torch.testing.assert_close(out.loss, out.nll_sum / 36)


class _ContextOracle(nn.Module):
    """A z-dependent denoiser for one fixed x whose accuracy grows with the number of unmasked tokens."""

    def __init__(self, x: torch.Tensor) -> None:
        super().__init__()
        self.x = x

    def forward(self, z: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        n_clean = (z != TOK.mask_id).sum(-1, keepdim=True).float()
        p_true = 0.3 + 0.65 * n_clean / z.shape[-1]
        logits = torch.full((*z.shape, 12), -30.0)
        logits[..., 7:11] = torch.log((1 - p_true) / 3).unsqueeze(-1).expand(*z.shape, 4)
        logits.scatter_(-1, self.x.expand_as(z).unsqueeze(-1), torch.log(p_true).unsqueeze(-1).expand(*z.shape, 1))
        return logits


@pytest.fixture(scope="module")
def real_octamers(hg38_fasta) -> torch.Tensor:
    genome = Genome(hg38_fasta)
    seqs = [genome.fetch("chr2", s, s + L) for s in (500_000, 700_123, 1_250_777)]
    return TOK.encode_batch(seqs)


@pytest.fixture(scope="module")
def pentamer_oracle(hg38_fasta) -> BayesOracle:
    """The exact denoiser of the 5-mer distribution of 200 kb of real chr2 (a data distribution at L = 5)."""
    text = Genome(hg38_fasta).fetch("chr2", 1_000_000, 1_200_000)
    return BayesOracle(kmer_distribution(text, 5), 5)


SCHEDULES = [("loglinear", 0.0), ("loglinear", 0.05), ("cosine", 0.05)]


@pytest.mark.parametrize("name,eps", SCHEDULES)
def test_T_step_likelihood_is_bounded_by_L_T_exactly(name: str, eps: float, pentamer_oracle, real_octamers) -> None:
    """-log p_T(x) <= L_T(x) for every sequence, by exact enumeration (L = 5), prior and reconstruction included."""
    sched = build_schedule(name, eps)
    torch.manual_seed(9)
    caduceus = dnadiff.build_model("caduceus_ps", d_model=16, n_layer=1, scan_backend="ref").eval()
    xs = [real_octamers[i, :5] for i in range(3)] + [pentamer_oracle.seqs[j] for j in (0, 341, 1023)]
    for model in (pentamer_oracle, caduceus, _ContextOracle(xs[0])):
        for x in xs:
            exact = ExactBounds(model, x, sched)
            for steps in (1, 2, 3, 8):
                nll, bound = neg_log_p_T(model, x, sched, steps), exact.discrete(steps)
                assert nll <= bound + 1e-9, (type(model).__name__, name, eps, steps, nll, bound)
    # One step without a prior term is a factorised model whose bound is tight: the DP and L_T agree.
    if eps == 0.0 and name == "loglinear":
        x = xs[0]
        assert neg_log_p_T(caduceus, x, sched, 1) == pytest.approx(ExactBounds(caduceus, x, sched).discrete(1), rel=1e-9)


def test_L_T_converges_to_the_continuous_bound(real_octamers: torch.Tensor) -> None:
    torch.manual_seed(5)
    model = dnadiff.build_model("caduceus_ps", d_model=16, n_layer=1, scan_backend="ref").eval()
    for name, eps in SCHEDULES:
        sched = build_schedule(name, eps)
        for x in real_octamers:
            exact = ExactBounds(model, x, sched)
            cont = exact.nelbo()
            gaps = [abs(exact.discrete(T) - cont) for T in (4, 64, 2048)]
            assert gaps[0] > gaps[1] > gaps[2] and gaps[2] < 1e-3 * cont, (name, eps, gaps)


def test_L_T_exceeds_the_continuous_bound_in_expectation_on_data_but_not_per_sequence(pentamer_oracle) -> None:
    """For the data distribution's exact denoiser, E_x[L_T] >= E_x[NELBO] and E_x[L_T] falls as T doubles
    (the expected CE per masked token rises with t); per sequence the inequality fails for some x."""
    sched = LogLinearSchedule(eps=1e-3)
    p = pentamer_oracle.probs
    bounds = [ExactBounds(pentamer_oracle, x, sched) for x in pentamer_oracle.seqs]
    nelbo = torch.tensor([b.nelbo() for b in bounds], dtype=torch.float64)
    expected = float((p * nelbo).sum())
    entropy = float(-(p * p.log()).sum())
    # For the exact denoiser the continuous bound is tight in expectation (up to O(eps^2)) ...
    assert entropy - 1e-9 <= expected < entropy + 1e-5, (expected, entropy)
    # ... and only with its prior term: without it, the "bound" would fall below the entropy.
    prior = float((p * torch.tensor([b.prior() for b in bounds], dtype=torch.float64)).sum())
    assert prior > 1e-3 and expected - prior < entropy - 1e-3
    previous = math.inf
    violations = 0
    for steps in (1, 2, 4, 8, 16):
        disc = torch.tensor([b.discrete(steps) for b in bounds], dtype=torch.float64)
        e_disc = float((p * disc).sum())
        assert expected <= e_disc < previous, (steps, expected, e_disc, previous)
        previous = e_disc
        violations += int((disc < nelbo - 1e-9).sum())
    assert violations > 0, "expected per-sequence counterexamples to L_T >= NELBO at L = 5"


def test_prior_term_is_alpha_1_times_all_mask_cross_entropy(real_octamers: torch.Tensor) -> None:
    torch.manual_seed(10)
    model = dnadiff.build_model("caduceus_ps", d_model=16, n_layer=1, scan_backend="ref").eval()
    x = real_octamers
    with torch.no_grad():
        for eps in (1e-3, 0.05):
            obj = MDLM(LogLinearSchedule(eps), TOK.mask_id, TOK.pad_id)
            z = torch.full_like(x, TOK.mask_id)
            logp = torch.log_softmax(model(z).double()[..., [7, 8, 9, 10, 11, 0, 1, 2, 4, 5, 6]], -1)[..., :5]
            ce = -logp.gather(-1, (x - 7).unsqueeze(-1)).squeeze(-1).sum(-1)
            torch.testing.assert_close(obj.prior_term(model, x).double(), eps * ce, rtol=1e-5, atol=1e-6)
        assert torch.all(MDLM(build_schedule("cosine", 1e-3), TOK.mask_id, TOK.pad_id).prior_term(model, x) == 0)


def test_prior_term_runs_the_network_on_one_all_mask_row_in_eval_mode(real_octamers: torch.Tensor) -> None:
    """In eval mode, without pads or conditions, the network sees one all-mask row; the value
    equals the per-row computation. With a pad (rows' inputs differ) or in training mode every
    row is run."""
    torch.manual_seed(11)
    model = dnadiff.build_model("caduceus_ps", d_model=16, n_layer=1, scan_backend="ref")
    obj = MDLM(LogLinearSchedule(0.05), TOK.mask_id, TOK.pad_id)
    rows_seen: list[int] = []
    model.register_forward_pre_hook(lambda _m, args: rows_seen.append(args[0].shape[0]))
    x = real_octamers
    with torch.no_grad():
        full = obj.prior_term(model.train(), x)  # no dropout: train mode gives the same values
        assert rows_seen == [x.shape[0]]
        one = obj.prior_term(model.eval(), x)
        assert rows_seen[-1] == 1
        torch.testing.assert_close(one, full, rtol=1e-6, atol=1e-7)
        padded = x.clone()
        padded[0, -1] = TOK.pad_id
        obj.prior_term(model, padded)
        assert rows_seen[-1] == x.shape[0]


def _eval_batch(x: torch.Tensor, draws: int, n: int, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    u0 = torch.rand(n, 1, generator=g)
    t_u = (u0 + torch.arange(draws) / draws) % 1.0
    return {"input_ids": x.expand(n, -1), "t_u": t_u, "uniforms": torch.rand(n, draws, x.shape[-1], generator=g)}


@pytest.mark.parametrize("objective,schedule", [("mdlm", "loglinear"), ("mdlm", "cosine"), ("sedd", "loglinear")])
def test_evaluation_bound_matches_exact_expectation(objective: str, schedule: str, real_octamers) -> None:
    """eval_batch's mean over many windows = prior + int_{t_min}^1 + reconstruction at t_min, computed exactly."""
    torch.manual_seed(11)
    model = dnadiff.build_model("caduceus_ps", d_model=16, n_layer=1, scan_backend="ref").eval()
    sched = build_schedule(schedule, 1e-3)
    obj = build_objective({"name": objective, "schedule": schedule}, TOK)
    x = real_octamers[2]
    exact = ExactBounds(model, x, sched, objective)
    with torch.no_grad():
        outs = [obj.eval_batch(model, _eval_batch(x, 4, 512, seed)) for seed in range(8)]
    per_window = torch.cat([o.per_sequence for o in outs]).double()
    est, se = float(per_window.mean()), float(per_window.std() / math.sqrt(len(per_window)))
    target = exact.eval_bound(obj.t_min)
    assert abs(est - target) < 4 * se, (est, target, se)
    # the terms: the prior is exact (no noise), the reconstruction term is there for the cosine schedule
    terms = {k: torch.cat([o.terms[k] for o in outs]).double() for k in outs[0].terms}
    assert float(terms["prior"].mean()) == pytest.approx(exact.prior(), rel=1e-4, abs=1e-9)
    recon = float(exact.f(torch.tensor([obj.t_min], dtype=torch.float64)))
    assert abs(float(terms["reconstruction"].mean()) - recon) < 4 * float(terms["reconstruction"].std()) / math.sqrt(
        len(per_window)) + 1e-9
    if schedule == "cosine":
        assert recon > 1e-3 * target and exact.prior() == 0.0
    else:
        assert exact.prior() > 1e-4 * target


def test_eval_batch_averages_each_draws_own_noise(real_octamers: torch.Tensor) -> None:
    """Draw k uses its own (t_k, z_k); the window's figure is the mean over draws, not the sum or one draw."""
    torch.manual_seed(12)
    model = dnadiff.build_model("caduceus_ps", d_model=16, n_layer=1, scan_backend="ref").eval()
    obj = MDLM(LogLinearSchedule(1e-3), TOK.mask_id, TOK.pad_id)
    x = real_octamers
    batch = _eval_batch(x[0], 4, 3, 13)
    batch["input_ids"] = x
    with torch.no_grad():
        out = obj.eval_batch(model, batch)
        prior = obj.prior_term(model, x)
        per_draw = []
        for k in range(4):
            t = (1 - obj.t_min) * batch["t_u"][:, k] + obj.t_min
            u = batch["uniforms"][:, k]
            z = torch.where(u < (1 - obj.schedule.alpha(t)).unsqueeze(-1), TOK.mask_id, x)
            cont = (1 - obj.t_min) / t * masked_nll(model(z), x, z, TOK.mask_id).sum(-1)
            z0 = torch.where(u < (1 - obj.schedule.alpha(torch.tensor(obj.t_min))), TOK.mask_id, x)
            recon = masked_nll(model(z0), x, z0, TOK.mask_id).sum(-1)
            per_draw.append(cont + recon + prior)
    expected = torch.stack(per_draw, 1)
    torch.testing.assert_close(out.per_sequence, expected.mean(1), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.nll_sum, expected.mean(1).sum(), rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(out.per_draw.sort(1).values, expected.sort(1).values, rtol=1e-5, atol=1e-5)
    assert int(out.n_tokens) == x.numel()


def test_monte_carlo_nelbo_and_discrete_estimators_match_exact(real_octamers: torch.Tensor) -> None:
    torch.manual_seed(6)
    model = dnadiff.build_model("caduceus_ps", d_model=16, n_layer=1, scan_backend="ref").eval()
    for name in ("loglinear", "cosine"):
        sched = build_schedule(name, 1e-3)
        obj = MDLM(sched, TOK.mask_id, TOK.pad_id, t_min=1e-3)
        x = real_octamers[1]
        batch = x.expand(256, -1)
        g = torch.Generator().manual_seed(7)
        with torch.no_grad():
            cont = torch.stack([obj.loss(model, batch, generator=g).per_sequence.mean() for _ in range(8)]).double()
            disc = torch.cat([obj.discrete_loss(model, batch, 16, generator=g).per_sequence for _ in range(8)]).double()
        exact = ExactBounds(model, x, sched)
        # training loss: E_{t ~ U[t_min, 1]} of the weighted integrand (no end terms)
        exact_c = exact.integral(1e-3) / (1 - 1e-3)
        exact_d = exact.discrete(16)
        se_c = cont.std() / math.sqrt(len(cont))
        se_d = disc.std() / math.sqrt(len(disc))
        assert abs(cont.mean() - exact_c) < 4 * se_c + 1e-6, (name, float(cont.mean()), exact_c, float(se_c))
        assert abs(disc.mean() - exact_d) < 4 * se_d + 1e-6, (name, float(disc.mean()), exact_d, float(se_d))


def test_pad_tokens_are_never_masked_nor_counted() -> None:
    torch.manual_seed(8)
    model = dnadiff.build_model("bimamba", d_model=16, n_layer=1, scan_backend="ref")
    obj = MDLM(LogLinearSchedule(1e-3), TOK.mask_id, TOK.pad_id)
    x = TOK.encode_batch(["ACGTACGTAC", "ACG"])
    out = obj.loss(model, x, t=torch.tensor([0.99, 0.99]), uniforms=torch.zeros(2, 10))
    assert int(out.n_tokens) == 13
    assert out.per_sequence[1] > 0
