"""The report's "Concept scores (TCAV) beside counterfactual sensitivity" section, per model.

Each (class, concept) pair's TCAV score at one layer (`pipeline.concepts.concept_scores`, with
what says whether to trust it) beside the pair's counterfactual texture effect (cf − neutral
flip rate); the Spearman agreement of the two rankings with its bootstrap interval over pairs;
the pairs on which they disagree most. Every number is defined in docs/audit.md.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from pipeline.report.formatting import format_diff
from pipeline.report.groups import summarize

UNSTABLE_STD = 0.05  # a significant score whose std over seeds exceeds this is flagged
DISAGREEMENTS = 5  # pairs listed where TCAV and the counterfactuals rank most differently
EFFECT = "sens_texture_flip"  # the counterfactual effect compared: cf − neutral flip rate


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _number(value: Any, digits: int = 2) -> str:
    return "–" if _missing(value) else f"{value:.{digits}f}"


def _split(text: str) -> tuple[str, str]:
    """`+40.3 pp (+27.1, +52.1)` → value and interval, shown on two lines in the page."""
    value, _, interval = text.partition(" (")
    return value, interval[:-1]


def unstable(row: dict[str, Any], threshold: float = UNSTABLE_STD) -> bool:
    """Significant, but its score moves by more than `threshold` (std) from seed to seed."""
    std = row.get("score_std_seeds")
    return bool(row["significant"]) and not _missing(std) and std > threshold


def _score_cells(row: dict[str, Any], threshold: float) -> dict[str, Any]:
    std, seeds = row["score_std_seeds"], int(row["n_seeds"])
    spread = "1 seed: no std" if _missing(std) else f"± {std:.3f} over {seeds} seeds"
    located = not _missing(row["iou"])
    return {
        "class_name": str(row["class_name"]).replace("_", " "),
        "class_index": int(row["class_index"]),
        "concept": row["concept"],
        "score": (f"{row['score']:.2f}", spread),
        "significance": (
            f"p = {row['p_adjusted']:.3g}",
            ("significant" if row["significant"] else "not significant")
            + f" · random {row['random_score']:.2f}",
        ),
        "cav_accuracy": (
            f"{100 * row['cav_accuracy']:.0f}%",
            f"± {100 * row['cav_accuracy_std']:.1f}",
        ),
        "iou": (
            _number(row["iou"]),
            f"whole {_number(row['iou_whole'])} · ellipse {_number(row['iou_ellipse'])}"
            if located
            else "not located",
        ),
        "unstable": unstable(row, threshold),
        "significant": bool(row["significant"]),
    }


def concept_section(
    scores: pd.DataFrame,
    predictions: pd.DataFrame,
    layer: str | None = None,
    unstable_std: float = UNSTABLE_STD,
    top: int = DISAGREEMENTS,
    seed: int = 0,
) -> dict[str, Any]:
    """What the page shows of one classifier's concept scores beside its counterfactuals.

    Args:
        scores: the classifier's `concept_scores.parquet` (`pipeline.concepts.load_concept_scores`).
        predictions: the same classifier's audit predictions (`sensitivity.audit`).
        layer: the layer whose scores are shown and compared (default, or when the table has
            no such layer: `agreement`'s, the deepest scored).
        unstable_std: a significant pair whose score's std over seeds is above it is flagged.
        top: how many disagreements to list.
        seed: seeds the bootstrap of the agreement interval.

    Returns:
        `{"layer", "rows", "agreement", "disagreements", "consistency", "n_pairs",
        "n_significant", "n_unstable", "settings"}`, every number already formatted.
    """
    from pipeline.concepts import agreement, cross_layer_consistency  # captum: only when asked

    asked = layer
    if layer is not None and layer not in set(scores["layer"]):
        layer = None
    effects = summarize(predictions, ("class", "concept"))
    agree = agreement(scores, effects, effect=EFFECT, layer=layer, top=top, seed=seed)
    layer = str(agree["layer"]) if agree["layer"] is not None else asked
    effect_of = {(int(e["class"]), e["concept"]): e for e in effects.to_dict("records")}
    chosen = scores[scores["layer"] == layer].sort_values(["class_index", "concept"])
    rows = []
    for row in chosen.to_dict("records"):
        cells = _score_cells(row, unstable_std)
        effect = effect_of.get((cells["class_index"], cells["concept"]))
        cells["effect"] = _split(format_diff(effect, EFFECT)) if effect else ("–", "no cfs")
        rows.append(cells)
    consistency = [
        f"{r['layer_a']} vs {r['layer_b']}: ρ = {_number(r['rho'])} over {r['n_pairs']} pairs"
        for r in cross_layer_consistency(scores).to_dict("records")
    ]
    disagreements = []  # with no defined ρ (fewer than 3 pairs, a constant side): no ranking
    if not _missing(agree["rho"]):
        disagreements = [_disagreement(d) for d in agree["disagreements"].to_dict("records")]
    first = chosen.iloc[0] if len(chosen) else None
    return {
        "layer": layer,
        "rows": rows,
        # why a table can be empty: a small build (the demo's photos are of different classes)
        "empty": (
            "No (class, concept) pair was scored: no class has enough images "
            "(--concept-min-images, default 3) or no concept has 2 usable masks."
            if not rows
            else ""
        ),
        "agreement": _agreement_text(agree),
        "rho": agree["rho"],
        "disagreements": disagreements,
        "consistency": consistency,
        "n_pairs": len(rows),
        "n_significant": sum(r["significant"] for r in rows),
        "n_unstable": sum(r["unstable"] for r in rows),
        "unstable_std": unstable_std,
        "settings": (
            f"CAV {first['cav_method']} · {int(first['n_random'])} random runs · "
            f"{int(first['n_seeds'])} seed(s) · up to {int(chosen['n_inputs'].max())} images "
            f"per class · {int(chosen['n_examples'].max())} concept crops"
            if first is not None
            else ""
        ),
    }


def _agreement_text(agree: dict[str, Any]) -> str:
    n = agree["n_pairs"]
    if _missing(agree["rho"]):
        return f"Spearman ρ = – ({n} pairs: fewer than 3, or one side constant)"
    text = f"Spearman ρ = {agree['rho']:+.2f}"
    if not _missing(agree["low"]):
        text += f" (95% bootstrap over pairs: {agree['low']:+.2f} to {agree['high']:+.2f})"
    return f"{text}, n = {n} pairs"


def _disagreement(pair: dict[str, Any]) -> str:
    name = str(pair.get("class_name", pair["class_index"])).replace("_", " ")
    what = f"{name} × {pair['concept']}"
    higher = "TCAV ranks" if pair["rank_gap"] > 0 else "the counterfactuals rank"
    return (
        f"{what}: TCAV {pair['score']:.2f} (rank {100 * pair['score_rank']:.0f}%) vs texture "
        f"effect {100 * pair[EFFECT]:+.1f} pp (rank {100 * pair['effect_rank']:.0f}%): "
        f"{higher} it higher"
    )
