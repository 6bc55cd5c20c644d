"""The HG38 table's statistics: the paired PPL-ratio intervals cover at their nominal rate.

The per-window differences are simulated from a two-way random-effects model with known parts
(training seed, test window, cell noise as Monte Carlo noise): the intervals must cover the true
log ratio about 95% of the time, and the estimated variance must match the true variance of the
estimate (within the upward bias of truncating the seed part at zero). The table's verdict says "unresolved" exactly when the interval contains 1.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from dnadiff.experiments.hg38_table import markdown, paired_ratio, summarise

TOKENS = 256


def simulated_runs(rng: np.random.Generator, mu: float, seeds: int, windows: int, sd_seed: float, sd_window: float,
                   sd_cell: float) -> list[dict]:
    """Runs of 'mdlm' and 'ar' whose per-token differences are mu + a_s + b_w + e_sw."""
    a = rng.normal(0, sd_seed, seeds)
    b = rng.normal(0, sd_window, windows)
    base = rng.normal(1.3, 0.05, windows)  # AR's own per-window NLL per token (cancels in the pairing)
    runs = []
    for s in range(seeds):
        e = rng.normal(0, sd_cell, windows)
        for obj, value in (("ar", base), ("mdlm", base + mu + a[s] + b + e)):
            runs.append({"objective": obj, "seed": s, "window_nll": list(value * TOKENS),
                         "window_tokens": [TOKENS] * windows})
    return runs


@pytest.mark.parametrize("seeds,parts", [(3, (0.002, 0.01, 0.03)), (4, (0.004, 0.002, 0.01)), (1, (0.0, 0.01, 0.03))])
def test_paired_ratio_intervals_cover_at_the_nominal_rate(seeds: int, parts: tuple[float, float, float]) -> None:
    rng = np.random.default_rng(seeds)
    mu, windows, reps = -0.003, 60, 1500
    sd_seed, sd_window, sd_cell = parts
    true_var = sd_seed**2 / seeds + sd_window**2 / windows + sd_cell**2 / (seeds * windows)
    covered, var_est, estimates = 0, [], []
    for _ in range(reps):
        r = paired_ratio(simulated_runs(rng, mu, seeds, windows, *parts), "mdlm", "ar")
        lo, hi = (math.log(v) for v in r["ci"])
        covered += lo <= mu <= hi
        var_est.append(r["log_ratio_se"] ** 2)
        estimates.append(r["log_ratio"])
        assert r["ratio"] == pytest.approx(math.exp(r["log_ratio"]))
    assert 0.92 <= covered / reps <= 0.985, covered / reps
    assert np.var(estimates) == pytest.approx(true_var, rel=0.12)
    # unbiased but for the truncation at zero of the seed part (which errs on the large side)
    assert 0.92 * true_var < np.mean(var_est) < (1.3 if seeds > 1 else 1.08) * true_var, (np.mean(var_est), true_var)


def test_verdict_and_table_say_unresolved_when_the_interval_contains_one() -> None:
    rng = np.random.default_rng(0)
    clear = paired_ratio(simulated_runs(rng, -0.05, 3, 60, 0.001, 0.001, 0.001), "mdlm", "ar")
    tie = paired_ratio(simulated_runs(rng, 0.0, 3, 60, 0.002, 0.01, 0.03), "mdlm", "ar")
    assert clear["ci"][1] < 1 and clear["verdict"] == "mdlm's NLL below ar's NLL (mdlm has the higher likelihood)"
    assert tie["ci"][0] <= 1 <= tie["ci"][1] and tie["verdict"].startswith("unresolved")
    with pytest.raises(ValueError, match="same windows"):
        runs = simulated_runs(rng, 0.0, 1, 10, 0, 0, 0.01)
        runs[0]["window_tokens"] = [TOKENS - 1] * 10
        paired_ratio(runs, "mdlm", "ar")


def test_a_bound_above_an_exact_nll_ranks_only_the_bound() -> None:
    from dnadiff.experiments.hg38_table import ratio_verdict

    assert ratio_verdict("mdlm", "ar", [1.005, 1.012], True, False) == (
        "ar's NLL below mdlm's bound (no ranking of the likelihoods: mdlm's is only bounded)")
    assert ratio_verdict("mdlm", "ar", [0.990, 0.995], True, False) == "mdlm's bound below ar's NLL (mdlm has the higher likelihood)"
    assert ratio_verdict("sedd", "mdlm", [0.990, 0.995], True, True).endswith("(no ranking of the likelihoods: both are bounds)")
    assert ratio_verdict("sedd", "mdlm", [0.990, 1.001], True, True) == "unresolved (interval contains 1)"


def test_markdown_reports_intervals_and_verdicts() -> None:
    rng = np.random.default_rng(1)
    runs = simulated_runs(rng, 0.0, 2, 30, 0.002, 0.01, 0.03)
    for r in runs:
        bound = r["objective"] == "mdlm"
        nats = sum(r["window_nll"]) / sum(r["window_tokens"])
        r.update({"model": "m", "params": 1, "train_tokens": 1, "eval_seed": 7, "is_bound": bound, "likelihood": True,
                  "test_ppl": math.exp(nats), "test_bits_per_base": nats / math.log(2), "test_nats_per_token": nats,
                  "test_stderr": 0.001, "test_mc_stderr": 0.0008 if bound else None, "test_windows": 30,
                  "bound_terms_nats_per_token": {"diffusion": nats, "prior": 0.0014, "reconstruction": 0.0012}
                  if bound else None})
    result = {"setup": {"data": "d", "seq_len": 256, "steps": 1, "batch_size": 1, "seeds": [0, 1], "draws": 8,
                        "command": "c", "total_minutes": 1.0, "threads": 1, "caduceus_ps": {"d_model": 1, "n_layer": 1},
                        "mamba": {"d_model": 1, "n_layer": 1}, "lr": 1.0},
              "runs": runs, "summary": summarise(runs), "paper_mdlm_over_ar": 1.0, "paper_sedd_over_ar": 1.0}
    text = markdown(result)
    ratio = result["summary"]["ratios"]["mdlm_over_ar_ppl"]
    assert f"| mdlm/ar | {ratio['ratio']:.4f} [{ratio['ci'][0]:.4f}, {ratio['ci'][1]:.4f}]" in text
    assert ratio["verdict"] in text and "0.0014 + 0.0012" in text
