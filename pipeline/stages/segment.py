"""Segment: find concepts in a shard of images and apply the mask quality rules."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from pipeline.config import SegmentConfig
from pipeline.hashing import stable_key
from pipeline.imageio import ImageDecodeError
from pipeline.records import ConceptMask, QuarantineEntry, SourceImage
from pipeline.segment import Segmenter
from pipeline.segment.annotation_formats import AnnotationError
from pipeline.segment.base import ConceptDetection
from pipeline.segment.quality import dilate_mask, merge_instances
from pipeline.store import BuildStore

CODE_VERSION = "segment-v1"
# errors a segmenter raises for one bad input (a mask of the wrong size, an unreadable annotated
# image): that image is quarantined and the shard goes on; any other error fails the stage
BAD_INPUT_ERRORS = (AnnotationError, ImageDecodeError)


def quality_rejection(config: SegmentConfig, score: float, area_frac: float) -> str | None:
    """The first quality rule a mask fails, as a reason, or None if it passes."""
    if area_frac <= 0.0:
        return "empty mask"
    if score < config.min_score:
        return f"score {score:.3f} < min_score {config.min_score}"
    if area_frac < config.min_area:
        return f"area {area_frac:.3f} < min_area {config.min_area}"
    if area_frac > config.max_area:
        return f"area {area_frac:.3f} > max_area {config.max_area}"
    return None


def _segment_batch(
    segmenter: Segmenter,
    batch: Sequence[SourceImage],
    pixels: list[np.ndarray],
    quarantined: list[QuarantineEntry],
) -> list[list[ConceptDetection] | None]:
    """Detections per image; when the batch fails on a bad input, retry one image at a time and
    quarantine the images that fail (None in their place)."""
    try:
        return list(segmenter.segment(pixels, [image.label for image in batch]))
    except BAD_INPUT_ERRORS:
        pass  # find the bad image(s): one call per image
    found: list[list[ConceptDetection] | None] = []
    for image, one in zip(batch, pixels, strict=True):
        try:
            found.append(segmenter.segment([one], [image.label])[0])
        except BAD_INPUT_ERRORS as error:
            quarantined.append(QuarantineEntry(uri=image.uri, stage="segment", reason=str(error)))
            found.append(None)
    return found


def segment_shard(
    store: BuildStore,
    images: Sequence[SourceImage],
    config: SegmentConfig,
    fingerprint: str,
    load: Callable[[], Segmenter],
) -> tuple[str, list[ConceptMask]]:
    """Masks (kept and rejected) for every image of the shard. Returns (key, masks)."""
    settings = config.model_dump(exclude={"batch_size"})
    key = stable_key(CODE_VERSION, fingerprint, settings, [i.image_id for i in images])
    if store.has_part("masks", key):
        done = [m for m in store.read_part("masks", key) if isinstance(m, ConceptMask)]
        if all(store.exists(m.path) for m in done if m.area_frac > 0):
            return key, done
    segmenter = load()
    masks: list[ConceptMask] = []
    quarantined: list[QuarantineEntry] = []
    with store.png_writer() as writer:  # encoding overlaps the next batch
        for start in range(0, len(images), config.batch_size):
            batch = images[start : start + config.batch_size]
            pixels = [store.load_image(image.path) for image in batch]
            found = _segment_batch(segmenter, batch, pixels, quarantined)
            for image, detections in zip(batch, found, strict=True):
                if detections is None:
                    continue  # quarantined: no masks, so no counterfactuals for this image
                for detection in sorted(merge_instances(detections), key=lambda d: d.concept):
                    mask = dilate_mask(np.asarray(detection.mask, dtype=bool), config.dilation)
                    area = float(mask.mean())
                    mask_id = stable_key(image.image_id, detection.concept, fingerprint, length=32)
                    relpath = store.relpath("masks", mask_id)
                    if area > 0 and not store.exists(relpath):
                        writer.save(relpath, mask)
                    reason = quality_rejection(config, float(detection.score), area)
                    masks.append(
                        ConceptMask(
                            mask_id=mask_id,
                            image_id=image.image_id,
                            concept=detection.concept,
                            score=round(float(detection.score), 6),
                            area_frac=round(area, 6),
                            segmenter_id=segmenter.id,
                            path=relpath,
                            kept=reason is None,
                            reject_reason=reason,
                        )
                    )
    store.quarantine(quarantined)
    store.write_part("masks", key, masks)
    return key, masks
