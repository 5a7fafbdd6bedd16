"""Mask post-processing, in one place for every backend: pure functions.

Backends return raw detections. The segment stage then applies, here: instance merging (a
backend may see several instances of one concept in one image, three cars, two wheels; the
build keeps one mask per (image, concept): the union of the instances' masks, scored by the
most confident one), an optional dilation (`segment.dilation` pixels, a margin so that a
texture swap also covers the object's anti-aliased edge), and the quality rules
(`min_score`, `min_area`, `max_area`; `quality_rejection`).

`instances_to_detections` turns any instance-segmentation output (class indices, scores,
per-instance masks, the model's class names) into our records; torchvision's and detectron2's
Mask R-CNN both produce that shape.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

import cv2
import numpy as np

from pipeline.config import SegmentConfig
from pipeline.segment.base import ConceptDetection


def to_numpy(values: Any) -> np.ndarray:
    """A torch tensor (any device) or array-like as a numpy array."""
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    return np.asarray(values)


def merge_instances(detections: Iterable[ConceptDetection]) -> list[ConceptDetection]:
    """One detection per concept: the union of its instances' masks, score = their maximum.

    Concepts keep the order of their first instance. Masks of one concept must share a shape.
    """
    merged: dict[str, tuple[np.ndarray, float]] = {}
    for detection in detections:
        mask = np.asarray(detection.mask, dtype=bool)
        if detection.concept not in merged:
            merged[detection.concept] = (mask.copy(), float(detection.score))
            continue
        union, score = merged[detection.concept]
        if union.shape != mask.shape:
            raise ValueError(
                f"cannot merge {detection.concept!r} masks of shapes {union.shape} and {mask.shape}"
            )
        union |= mask
        merged[detection.concept] = (union, max(score, float(detection.score)))
    return [ConceptDetection(c, mask, score) for c, (mask, score) in merged.items()]


def dilate_mask(mask: np.ndarray, pixels: int) -> np.ndarray:
    """Grow a boolean mask by `pixels`: every pixel within that Euclidean distance of the mask
    joins it (a disk structuring element). 0 returns a copy."""
    mask = np.asarray(mask, dtype=bool)
    if pixels < 0:
        raise ValueError(f"dilation must be ≥ 0 pixels, got {pixels}")
    if pixels == 0 or not mask.any():
        return mask.copy()
    radius = int(pixels)
    offsets = np.arange(-radius, radius + 1)
    disk = (offsets[:, None] ** 2 + offsets[None, :] ** 2 <= radius**2).astype(np.uint8)
    return cv2.dilate(mask.astype(np.uint8), disk) > 0


def finalize(
    detections: Iterable[ConceptDetection], merge: bool = True, dilation: int = 0
) -> list[ConceptDetection]:
    """The one post-processing of a backend's detections of one image, applied by the segment
    stage: empty masks dropped, instances merged per concept, grown by `dilation` pixels.
    Backends return raw instances and never post-process themselves."""
    found = [d for d in detections if np.asarray(d.mask).any()]
    if merge:
        found = merge_instances(found)
    if dilation:
        found = [ConceptDetection(d.concept, dilate_mask(d.mask, dilation), d.score) for d in found]
    return found


def quality_rejection(config: SegmentConfig, score: float, area_frac: float) -> str | None:
    """The first quality rule of `config` a mask fails, as a reason, or None if it passes."""
    if area_frac <= 0.0:
        return "empty mask"
    if score < config.min_score:
        return f"score {score:.3f} < min_score {config.min_score}"
    if area_frac < config.min_area:
        return f"area {area_frac:.3f} < min_area {config.min_area}"
    if area_frac > config.max_area:
        return f"area {area_frac:.3f} > max_area {config.max_area}"
    return None


def instances_to_detections(
    pred_classes: Any,
    scores: Any,
    pred_masks: Any,
    class_names: Sequence[str],
    vocabulary: Mapping[str, str] | None = None,
    *,
    concepts: Collection[str] | None = None,
    score_threshold: float = 0.0,
    mask_threshold: float = 0.5,
) -> list[ConceptDetection]:
    """Detections of one image from instance-segmentation outputs.

    `pred_classes` (N,) indexes `class_names`; `scores` (N,); `pred_masks` (N, H, W) or
    (N, 1, H, W), boolean or probabilities (thresholded at `mask_threshold`). Tensors or
    arrays. `vocabulary` maps a class name to its canonical concept (default: the vocabulary's
    synonyms; names it does not know are dropped). Only `concepts` are kept (default: all),
    and only instances scoring at least `score_threshold`.
    """
    if vocabulary is None:
        from pipeline.segment.vocabulary import label_map

        vocabulary = label_map(class_names)
    classes = to_numpy(pred_classes).astype(np.int64).reshape(-1)
    confidences = to_numpy(scores).astype(np.float64).reshape(-1)
    masks = to_numpy(pred_masks)
    if masks.ndim == 4 and masks.shape[1] == 1:
        masks = masks[:, 0]
    if masks.ndim != 3 and len(classes):
        raise ValueError(f"pred_masks must be N x H x W, got shape {masks.shape}")
    if not len(classes) == len(confidences) == (len(masks) if masks.ndim == 3 else 0):
        raise ValueError(
            f"{len(classes)} classes, {len(confidences)} scores and {len(masks)} masks differ"
        )
    wanted = None if concepts is None else set(concepts)
    found: list[ConceptDetection] = []
    for label, score, mask in zip(classes, confidences, masks, strict=True):
        if not 0 <= label < len(class_names):
            raise ValueError(f"class index {label} outside the {len(class_names)} class names")
        concept = vocabulary.get(class_names[label])
        if concept is None or (wanted is not None and concept not in wanted):
            continue
        if score < score_threshold:
            continue
        binary = mask if mask.dtype == bool else mask >= mask_threshold
        found.append(ConceptDetection(concept, np.ascontiguousarray(binary), float(score)))
    return found


__all__ = [
    "dilate_mask",
    "finalize",
    "instances_to_detections",
    "merge_instances",
    "quality_rejection",
    "to_numpy",
]
