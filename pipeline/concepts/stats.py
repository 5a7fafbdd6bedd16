"""The statistics that say whether to trust a concept score, as small pure functions.

- `significance`: concept scores over random runs against random-concept scores (two-sided
  Welch t-test) — a score is only meaningful where it differs from what a random direction gets;
- `adjust`: the multiple-comparison correction over every test of one report;
- `cross_layer_consistency`: whether two layers rank the (class, concept) pairs alike;
- `agreement`: whether TCAV and the counterfactual texture effects rank the pairs alike.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from itertools import combinations

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats


def significance(scores: Sequence[float], random_scores: Sequence[float]) -> float:
    """Two-sided p-value of a Welch t-test between concept and random-concept scores.

    Args:
        scores: the concept's TCAV score per random run.
        random_scores: a random concept's TCAV score per random run.

    Returns:
        The p-value; 1.0 when both samples are constant and equal, 0.0 when they are constant
        and different (the t statistic is infinite), NaN with fewer than two of either.
    """
    a, b = np.asarray(scores, float), np.asarray(random_scores, float)
    if len(a) < 2 or len(b) < 2:
        return float("nan")
    if a.std() == 0 and b.std() == 0:
        return 1.0 if a.mean() == b.mean() else 0.0
    with warnings.catch_warnings():  # nearly constant samples: the p-value is still right
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(scipy_stats.ttest_ind(a, b, equal_var=False).pvalue)


def adjust(p_values: Sequence[float], method: str = "holm") -> np.ndarray:
    """p-values corrected for testing them all (NaN stays NaN, not counted as a test).

    Args:
        p_values: one per test.
        method: `holm` and `bonferroni` (family-wise error), `fdr_bh` (Benjamini–Hochberg).
    """
    p = np.asarray(p_values, float)
    out = np.full_like(p, np.nan)
    valid = ~np.isnan(p)
    m = int(valid.sum())
    if m == 0:
        return out
    values = p[valid]
    if method == "bonferroni":
        adjusted = np.minimum(values * m, 1.0)
    elif method == "holm":
        order = np.argsort(values, kind="stable")
        stepped = np.maximum.accumulate(values[order] * (m - np.arange(m)))
        adjusted = np.empty(m)
        adjusted[order] = np.minimum(stepped, 1.0)
    elif method == "fdr_bh":
        adjusted = scipy_stats.false_discovery_control(values, method="bh")
    else:
        raise ValueError(f"unknown correction {method!r}; use holm, bonferroni or fdr_bh")
    out[valid] = adjusted
    return out


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman's rank correlation; NaN with fewer than 3 pairs or a constant side."""
    x, y = np.asarray(a, float), np.asarray(b, float)
    if len(x) < 3 or np.all(x == x[0]) or np.all(y == y[0]):
        return float("nan")
    return float(scipy_stats.spearmanr(x, y).statistic)


def cross_layer_consistency(scores: pd.DataFrame, column: str = "score") -> pd.DataFrame:
    """Per pair of layers, Spearman ρ of `column` over the (class, concept) pairs both score.

    Args:
        scores: a concept-scores table (`class_index`, `concept`, `layer`, `column`).
        column: the score to compare.

    Returns:
        One row per (layer_a, layer_b): `rho`, `n_pairs`.
    """
    wide = scores.pivot_table(index=["class_index", "concept"], columns="layer", values=column)
    rows = []
    for layer_a, layer_b in combinations(sorted(wide.columns), 2):
        both = wide[[layer_a, layer_b]].dropna()
        rows.append(
            {
                "layer_a": layer_a,
                "layer_b": layer_b,
                "rho": spearman(both[layer_a], both[layer_b]),
                "n_pairs": len(both),
            }
        )
    return pd.DataFrame(rows, columns=["layer_a", "layer_b", "rho", "n_pairs"])


def agreement(
    scores: pd.DataFrame,
    effects: pd.DataFrame,
    effect: str = "sens_texture_flip",
    layer: str | None = None,
    n_boot: int = 2000,
    seed: int = 0,
    top: int = 5,
) -> dict[str, object]:
    """Spearman ρ between TCAV scores and counterfactual effects over (class, concept) pairs,
    with a bootstrap interval over pairs and the pairs on which they disagree most.

    Args:
        scores: a concept-scores table (`class_index`, `concept`, `layer`, `score`).
        effects: counterfactual statistics with `class`, `concept` and `effect` columns, e.g.
            `pipeline.report.groups.summarize(predictions, ("class", "concept"))`; rows of
            several textures per pair are averaged.
        effect: the effect column (default: the texture effect, cf flip − neutral flip).
        layer: the layer whose scores are compared (default: the deepest, i.e. the last in
            sorted order that has the most pairs).
        n_boot: bootstrap resamples of the pairs.
        seed: seeds the resampling.
        top: how many disagreements to list.

    Returns:
        `{"rho", "low", "high", "n_pairs", "layer", "pairs", "disagreements"}`: `pairs` is the
        joined table (score, effect and their ranks as quantiles); `disagreements` its `top`
        rows with the largest |rank difference|.
    """
    if layer is None:
        counts = scores.groupby("layer").size()
        layer = str(counts[counts == counts.max()].index.max()) if len(counts) else None
    keep = [c for c in ("class_index", "class_name", "concept", "score") if c in scores]
    chosen = scores[scores["layer"] == layer][keep]
    pooled = effects.groupby(["class", "concept"], as_index=False)[effect].mean()
    pooled = pooled.rename(columns={"class": "class_index"})
    pooled["class_index"] = pooled["class_index"].astype("int64")
    pairs = chosen.merge(pooled, on=["class_index", "concept"]).dropna(subset=["score", effect])
    pairs = pairs.reset_index(drop=True)
    rho = spearman(pairs["score"], pairs[effect])
    low = high = float("nan")
    if len(pairs) >= 3 and not np.isnan(rho):
        rng = np.random.default_rng(seed)
        x, y = pairs["score"].to_numpy(), pairs[effect].to_numpy()
        draws = []
        for _ in range(n_boot):
            index = rng.integers(0, len(pairs), len(pairs))
            value = spearman(x[index], y[index])
            if not np.isnan(value):
                draws.append(value)
        if draws:
            low, high = (float(v) for v in np.percentile(draws, [2.5, 97.5]))
    if len(pairs):
        pairs["score_rank"] = pairs["score"].rank(pct=True)
        pairs["effect_rank"] = pairs[effect].rank(pct=True)
        pairs["rank_gap"] = pairs["score_rank"] - pairs["effect_rank"]
        order = pairs["rank_gap"].abs().sort_values(ascending=False, kind="stable").index
        disagreements = pairs.loc[order[:top]].reset_index(drop=True)
    else:
        disagreements = pairs
    return {
        "rho": rho,
        "low": low,
        "high": high,
        "n_pairs": len(pairs),
        "layer": layer,
        "effect": effect,
        "pairs": pairs,
        "disagreements": disagreements,
    }
