"""Edits compared as curves: the Pareto front of errors corrected against locality.

Every candidate of a method's grid is one point (locality, generalisation): locality the share
of held-out clean images whose top-1 is unchanged (a fraction), generalisation the errors
corrected on the test groups (percent). Both are better higher. A method is summarised by the
generalisation its front reaches at a locality threshold (0.99, 0.95), interpolated linearly
between neighbouring front points; a front that never reaches the threshold gives NaN, which
the comparison reports as a defect of the grid, not as a result.

Shared by the runner (:mod:`pipeline.editing.runner`) and the comparison report
(:mod:`pipeline.report.edits`, which must not import the editing package): numpy only.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pipeline.edit_stats import clipped_percent

NO_EDIT = (1.0, 0.0)  # (locality, errors corrected) of the unedited model
THRESHOLDS = (0.99, 0.95)
_EPS = 1e-12

Point = tuple[float, float]


def grid_defect(localities: Sequence[float], floor: float = 0.99) -> bool:
    """Whether a grid never made an edit small enough: every candidate's locality (a fraction;
    NaN: not measured) is below ``floor``. Such a front cannot be read at ``floor``.

    Args:
        localities: per candidate, the share of held-out clean images whose top-1 is unchanged.
        floor: the locality the weakest candidate must reach.
    """
    measured = [float(x) for x in localities if not math.isnan(float(x))]
    return bool(measured) and max(measured) < floor - _EPS


def front_indices(points: Sequence[Point]) -> list[int]:
    """Indices of the non-dominated points, by locality descending (no change → strong change).

    A point is dominated when another has locality and generalisation at least as high and one
    of them higher; of identical points the first is kept; points with a NaN are skipped.

    Args:
        points: (locality, generalisation) per candidate.
    """
    valid = [
        (i, float(loc), float(gen))
        for i, (loc, gen) in enumerate(points)
        if not (math.isnan(float(loc)) or math.isnan(float(gen)))
    ]
    # best locality first; among equal locality the best generalisation, then grid order
    valid.sort(key=lambda p: (-p[1], -p[2], p[0]))
    kept: list[int] = []
    best_gen = -math.inf
    for index, _loc, gen in valid:
        if gen > best_gen + _EPS:
            kept.append(index)
            best_gen = gen
    return kept


def pareto_front(points: Sequence[Point], include_no_edit: bool = False) -> list[Point]:
    """The upper envelope of ``points`` (locality descending, generalisation ascending).

    Args:
        points: (locality, generalisation) per candidate.
        include_no_edit: add the unedited model, :data:`NO_EDIT`, as a candidate.
    """
    candidates = [*points, NO_EDIT] if include_no_edit else list(points)
    return [(float(candidates[i][0]), float(candidates[i][1])) for i in front_indices(candidates)]


def at_locality(front: Sequence[Point], threshold: float) -> float:
    """Generalisation on ``front`` at locality ``threshold``, interpolated linearly between the
    two front points around it; the best point's when every point is at least that local; NaN
    when no point is (the grid never made an edit that small).

    Args:
        front: :func:`pareto_front` output (locality descending).
        threshold: the locality required, a fraction (0.99).
    """
    if not front or front[0][0] < threshold - _EPS:
        return math.nan
    for (loc_hi, gen_hi), (loc_lo, gen_lo) in itertools.pairwise(front):
        if loc_lo <= threshold <= loc_hi:
            if loc_hi - loc_lo < _EPS:
                return gen_lo
            return gen_hi + (gen_lo - gen_hi) * (loc_hi - threshold) / (loc_hi - loc_lo)
    return front[-1][1]


def front_margin(front: Sequence[Point], other: Sequence[Point], low: float = 0.95) -> float:
    """The least amount by which ``front`` lies above ``other`` at any locality from ``low`` to
    1 (generalisation points; negative: ``other`` is above somewhere). Both fronts are read with
    :func:`at_locality`, which is piecewise linear, so checking every front point's locality in
    the range (and ``low``) checks the whole range. NaN when neither reaches ``low``; where
    only ``other`` is undefined, ``front`` counts as above it by its own value, and where only
    ``front`` is, as not above (at most 0).

    Args:
        front: :func:`pareto_front` output of the method said to lie above.
        other: :func:`pareto_front` output of the method compared with.
        low: the lowest locality compared (a fraction).
    """
    levels = {low, *(loc for loc, _ in [*front, *other] if low <= loc <= 1.0)}
    margins = []
    for level in sorted(levels):
        mine, theirs = at_locality(front, level), at_locality(other, level)
        if math.isnan(mine) and math.isnan(theirs):
            continue
        if math.isnan(theirs):
            margins.append(mine)
        elif math.isnan(mine):  # no edit of the front is that local: never above there
            margins.append(min(0.0, -theirs))
        else:
            margins.append(mine - theirs)
    return min(margins) if margins else math.nan


def curve_points(unchanged: np.ndarray, err_pre: np.ndarray, err_post: np.ndarray) -> list[Point]:
    """One (locality, errors corrected) point per candidate from per-image outcomes.

    Args:
        unchanged: ``(C, n_clean)`` bool, per candidate whether each held-out clean image keeps
            its top-1.
        err_pre: ``(n_cf,)`` bool, per clean-correct counterfactual whether it is an error
            before any edit.
        err_post: ``(C, n_cf)`` bool, the same after each candidate's edit.
    """
    unchanged, err_post = np.atleast_2d(unchanged), np.atleast_2d(err_post)
    e_pre = int(np.asarray(err_pre, bool).sum())
    locality = unchanged.mean(1) if unchanged.shape[1] else np.full(len(unchanged), math.nan)
    return [
        (float(loc), clipped_percent(e_pre, int(post.sum())))
        for loc, post in zip(locality, err_post, strict=True)
    ]


@dataclass(frozen=True)
class Summary:
    """Errors corrected at a locality threshold, with its bootstrap interval over images."""

    threshold: float
    value: float
    low: float
    high: float

    @property
    def reached(self) -> bool:
        """Whether the front reaches the threshold (False: a grid defect)."""
        return not math.isnan(self.value)


def _resample_counts(flags: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``(C, B)`` counts of ``flags`` ``(C, n)`` under bootstrap weights ``(B, n)``."""
    return flags.astype(np.float64) @ weights.T.astype(np.float64)


def bootstrap_at_locality(
    unchanged: np.ndarray,
    err_pre: np.ndarray,
    err_post: np.ndarray,
    thresholds: Sequence[float] = THRESHOLDS,
    n_boot: int = 2000,
    seed: int = 0,
    include_no_edit: bool = False,
) -> list[Summary]:
    """Errors corrected at each locality threshold, with a 95 % bootstrap interval.

    Images are resampled, the same draw for every candidate (they are the same images): the
    held-out clean images and the counterfactuals independently. Each resample recomputes every
    candidate's point, the front and the interpolation. Resamples whose front misses the
    threshold are left out of the interval; with fewer than half reaching it the interval is
    NaN.

    Args:
        unchanged: ``(C, n_clean)`` bool (see :func:`curve_points`).
        err_pre: ``(n_cf,)`` bool.
        err_post: ``(C, n_cf)`` bool.
        thresholds: localities to read the front at (fractions).
        n_boot: resamples.
        seed: of the resampling.
        include_no_edit: add :data:`NO_EDIT` to every front.
    """
    unchanged = np.atleast_2d(np.asarray(unchanged, bool))
    err_pre = np.asarray(err_pre, bool).reshape(-1)
    err_post = np.atleast_2d(np.asarray(err_post, bool))
    if err_post.shape[1] != err_pre.size or unchanged.shape[0] != err_post.shape[0]:
        raise ValueError(
            f"shapes disagree: unchanged {unchanged.shape}, err_pre {err_pre.shape}, "
            f"err_post {err_post.shape}"
        )
    front = pareto_front(curve_points(unchanged, err_pre, err_post), include_no_edit)
    values = [at_locality(front, t) for t in thresholds]
    n_clean, n_cf = unchanged.shape[1], err_pre.size
    if not n_clean or not n_cf or not err_pre.any():
        return [Summary(t, v, math.nan, math.nan) for t, v in zip(thresholds, values, strict=True)]
    rng = np.random.default_rng(seed)
    draws = np.full((len(thresholds), n_boot), math.nan)
    chunk = 250
    for start in range(0, n_boot, chunk):
        size = min(chunk, n_boot - start)
        w_clean = rng.multinomial(n_clean, np.full(n_clean, 1.0 / n_clean), size=size)
        w_cf = rng.multinomial(n_cf, np.full(n_cf, 1.0 / n_cf), size=size)
        locality = _resample_counts(unchanged, w_clean) / n_clean  # (C, size)
        e_pre = w_cf @ err_pre.astype(np.float64)  # (size,)
        e_post = _resample_counts(err_post, w_cf)  # (C, size)
        for b in range(size):
            points = [
                (float(locality[c, b]), clipped_percent(float(e_pre[b]), float(e_post[c, b])))
                for c in range(len(unchanged))
            ]
            resampled = pareto_front(points, include_no_edit)
            for t, threshold in enumerate(thresholds):
                draws[t, start + b] = at_locality(resampled, threshold)
    out = []
    for t, threshold in enumerate(thresholds):
        finite = draws[t][~np.isnan(draws[t])]
        if math.isnan(values[t]) or finite.size < n_boot / 2:
            out.append(Summary(threshold, values[t], math.nan, math.nan))
            continue
        low, high = np.percentile(finite, [2.5, 97.5])
        out.append(Summary(threshold, values[t], float(low), float(high)))
    return out
