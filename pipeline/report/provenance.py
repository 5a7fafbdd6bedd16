"""Where the masks came from and how good they are: the report's first caveat.

A sensitivity is only as meaningful as the mask it re-textures. The report names the mask model
(`build.yaml`'s `resolved.mask_model` when the build records one, else the segmenter's
fingerprint), the masks' quality per concept from the mask manifest, and warns visibly when the
masks were found by the very classifier being audited (a `cam` build audited with its own
classifier measures the model on regions it chose itself).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipeline.store import BuildStore

SEGMENTATION_DOC = "docs/segmentation.md"
CLASSIFIER_GUIDED = ("cam",)  # segmenters that find masks with the build's classifier


def _name(model_id: str) -> str:
    return str(model_id).split("@")[0]


def _describe(mask_model: Any) -> tuple[str, str | None]:
    """(the sentence after "masks: ", the classifier that found them or None)."""
    if isinstance(mask_model, dict):
        backend = mask_model.get("backend") or mask_model.get("segmenter") or "segmenter"
        model = mask_model.get("classifier") or mask_model.get("model")
        text = f"{backend} with {_name(model)}" if model else str(backend)
        notes = [str(mask_model[k]) for k in ("finder", "note", "description") if mask_model.get(k)]
        iou = mask_model.get("iou", mask_model.get("mask_iou"))
        if iou is not None:
            iou_text = f"{float(iou):.2f}" if isinstance(iou, int | float) else str(iou)
            notes.append(f"measured mask IoU {iou_text}")
        if notes:
            text += f" ({', '.join(notes)}; see {SEGMENTATION_DOC})"
        return text, _name(model) if model else None
    return str(mask_model), None


def mask_provenance(build_dir: str | Path, classifier_ids: Sequence[str]) -> dict[str, Any]:
    """The mask model line, a warning when it is an audited model, and per-concept quality.

    Returns `{"line": str, "warning": str | None, "quality": {"header": [...], "rows": [...]}}`.
    """
    store = BuildStore(build_dir)
    written = store.resolved()
    resolved = written.get("resolved") or {}
    segment = written.get("segment") or {}
    backend = str(segment.get("backend") or "")
    segmenter = str(resolved.get("segmenter") or backend or "unknown")
    finder: str | None = None
    if resolved.get("mask_model") is not None:
        text, finder = _describe(resolved["mask_model"])
        line = f"masks: {text}"
    else:
        line = f"masks: segmenter {segmenter}"
        if backend in CLASSIFIER_GUIDED:
            finder = _name((segment.get("options") or {}).get("classifier") or "") or _name(
                resolved.get("classifier") or ""
            )
    audited = {_name(c) for c in classifier_ids}
    warning = None
    if finder and finder in audited:
        warning = (
            f"the masks were found with {finder}, which is also audited here: its sensitivities "
            "are measured on regions it chose itself (audit another model, or build the masks "
            "with another segmenter)"
        )
    return {"line": line, "warning": warning, "quality": mask_quality(store)}


def mask_quality(store: BuildStore) -> dict[str, Any]:
    """Per concept: masks found, kept, images, mean score, mean and median area fraction."""
    header = ["concept", "masks", "kept", "images", "mean score", "mean area", "median area"]
    if not store.has_manifest("masks"):
        return {"header": header, "rows": []}
    masks = store.frame("masks", ["image_id", "concept", "score", "area_frac", "kept"])
    rows = []
    for concept, group in masks.groupby("concept", sort=True):
        rows.append(
            [
                str(concept),
                str(len(group)),
                str(int(group["kept"].astype(bool).sum())),
                str(group["image_id"].nunique()),
                f"{group['score'].mean():.2f}",
                f"{100 * group['area_frac'].mean():.1f}%",
                f"{100 * group['area_frac'].median():.1f}%",
            ]
        )
    return {"header": header, "rows": rows}
