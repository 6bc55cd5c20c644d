"""MDLM objective: schedules, SUBS, the continuous NELBO and the discrete bound L_T.

The NELBO is checked against an exact computation: for windows of L = 8 real bases we enumerate
all 2^L mask patterns, so E_{z_t}[.] is a finite sum and the t-integral a Gauss-Legendre quadrature.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn as nn

import dnadiff
from dnadiff.data.genome import Genome
from dnadiff.objectives.mdlm import MDLM, forward_mask, masked_nll, sample_times, subs_log_probs
from dnadiff.objectives.schedules import LogLinearSchedule, NoiseSchedule, build_schedule
from dnadiff.tokenizer import Tokenizer

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
    """A denoiser for one fixed x whose accuracy grows with the number of unmasked tokens.

    Its per-masked-token loss then increases with t, which is when L_T >= NELBO provably holds.
    """

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


def _pattern_nll(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(number masked, summed masked NLL) for every one of the 2^L mask patterns of x."""
    patterns = torch.tensor(list(itertools.product([0, 1], repeat=x.shape[-1])), dtype=torch.bool)
    z = torch.where(patterns, torch.full_like(x, TOK.mask_id).expand(len(patterns), -1), x.expand(len(patterns), -1))
    with torch.no_grad():
        nll = masked_nll(model(z), x.expand_as(z), z, TOK.mask_id).double().sum(-1)
    return patterns.sum(-1).double(), nll


def _expected_masked_nll(k: torch.Tensor, nll: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """E_{z_t}[sum masked NLL] at each alpha, exactly (finite sum over patterns)."""
    n = 8
    p = (1 - alpha[:, None]) ** k[None] * alpha[:, None] ** (n - k[None])
    return (p * nll[None]).sum(-1)


def exact_nelbo(model: nn.Module, x: torch.Tensor, sched: NoiseSchedule, t_min: float) -> float:
    k, nll = _pattern_nll(model, x)
    nodes, weights = np.polynomial.legendre.leggauss(400)
    t = torch.tensor(t_min + (1 - t_min) * (nodes + 1) / 2, dtype=torch.float64)
    w = torch.tensor(weights * (1 - t_min) / 2, dtype=torch.float64)
    f = _expected_masked_nll(k, nll, sched.alpha(t))
    # E over t ~ U[t_min, 1] of the weighted integrand (the training estimator's expectation).
    return float((w * sched.weight(t) * f).sum() / (1 - t_min))


def exact_discrete(model: nn.Module, x: torch.Tensor, sched: NoiseSchedule, num_steps: int) -> float:
    k, nll = _pattern_nll(model, x)
    i = torch.arange(1, num_steps + 1, dtype=torch.float64)
    t, s = i / num_steps, (i - 1) / num_steps
    a_t, a_s = sched.alpha(t), sched.alpha(s)
    return float(((a_s - a_t) / (1 - a_t) * _expected_masked_nll(k, nll, a_t)).sum())


@pytest.fixture(scope="module")
def real_octamers(hg38_fasta) -> torch.Tensor:
    genome = Genome(hg38_fasta)
    seqs = [genome.fetch("chr2", s, s + L) for s in (500_000, 700_123, 1_250_777)]
    return TOK.encode_batch(seqs)


def test_discrete_bound_decreases_to_continuous_nelbo(real_octamers: torch.Tensor) -> None:
    sched = LogLinearSchedule(eps=0.0)
    x = real_octamers[0]
    oracle = _ContextOracle(x)
    cont = exact_nelbo(oracle, x, sched, t_min=0.0)
    bounds = [exact_discrete(oracle, x, sched, T) for T in (1, 2, 4, 16, 128, 1024)]
    assert all(b >= cont - 1e-9 for b in bounds), (bounds, cont)
    assert all(b1 >= b2 for b1, b2 in zip(bounds, bounds[1:])), bounds
    assert bounds[-1] - cont < 1e-2 * cont and bounds[0] - cont > 0.05 * cont


def test_discrete_bound_converges_for_random_caduceus_on_real_windows(real_octamers: torch.Tensor) -> None:
    torch.manual_seed(5)
    model = dnadiff.build_model("caduceus_ps", d_model=16, n_layer=1, scan_backend="ref").eval()
    sched = LogLinearSchedule(eps=0.0)
    for x in real_octamers:
        cont = exact_nelbo(model, x, sched, t_min=0.0)
        gaps = [abs(exact_discrete(model, x, sched, T) - cont) for T in (4, 64, 2048)]
        assert gaps[2] < gaps[0] and gaps[2] < 1e-3 * cont, gaps


def test_monte_carlo_nelbo_and_discrete_estimators_match_exact(real_octamers: torch.Tensor) -> None:
    torch.manual_seed(6)
    model = dnadiff.build_model("caduceus_ps", d_model=16, n_layer=1, scan_backend="ref").eval()
    sched = LogLinearSchedule(eps=1e-3)
    obj = MDLM(sched, TOK.mask_id, TOK.pad_id, t_min=1e-3)
    x = real_octamers[1]
    batch = x.expand(256, -1)
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        cont = torch.stack([obj.loss(model, batch, generator=g).per_sequence.mean() for _ in range(8)]).double()
        disc = torch.cat([obj.discrete_loss(model, batch, 16, generator=g).per_sequence for _ in range(8)]).double()
    exact_c = exact_nelbo(model, x, sched, t_min=1e-3)
    exact_d = exact_discrete(model, x, sched, 16)
    se_c = cont.std() / math.sqrt(len(cont))
    se_d = disc.std() / math.sqrt(len(disc))
    assert abs(cont.mean() - exact_c) < 4 * se_c + 1e-6, (float(cont.mean()), exact_c, float(se_c))
    assert abs(disc.mean() - exact_d) < 4 * se_d + 1e-6, (float(disc.mean()), exact_d, float(se_d))


def test_pad_tokens_are_never_masked_nor_counted() -> None:
    torch.manual_seed(8)
    model = dnadiff.build_model("bimamba", d_model=16, n_layer=1, scan_backend="ref")
    obj = MDLM(LogLinearSchedule(1e-3), TOK.mask_id, TOK.pad_id)
    x = TOK.encode_batch(["ACGTACGTAC", "ACG"])
    out = obj.loss(model, x, t=torch.tensor([0.99, 0.99]), uniforms=torch.zeros(2, 10))
    assert int(out.n_tokens) == 13
    assert out.per_sequence[1] > 0
