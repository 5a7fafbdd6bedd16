"""Intervals by a bootstrap over images (clusters), not over counterfactual rows.

The rows of a report group are not independent: one photo gives a row per texture, style image
and concept, and those rows tend to flip together. An interval that treats them as independent
says "100 % [75.8–100]" about one photo re-textured ten times. Here the unit of resampling is
the image: every statistic of the report is a ratio of per-image sums (flips / rows, correct /
labelled rows, Σ Δp / rows), so a resample is a vector of image multiplicities `w` and the
statistic is `(w · numerator) / (w · denominator)`, computed for all resamples at once as a
matrix product (`ClusterBootstrap.ratio`).

Contracts (tested in `tests/test_report_bootstrap.py`):
- the point estimate is the full-sample ratio; the interval is the percentile interval of the
  resampled ratios (95 %, `n_boot` resamples, seeded: the same inputs give the same interval);
- fewer than `MIN_IMAGES` images: NaN interval (one photo cannot say how photos vary);
- a proportion that is 0 or 1 in every image (no spread to resample) gets the Wilson interval
  with n = the number of images, so 0 of 10 photos reads (0, 27.8 %), never (0, 0);
- with one row per image it is the ordinary bootstrap (width ≈ 2 · 1.96 · √(p(1−p)/n)).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike

from pipeline.report.stats import NAN, NAN_ESTIMATE, Estimate, diff_proportions, wilson

N_BOOT = 2000
MIN_IMAGES = 2
CONFIDENCE = 0.95


class ClusterSums(NamedTuple):
    """Per-image sums of one statistic: `numerator / denominator` is the full-sample value."""

    numerator: np.ndarray
    denominator: np.ndarray


class ClusterBootstrap:
    """One set of image resamples shared by every statistic of a group (paired comparisons).

    `clusters` gives each row's image; the same multiplicity matrix serves the counterfactual
    and its controls, so a difference is resampled as a difference of the same photos.
    """

    def __init__(self, clusters: ArrayLike, n_boot: int = N_BOOT, seed: int = 0) -> None:
        codes, self.index = np.unique(np.asarray(clusters, dtype=object), return_inverse=True)
        self.n_clusters = len(codes)
        self.n_boot = n_boot
        if self.n_clusters >= MIN_IMAGES:
            rng = np.random.default_rng([seed, self.n_clusters])
            uniform = np.full(self.n_clusters, 1.0 / self.n_clusters)
            self.weights = rng.multinomial(self.n_clusters, uniform, size=n_boot).astype(float)
        else:
            self.weights = np.zeros((0, self.n_clusters))

    def sums(self, values: ArrayLike, counted: ArrayLike | None = None) -> ClusterSums:
        """Per-image Σ values and Σ counted (rows that count; NaN values count as absent)."""
        array = np.asarray(values, dtype=float).reshape(-1)
        mask = ~np.isnan(array)
        if counted is not None:
            mask &= np.asarray(counted, dtype=bool).reshape(-1)
        numerator = np.bincount(self.index, np.where(mask, array, 0.0), self.n_clusters)
        denominator = np.bincount(self.index, mask.astype(float), self.n_clusters)
        return ClusterSums(numerator, denominator)

    def _resampled(self, sums: ClusterSums) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return (self.weights @ sums.numerator) / (self.weights @ sums.denominator)

    def _interval(self, value: float, resampled: np.ndarray) -> Estimate:
        finite = resampled[np.isfinite(resampled)]
        if self.n_clusters < MIN_IMAGES or finite.size == 0:
            return Estimate(value, NAN, NAN)
        tail = 100 * (1 - CONFIDENCE) / 2
        low, high = np.percentile(finite, [tail, 100 - tail])
        return Estimate(value, float(low), float(high))

    def ratio(self, sums: ClusterSums, proportion: bool = False) -> Estimate:
        """Σ numerator / Σ denominator with its percentile interval over image resamples."""
        total = float(sums.denominator.sum())
        if total == 0:
            return NAN_ESTIMATE
        value = float(sums.numerator.sum()) / total
        if proportion and value in (0.0, 1.0):
            return _boundary(value, _images(sums))
        return self._interval(value, self._resampled(sums))

    def difference(self, a: ClusterSums, b: ClusterSums, proportions: bool = False) -> Estimate:
        """ratio(a) − ratio(b) on the same resampled images (a paired difference)."""
        if a.denominator.sum() == 0 or b.denominator.sum() == 0:
            return NAN_ESTIMATE
        value_a = float(a.numerator.sum() / a.denominator.sum())
        value_b = float(b.numerator.sum() / b.denominator.sum())
        if proportions and value_a in (0.0, 1.0) and value_b in (0.0, 1.0):
            # no spread in either: Newcombe's interval over images, not a zero-width one
            n_a, n_b = _images(a), _images(b)
            if min(n_a, n_b) < MIN_IMAGES:
                return Estimate(value_a - value_b, NAN, NAN)
            return diff_proportions(round(value_a * n_a), n_a, round(value_b * n_b), n_b)
        resampled = self._resampled(a) - self._resampled(b)
        return self._interval(value_a - value_b, resampled)


def _images(sums: ClusterSums) -> int:
    return int((sums.denominator > 0).sum())


def _boundary(value: float, n_images: int) -> Estimate:
    """A proportion of 0 or 1 in every image: the Wilson interval with n = the images."""
    if n_images < MIN_IMAGES:
        return Estimate(value, NAN, NAN)
    successes = round(value * n_images)
    return wilson(successes, n_images)


def wald_width(p: float, n: int) -> float:
    """Width of the normal-approximation 95 % interval of p over n independent rows."""
    return 2 * 1.959964 * math.sqrt(p * (1 - p) / n)
