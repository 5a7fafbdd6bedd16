"""Small, exact statistics for the sensitivity report: proportions, means and their differences.

Every estimate is an `Estimate(value, low, high)` (a named tuple, so `p, low, high = ...` works).
Nothing to measure (n = 0) gives NaN everywhere, never 0: "no data" must not read as "never".
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike

Z95 = 1.959964  # two-sided 95% standard normal quantile
NAN = math.nan


class Estimate(NamedTuple):
    """A point estimate with its 95% interval."""

    value: float
    low: float
    high: float


NAN_ESTIMATE = Estimate(NAN, NAN, NAN)


def wilson(successes: int, n: int, z: float = Z95) -> Estimate:
    """Wilson score interval of a proportion (Wilson 1927; Newcombe 1998, method 3).

    Unlike the Wald interval it stays inside [0, 1] and is not degenerate at 0/n or n/n:
    `wilson(0, 10)` is (0, 0, 0.278) and `wilson(10, 10)` is (1, 0.722, 1).
    """
    if n < 0 or successes < 0 or successes > n:
        raise ValueError(f"need 0 <= successes <= n, got {successes} of {n}")
    if n == 0:
        return NAN_ESTIMATE
    p = successes / n
    z2 = z * z
    denominator = 1.0 + z2 / n
    centre = (p + z2 / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denominator
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return Estimate(p, low, high)


def mean_interval(values: ArrayLike, confidence: float = 0.95) -> Estimate:
    """Mean with a Student-t interval (NaN values are dropped).

    n = 0 gives NaN throughout; n = 1 gives the value with a NaN interval (no spread to measure);
    identical values give a zero-width interval.
    """
    array = np.asarray(values, dtype=float).reshape(-1)
    array = array[~np.isnan(array)]
    n = array.size
    if n == 0:
        return NAN_ESTIMATE
    mean = float(array.mean())
    if n == 1:
        return Estimate(mean, NAN, NAN)
    from scipy.stats import t

    half = float(t.ppf(0.5 + confidence / 2, n - 1)) * float(array.std(ddof=1)) / math.sqrt(n)
    return Estimate(mean, mean - half, mean + half)


def diff_proportions(
    successes_a: int, n_a: int, successes_b: int, n_b: int, z: float = Z95
) -> Estimate:
    """`p_a − p_b` with Newcombe's hybrid score interval (Newcombe 1998, method 10).

    Built from the two Wilson intervals, so it behaves at 0 and 1 where the Wald interval does
    not. It treats the two proportions as independent; for paired data with positive
    correlation (a concept and its control in the same images) it is conservative (too wide).
    """
    if n_a == 0 or n_b == 0:
        return NAN_ESTIMATE
    p_a, low_a, high_a = wilson(successes_a, n_a, z)
    p_b, low_b, high_b = wilson(successes_b, n_b, z)
    difference = p_a - p_b
    low = difference - math.sqrt((p_a - low_a) ** 2 + (high_b - p_b) ** 2)
    high = difference + math.sqrt((high_a - p_a) ** 2 + (p_b - low_b) ** 2)
    return Estimate(difference, max(-1.0, low), min(1.0, high))
