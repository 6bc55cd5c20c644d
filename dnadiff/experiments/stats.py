"""Intervals for the experiment tables: Wilson score intervals for rates, standard errors for means."""

from __future__ import annotations

import math

import numpy as np

Z95 = 1.959963984540054


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval (95% by default) of a binomial proportion successes / n."""
    if n <= 0:
        return float("nan"), float("nan")
    p = successes / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    lo = 0.0 if successes == 0 else max(0.0, centre - half)  # exact ends (no rounding residue)
    hi = 1.0 if successes == n else min(1.0, centre + half)
    return lo, hi


def mean_se(values: np.ndarray) -> tuple[float, float]:
    """Mean and its standard error (NaN for fewer than two values)."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return float("nan"), float("nan")
    if values.size == 1:
        return float(values[0]), float("nan")
    return float(values.mean()), float(values.std(ddof=1) / math.sqrt(values.size))


def interpolate_log(x: float, xs: list[float], ys: list[float]) -> float:
    """ys at x by linear interpolation in log x (clamped to the ends); xs must be increasing."""
    if not xs:
        return float("nan")
    lx = np.log(np.maximum(np.asarray(xs, dtype=np.float64), 1e-12))
    return float(np.interp(math.log(max(x, 1e-12)), lx, np.asarray(ys, dtype=np.float64)))


def paired_interval(a: list[float], b: list[float], level: float = 0.95) -> dict[str, float]:
    """Mean of a - b over paired runs (the same folds or seeds) with its Student-t interval."""
    from scipy import stats

    diff = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    mean, se = mean_se(diff)
    half = float(stats.t.ppf(0.5 + level / 2, diff.size - 1)) * se if diff.size > 1 else float("nan")
    return {"mean": mean, "se": se, "lo": mean - half, "hi": mean + half, "n": int(diff.size), "level": level}
