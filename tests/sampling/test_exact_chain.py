"""The ancestral samplers (plain and cached) against the exact chain of a z-dependent denoiser.

The denoiser is the exact Bayes posterior (:class:`tests.exact.BayesOracle`) of a strongly
dependent distribution over L = 3 sequences, so x_theta changes with every token unmasked: a
sampler that feeds the network the wrong z (all-mask, a stale z, another row's z) draws from
another distribution. The reference is the sampler's chain (SPEC section 6) computed exactly over
all 5^L states (:func:`tests.exact.chain_distribution`); the sampler's output histogram is compared
with it by a chi-square test.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from scipy import stats

from dnadiff.objectives.schedules import build_schedule
from dnadiff.sampling import Denoiser, all_mask, ancestral_sample, make_generator
from tests.exact import ACGT, MASK, BayesOracle, chain_distribution

LENGTH, STEPS, SAMPLES = 3, 4, 20_000
MOTIFS = {(7, 8, 9): 0.2, (10, 10, 7): 0.2, (9, 9, 9): 0.15, (8, 7, 10): 0.15}  # ACG, TTA, GGG, CAT


def motif_oracle() -> BayesOracle:
    """p = 0.7 on four motifs + 0.3 uniform over the 64 sequences: every position depends on the others."""
    seqs = list(itertools.product(ACGT, repeat=LENGTH))
    probs = torch.tensor([0.3 / len(seqs) + MOTIFS.get(s, 0.0) for s in seqs], dtype=torch.float64)
    return BayesOracle(probs, LENGTH)


def histogram(ids: torch.Tensor) -> dict[tuple[int, ...], int]:
    keys, counts = torch.unique(ids, dim=0, return_counts=True)
    return {tuple(int(v) for v in k): int(c) for k, c in zip(keys, counts)}


def chi_square_pvalue(observed: dict[tuple[int, ...], int], expected: dict[tuple[int, ...], float], n: int) -> float:
    """Pearson chi-square over the outcomes, cells with expected count < 5 pooled into one."""
    keys = sorted(set(expected) | set(observed))
    exp = np.array([expected.get(k, 0.0) * n for k in keys])
    obs = np.array([observed.get(k, 0) for k in keys], dtype=float)
    small = exp < 5
    exp = np.append(exp[~small], exp[small].sum())
    obs = np.append(obs[~small], obs[small].sum())
    if exp[-1] == 0:
        exp, obs = exp[:-1], obs[:-1]
    assert obs.sum() == n
    return float(stats.chisquare(obs, exp * n / exp.sum()).pvalue)


def context_free_distribution(oracle: BayesOracle) -> dict[tuple[int, ...], float]:
    """What a sampler that never shows the network the unmasked tokens would draw: the product of
    x_theta(all-mask)'s marginals."""
    marg = oracle.conditionals(torch.full((1, LENGTH), MASK))[0]
    return {s: float(np.prod([marg[i, v] for i, v in enumerate(s)])) for s in itertools.product(ACGT, repeat=LENGTH)}


def test_the_oracle_chain_is_context_dependent() -> None:
    """The test below has power: the exact chain is far from what a context-free sampler draws."""
    oracle = motif_oracle()
    exact = chain_distribution(oracle, build_schedule("loglinear"), STEPS)
    assert sum(exact.values()) == pytest.approx(1.0, abs=1e-12)
    assert all(len(k) == LENGTH and MASK not in k for k in exact)
    free = context_free_distribution(oracle)
    tv = 0.5 * sum(abs(exact.get(k, 0.0) - free.get(k, 0.0)) for k in set(exact) | set(free))
    assert tv > 0.25, tv
    # and more steps bring the chain closer to the data distribution itself (sequential unmasking)
    data = {tuple(int(v) for v in s): float(p) for s, p in zip(oracle.seqs, oracle.probs)}
    fine = chain_distribution(oracle, build_schedule("loglinear"), 64)
    tv_data = [0.5 * sum(abs(d.get(k, 0.0) - data[k]) for k in data) for d in (exact, fine)]
    assert tv_data[1] < tv_data[0], tv_data


@pytest.mark.parametrize("schedule", ["loglinear", "cosine"])
@pytest.mark.parametrize("cache", [False, True], ids=["ancestral", "cached"])
def test_sampler_output_matches_the_exact_chain(cache: bool, schedule: str) -> None:
    oracle = motif_oracle()
    sched = build_schedule(schedule)
    exact = chain_distribution(oracle, sched, STEPS)
    out = ancestral_sample(Denoiser(oracle, MASK), all_mask(SAMPLES, LENGTH, MASK), STEPS, sched, MASK,
                           cache=cache, generator=make_generator(21, "cpu"))
    assert not (out.ids == MASK).any()
    observed = histogram(out.ids)
    p = chi_square_pvalue(observed, exact, SAMPLES)
    assert p > 1e-4, (p, sorted(observed.items(), key=lambda kv: -kv[1])[:6])
    # the same samples are nowhere near the context-free distribution
    assert chi_square_pvalue(observed, context_free_distribution(oracle), SAMPLES) < 1e-12
    if cache:
        assert int(out.nfe_per_sequence.max()) <= min(STEPS, LENGTH) and oracle.calls == out.nfe
