"""Errors corrected as the paper reports it: clipped at −100 %, pooled over images.

Shared by the edit metrics (:mod:`pipeline.editing.metrics`) and the comparison report
(:mod:`pipeline.report.edits`, which must not import the editing package): numpy only.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def parse_bits(text: str) -> tuple[np.ndarray, np.ndarray]:
    """(error before, error after) flags from a results row's ``err_bits`` ("01 10 ...")."""
    pairs = [p for p in str(text or "").split() if len(p) == 2]
    pre = np.array([p[0] == "1" for p in pairs], dtype=bool)
    post = np.array([p[1] == "1" for p in pairs], dtype=bool)
    return pre, post


def clipped_percent(e_pre: float, e_post: float) -> float:
    """``100·(E_pre − E_post)/E_pre`` clipped at −100; NaN when ``E_pre = 0``."""
    if e_pre <= 0:
        return math.nan
    return max(-100.0, 100.0 * (e_pre - e_post) / e_pre)


def pooled_errors_corrected(
    e_pre_flags: Any, e_post_flags: Any, n_boot: int = 2000, seed: int = 0
) -> tuple[float, float, float]:
    """Pooled errors corrected over images and its 95% bootstrap interval (resampling images).

    ``e_pre_flags`` / ``e_post_flags``: per image (of the clean-correct ones) whether the
    counterfactual is an error before / after. Returns (percent, low, high); NaN without errors.
    """
    pre, post = (
        np.asarray(e_pre_flags, dtype=bool).reshape(-1),
        np.asarray(e_post_flags, dtype=bool).reshape(-1),
    )
    if pre.shape != post.shape:
        raise ValueError(f"flags differ in length: {pre.size} and {post.size}")
    value = clipped_percent(int(pre.sum()), int(post.sum()))
    if not pre.any():
        return math.nan, math.nan, math.nan
    rng = np.random.default_rng(seed)
    index = rng.integers(0, pre.size, size=(n_boot, pre.size))
    e_pre = pre[index].sum(1).astype(float)
    e_post = post[index].sum(1).astype(float)
    ok = e_pre > 0
    boot = np.maximum(-100.0, 100.0 * (e_pre[ok] - e_post[ok]) / e_pre[ok])
    low, high = np.percentile(boot, [2.5, 97.5])
    return value, float(low), float(high)
