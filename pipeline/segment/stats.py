"""Per-concept statistics of a build's masks (`conceptswap concepts BUILD`).

Summarises the masks manifest's records (`ConceptMask`: image, concept, score, area fraction,
segmenter, kept, reject reason) per concept: how many images it was found in, how many masks
were kept or rejected and by which quality rule, the area fraction's 10th/50th/90th percentiles
over the masks found (kept or not, empty masks excluded) and the mean score. The caller reads
the records (`BuildStore(build).read("masks")`): this module reads no files.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from pipeline.records import ConceptMask

# `pipeline.segment.quality.quality_rejection` reasons → rule names.
_RULES = (
    ("empty mask", "empty"),
    ("< min_score", "min_score"),
    ("< min_area", "min_area"),
    ("> max_area", "max_area"),
)
RULES = tuple(rule for _, rule in _RULES)


def rejection_rule(reason: str | None) -> str | None:
    """The quality rule a `reject_reason` names (`empty`, `min_score`, ...); `other` if none."""
    if not reason:
        return None
    return next((rule for marker, rule in _RULES if marker in reason), "other")


def concept_stats(masks: Iterable[ConceptMask]) -> list[dict[str, Any]]:
    """One row per concept (sorted by name) of a build's mask records.

    Keys: concept, images, masks, kept, rejected, rejected_<rule> for each quality rule
    (empty, min_score, min_area, max_area, other), area_p10, area_p50, area_p90, mean_score
    (None where no mask has an area), segmenters.
    """
    by_concept: dict[str, list[ConceptMask]] = {}
    for mask in masks:
        by_concept.setdefault(mask.concept, []).append(mask)
    stats = []
    for concept in sorted(by_concept):
        found = by_concept[concept]
        kept = [m for m in found if m.kept]
        rules = [rejection_rule(m.reject_reason) for m in found if not m.kept]
        areas = np.asarray([m.area_frac for m in found if m.area_frac > 0], dtype=np.float64)
        scores = np.asarray([m.score for m in found], dtype=np.float64)
        p10, p50, p90 = (
            (float(v) for v in np.quantile(areas, [0.1, 0.5, 0.9]))
            if areas.size
            else (None, None, None)
        )
        entry: dict[str, Any] = {
            "concept": concept,
            "images": len({m.image_id for m in found}),
            "masks": len(found),
            "kept": len(kept),
            "rejected": len(found) - len(kept),
        }
        for rule in (*RULES, "other"):
            entry[f"rejected_{rule}"] = sum(1 for r in rules if r == rule)
        entry.update(
            area_p10=p10,
            area_p50=p50,
            area_p90=p90,
            mean_score=float(scores.mean()) if scores.size else None,
            segmenters=sorted({str(m.segmenter_id) for m in found}),
        )
        stats.append(entry)
    return stats


def _fmt(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def format_concept_stats(rows: Sequence[dict[str, Any]], title: str | None = None) -> Any:
    """A `rich.table.Table` of `concept_stats` rows (rejections as `rule:count`)."""
    from rich.table import Table

    table = Table(title=title or "concepts")
    table.add_column("concept", style="bold", overflow="fold")
    for name in ("images", "kept", "rejected"):
        table.add_column(name, justify="right")
    table.add_column("rejected by rule", overflow="fold")
    for name in ("area p10", "area p50", "area p90", "mean score"):
        table.add_column(name, justify="right")
    for row in rows:
        reasons = ", ".join(
            f"{rule}:{row[f'rejected_{rule}']}"
            for rule in (*RULES, "other")
            if row.get(f"rejected_{rule}")
        )
        table.add_row(
            str(row["concept"]),
            str(row["images"]),
            str(row["kept"]),
            str(row["rejected"]),
            reasons or "–",
            _fmt(row["area_p10"]),
            _fmt(row["area_p50"]),
            _fmt(row["area_p90"]),
            _fmt(row["mean_score"]),
        )
    return table


__all__ = ["RULES", "concept_stats", "format_concept_stats", "rejection_rule"]
