"""95 % intervals for the counts the benchmarks print (enrolled words, the second judge)."""

from __future__ import annotations

import math

from scipy.stats import beta, chi2

Z95 = 1.959963984540054


def wilson_interval(successes: int, trials: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion (as fractions); (0, 1) with no trials."""
    if trials <= 0:
        return 0.0, 1.0
    p = successes / trials
    denom = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denom
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def poisson_interval(count: int, alpha: float = 0.05) -> tuple[float, float]:
    """Exact (Garwood) interval of a Poisson count."""
    lo = 0.0 if count == 0 else float(chi2.ppf(alpha / 2, 2 * count)) / 2
    hi = float(chi2.ppf(1 - alpha / 2, 2 * count + 2)) / 2
    return lo, hi


def exact_proportion_interval(successes: int, trials: int, alpha: float = 0.05) -> tuple[float, float]:
    """Exact (Clopper-Pearson) interval of a proportion (as fractions)."""
    lo = 0.0 if successes == 0 else float(beta.ppf(alpha / 2, successes, trials - successes + 1))
    hi = 1.0 if successes == trials else float(beta.ppf(1 - alpha / 2, successes + 1, trials - successes))
    return lo, hi
