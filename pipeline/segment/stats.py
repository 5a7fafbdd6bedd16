"""Per-concept statistics of a build's masks manifest (`conceptswap concepts BUILD`).

Reads `BUILD/manifests/masks.parquet` (columns mask_id, image_id, concept, score, area_frac,
segmenter_id, path, kept, reject_reason) and summarises each concept: how many images it was
found in, how many masks were kept or rejected and by which quality rule, the area fraction's
10th/50th/90th percentiles over the masks found (kept or not, empty masks excluded) and the
mean score.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

# `pipeline.stages.segment.quality_rejection` reasons → rule names.
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


def _manifest_path(path: str | Path) -> Path:
    path = Path(path)
    if path.is_dir():
        path = path / "manifests" / "masks.parquet"
    if not path.is_file():
        raise FileNotFoundError(
            f"no masks manifest at {path} (has the build run its segment stage?)"
        )
    return path


def concept_stats(masks_parquet_path: str | Path) -> list[dict[str, Any]]:
    """One row per concept (sorted by name) of a masks manifest, or of a build folder.

    Keys: concept, images, masks, kept, rejected, rejected_<rule> for each quality rule
    (empty, min_score, min_area, max_area, other), area_p10, area_p50, area_p90, mean_score
    (None where no mask has an area), segmenters.
    """
    import pyarrow.parquet as pq

    table = pq.read_table(_manifest_path(masks_parquet_path))
    columns = set(table.column_names)
    needed = {"image_id", "concept", "score", "area_frac", "kept", "reject_reason"}
    if not needed <= columns:
        raise ValueError(f"masks manifest lacks columns {sorted(needed - columns)}")
    rows = table.to_pylist()
    by_concept: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_concept.setdefault(str(row["concept"]), []).append(row)
    stats = []
    for concept in sorted(by_concept):
        masks = by_concept[concept]
        kept = [m for m in masks if m["kept"]]
        rules = [rejection_rule(m["reject_reason"]) for m in masks if not m["kept"]]
        areas = np.asarray([float(m["area_frac"]) for m in masks if float(m["area_frac"]) > 0])
        scores = np.asarray([float(m["score"]) for m in masks], dtype=np.float64)
        p10, p50, p90 = (
            (float(v) for v in np.quantile(areas, [0.1, 0.5, 0.9]))
            if areas.size
            else (None, None, None)
        )
        entry: dict[str, Any] = {
            "concept": concept,
            "images": len({m["image_id"] for m in masks}),
            "masks": len(masks),
            "kept": len(kept),
            "rejected": len(masks) - len(kept),
        }
        for rule in (*RULES, "other"):
            entry[f"rejected_{rule}"] = sum(1 for r in rules if r == rule)
        entry.update(
            area_p10=p10,
            area_p50=p50,
            area_p90=p90,
            mean_score=float(scores.mean()) if scores.size else None,
            segmenters=sorted({str(m.get("segmenter_id")) for m in masks}),
        )
        stats.append(entry)
    return stats


def _fmt(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def format_concept_stats(rows: Sequence[dict[str, Any]], title: str | None = None) -> Any:
    """A `rich.table.Table` of `concept_stats` rows (rejections as `rule:count`)."""
    from rich.table import Table

    table = Table(title=title or "concepts")
    table.add_column("concept", style="bold")
    for name in ("images", "kept", "rejected"):
        table.add_column(name, justify="right")
    table.add_column("rejected by rule")
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
