"""Segment: find concepts in a shard of images and apply the mask quality rules."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pipeline import progress
from pipeline.config import BuildConfig
from pipeline.failpoints import failpoint
from pipeline.hashing import stable_key
from pipeline.imageio import ImageDecodeError
from pipeline.records import ConceptMask, QuarantineEntry, SourceImage
from pipeline.segment import Segmenter
from pipeline.segment.annotation_formats import AnnotationError
from pipeline.segment.base import ConceptDetection
from pipeline.segment.quality import finalize, quality_rejection
from pipeline.stages.backends import Backends
from pipeline.store import BuildStore

CODE_VERSION = "segment-v1"
# errors a segmenter raises for one bad input (a mask of the wrong size, an unreadable annotated
# image): that image is quarantined and the shard goes on; any other error fails the stage
BAD_INPUT_ERRORS = (AnnotationError, ImageDecodeError)


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
    store: BuildStore, images: Sequence[SourceImage], backends: Backends, config: BuildConfig
) -> tuple[str, list[ConceptMask]]:
    """Masks (kept and rejected) for every image of the shard. Returns (key, masks).

    The backend returns raw detections; merging, dilation and the quality rules are applied
    here, once, for every backend (`pipeline.segment.quality`).
    """
    segment_config = config.segment
    fingerprint = backends.segmenter.id
    settings = segment_config.model_dump(exclude={"batch_size"})
    key = stable_key(CODE_VERSION, fingerprint, settings, [i.image_id for i in images])
    if store.has_part("masks", key):
        done = [m for m in store.read_part("masks", key) if isinstance(m, ConceptMask)]
        if all(store.exists(m.path) for m in done if m.area_frac > 0):
            return key, done
    segmenter = backends.segmenter.load()
    masks: list[ConceptMask] = []
    quarantined: list[QuarantineEntry] = []
    size = segment_config.batch_size
    with store.png_writer() as writer:  # encoding overlaps the next batch
        for start in range(0, len(images), size):
            batch = images[start : start + size]
            pixels = [store.load_image(image.path) for image in batch]
            found = _segment_batch(segmenter, batch, pixels, quarantined)
            for image, detections in zip(batch, found, strict=True):
                if detections is None:
                    continue  # quarantined: no masks, so no counterfactuals for this image
                final = finalize(detections, dilation=segment_config.dilation)
                for detection in sorted(final, key=lambda d: d.concept):
                    mask = np.asarray(detection.mask, dtype=bool)
                    area = float(mask.mean())
                    mask_id = stable_key(image.image_id, detection.concept, fingerprint, length=32)
                    relpath = store.relpath("masks", mask_id)
                    if area > 0 and not store.exists(relpath):
                        writer.save(relpath, mask)
                    reason = quality_rejection(segment_config, float(detection.score), area)
                    masks.append(
                        ConceptMask(
                            mask_id=mask_id,
                            image_id=image.image_id,
                            concept=detection.concept,
                            score=round(float(detection.score), 6),
                            area_frac=round(area, 6),
                            segmenter_id=fingerprint,
                            path=relpath,
                            kept=reason is None,
                            reject_reason=reason,
                        )
                    )
            progress.advance("images", len(batch))  # a batch is what the model computes at once
    store.quarantine(quarantined)
    failpoint("segment.before_part")
    store.write_part("masks", key, masks)
    return key, masks
