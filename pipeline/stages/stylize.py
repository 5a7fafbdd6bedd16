"""Stylize: re-render the images that have a kept concept, once per style image."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pipeline.config import BuildConfig
from pipeline.failpoints import failpoint
from pipeline.hashing import stable_key
from pipeline.records import ConceptMask, SourceImage, StyleImage, Stylized
from pipeline.stages.backends import Backends
from pipeline.store import BuildStore
from pipeline.stylize import Stylizer

CODE_VERSION = "stylize-v1"


def style_seed(seed: int, style: StyleImage) -> int:
    """One seed per (build seed, style image): outputs never depend on how images are batched."""
    return int(stable_key(seed, style.style_id, style.sha256, length=8), 16) % (2**31)


def stylized_id(
    image_id: str, style: StyleImage, fingerprint: str, seed: int, height: int | None = None
) -> str:
    """`height`: the concept height the texture was sized for, where the stylizer takes one."""
    parts: tuple[object, ...] = (image_id, style.sha256, fingerprint, style_seed(seed, style))
    return stable_key(*parts, *(() if height is None else (height,)), length=32)


def mask_height(mask: np.ndarray) -> int:
    """Height in pixels of a mask's bounding box (0 for an empty mask)."""
    rows = np.flatnonzero(np.asarray(mask).any(axis=1))
    return int(rows[-1] - rows[0] + 1) if rows.size else 0


def concept_heights(
    store: BuildStore, images: Sequence[SourceImage], masks: Sequence[ConceptMask]
) -> dict[str, int]:
    """Per image, the bounding-box height of its largest kept concept (by area).

    One stylized image serves every concept of its image, so an image with several kept
    concepts gets a texture sized for the largest; a one-concept build is sized exactly.
    """
    largest: dict[str, ConceptMask] = {}
    for mask in masks:
        if mask.kept and (
            mask.image_id not in largest or mask.area_frac > largest[mask.image_id].area_frac
        ):
            largest[mask.image_id] = mask
    return {
        image.image_id: mask_height(store.load_mask(largest[image.image_id].path))
        for image in images
        if image.image_id in largest
    }


def images_to_stylize(
    images: Sequence[SourceImage], masks: Sequence[ConceptMask]
) -> list[SourceImage]:
    """Only images with at least one kept concept are worth stylizing."""
    wanted = {m.image_id for m in masks if m.kept}
    return [image for image in images if image.image_id in wanted]


def stylize_shard(
    store: BuildStore,
    images: Sequence[SourceImage],
    masks: Sequence[ConceptMask],
    backends: Backends,
    config: BuildConfig,
) -> tuple[str, list[Stylized]]:
    """Every image with a kept concept in every style image of the build. Returns (key, records).

    Stylized images already on disk (same id) are not made again, so adding a texture
    stylizes only with the new style images. A stylizer that sizes its texture by the concept
    gets each image's concept height, which is then part of the stylized id.
    """
    images = images_to_stylize(images, masks)
    styles = backends.styles
    fingerprint, seed, batch_size = backends.stylizer.id, config.seed, config.stylize.batch_size
    sized = "heights" in backends.stylizer_inputs
    heights = concept_heights(store, images, masks) if sized else {}
    ids = [
        [stylized_id(i.image_id, s, fingerprint, seed, heights.get(i.image_id)) for s in styles]
        for i in images
    ]
    key = stable_key(CODE_VERSION, fingerprint, ids)
    if store.has_part("stylized", key):
        done = [s for s in store.read_part("stylized", key) if isinstance(s, Stylized)]
        if all(store.exists(s.path) for s in done):
            return key, done
    stylizer: Stylizer | None = None
    records: list[Stylized] = []
    sources: dict[str, np.ndarray] = {}  # each source image decoded once per shard, not per style

    def source(image: SourceImage) -> np.ndarray:
        if image.image_id not in sources:
            sources[image.image_id] = store.load_image(image.path)
        return sources[image.image_id]

    with store.png_writer() as writer:  # PNG encoding overlaps the next batch's stylization
        for column, style in enumerate(styles):
            todo = [
                (image, ids[row][column])
                for row, image in enumerate(images)
                if not store.exists(store.relpath("stylized", ids[row][column]))
            ]
            for start in range(0, len(todo), batch_size):
                batch = todo[start : start + batch_size]
                stylizer = stylizer or backends.stylizer.load()
                pixels = [source(image) for image, _ in batch]
                style_pixels = backends.style_pixels(style)
                extra = {"heights": [heights[i.image_id] for i, _ in batch]} if sized else {}
                outputs = stylizer.stylize(
                    pixels, style_pixels, seed=style_seed(seed, style), **extra
                )
                for (_, sid), output in zip(batch, outputs, strict=True):
                    writer.save(store.relpath("stylized", sid), output)
    for column, style in enumerate(styles):
        for row, image in enumerate(images):
            sid = ids[row][column]
            records.append(
                Stylized(
                    stylized_id=sid,
                    image_id=image.image_id,
                    style_id=style.style_id,
                    stylizer_id=fingerprint,
                    path=store.relpath("stylized", sid),
                )
            )
    failpoint("stylize.before_part")
    store.write_part("stylized", key, records)
    return key, records
