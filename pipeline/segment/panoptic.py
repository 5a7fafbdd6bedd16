"""COCO panoptic ground truth: a JSON of segments per image and PNGs of segment ids.

The layout detectron2 and panopticapi read: `panoptic_<split>.json` with `images` (id,
file_name, height, width), `annotations` (one per image: image_id, the file_name of its PNG,
`segments_info` [{id, category_id, iscrowd, ...}]) and `categories` (id, name, isthing), and a
folder of PNGs (by default next to the JSON, named like it without `.json`) whose RGB pixels
hold `segment_id = R + 256·G + 256²·B`; 0 is unlabelled. Every segment, thing or stuff, is one
mask of its category's concept (`sky-other-merged` → `sky` through the vocabulary); the
segments of one concept in one image come back as separate masks, merged by the segmenter.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from pipeline.hashing import sha256_file, stable_key
from pipeline.segment.annotation_formats import (
    AnnotatedImage,
    ImageReader,
    LastDecoded,
    MaskSource,
    coco_images,
    file_error,
    image_locator,
    read_json_object,
)
from pipeline.segment.vocabulary import canonical

MAX_SEGMENT_ID = 256**3 - 1  # what three 8-bit channels can hold


@dataclass(frozen=True)
class PanopticSegment:
    segment_id: int
    category: str  # the category's name as the JSON spells it
    isthing: bool
    iscrowd: bool


@dataclass
class PanopticImage:
    file_name: str  # the photo
    height: int
    width: int
    png_name: str | None = None  # its segment-id PNG; None: the JSON has no annotation for it
    segments: list[PanopticSegment] = field(default_factory=list)


def _categories(path: Path, entries: list[Any]) -> dict[Any, tuple[str, bool]]:
    categories: dict[Any, tuple[str, bool]] = {}
    for number, category in enumerate(entries):
        if not isinstance(category, dict) or "id" not in category or "name" not in category:
            raise file_error(path, f"categories[{number}] needs 'id' and 'name'")
        categories[category["id"]] = (str(category["name"]), bool(category.get("isthing", 1)))
    return categories


def _segments(
    path: Path, ident: Any, entries: Any, categories: dict[Any, tuple[str, bool]]
) -> list[PanopticSegment]:
    if not isinstance(entries, list):
        raise file_error(path, f"annotation of image {ident!r}: 'segments_info' is not a list")
    segments: list[PanopticSegment] = []
    seen: set[int] = set()
    for number, segment in enumerate(entries):
        where = f"image {ident!r} segments_info[{number}]"
        if not isinstance(segment, dict) or "id" not in segment or "category_id" not in segment:
            raise file_error(path, f"{where} needs 'id' and 'category_id'")
        segment_id = segment["id"]
        if not isinstance(segment_id, int) or not 0 < segment_id <= MAX_SEGMENT_ID:
            raise file_error(path, f"{where}: id {segment_id!r} is not in 1..{MAX_SEGMENT_ID}")
        if segment_id in seen:
            raise file_error(path, f"{where}: id {segment_id} appears twice")
        if segment["category_id"] not in categories:
            raise file_error(
                path,
                f"{where} refers to category_id {segment['category_id']!r}, which is not in "
                "'categories'",
            )
        seen.add(segment_id)
        name, isthing = categories[segment["category_id"]]
        segments.append(PanopticSegment(segment_id, name, isthing, bool(segment.get("iscrowd", 0))))
    return segments


def load_panoptic(path: str | Path) -> list[PanopticImage]:
    """The images of a COCO panoptic JSON with their segments, checked, in `images` order."""
    path = Path(path)
    document = read_json_object(
        path, ("images", "annotations", "categories"), "a COCO panoptic file"
    )
    categories = _categories(path, document["categories"])
    images = {
        key: PanopticImage(image.file_name, image.height, image.width)
        for key, image in coco_images(path, document["images"]).items()
    }
    for number, annotation in enumerate(document["annotations"]):
        if not isinstance(annotation, dict):
            raise file_error(path, f"annotations[{number}] is not an object")
        for key in ("image_id", "file_name", "segments_info"):
            if key not in annotation:
                raise file_error(path, f"annotations[{number}] has no {key!r}")
        ident = annotation["image_id"]
        if ident not in images:
            raise file_error(
                path,
                f"annotations[{number}] refers to image_id {ident!r}, which is not in 'images'",
            )
        image = images[ident]
        if image.png_name is not None:
            raise file_error(path, f"image {ident!r} has two annotations")
        image.png_name = str(annotation["file_name"])
        image.segments = _segments(path, ident, annotation["segments_info"], categories)
    return list(images.values())


def read_segment_ids(path: Path, height: int, width: int) -> np.ndarray:
    """A panoptic PNG as an H x W array of segment ids, its size checked against the JSON's."""
    try:
        with Image.open(path) as image:
            if image.mode not in ("RGB", "RGBA", "P"):
                raise file_error(
                    path, f"expected an RGB PNG of segment ids, found mode {image.mode}"
                )
            rgb = np.asarray(image.convert("RGB"), dtype=np.int64)
    except OSError as error:
        raise file_error(path, f"cannot read ({error})") from None
    if rgb.shape[:2] != (height, width):
        raise file_error(
            path,
            f"is {rgb.shape[1]}x{rgb.shape[0]} but the JSON says its image is {width}x{height}",
        )
    return rgb[:, :, 0] + 256 * rgb[:, :, 1] + 256 * 256 * rgb[:, :, 2]


class _SegmentIdMaps:
    """Decodes each image's PNG once and checks its ids against the image's segments_info."""

    def __init__(self) -> None:
        self.expected: dict[Path, tuple[int, int, frozenset[int]]] = {}
        self.read = LastDecoded(self._decode)

    def _decode(self, path: Path) -> np.ndarray:
        height, width, known = self.expected[path]
        ids = read_segment_ids(path, height, width)
        present = {int(v) for v in np.unique(ids)} - {0}
        stray, absent = sorted(present - known), sorted(known - present)
        if stray:
            raise file_error(path, f"segment ids {stray[:8]} are not in the JSON's segments_info")
        if absent:
            raise file_error(path, f"segments {absent[:8]} of the JSON are not in the PNG")
        return ids

    def loader(self, path: Path, segment_id: int) -> Callable[[], np.ndarray]:
        return lambda: self.read(path) == segment_id


def panoptic_annotations(
    json_path: Path, png_dir: Path | None, image_root: Path, reader: ImageReader
) -> tuple[list[AnnotatedImage], list[tuple[str, str]], Any]:
    """The annotated images of a panoptic JSON (photos under `image_root`, PNGs in `png_dir`,
    by default the JSON's path without `.json`), the skipped ones (file, why), a fingerprint."""
    png_dir = png_dir if png_dir is not None else json_path.with_suffix("")
    if not png_dir.is_dir():
        raise file_error(json_path, f"its PNG folder {png_dir} does not exist (set panoptic_dir)")
    locate = image_locator(image_root)
    maps = _SegmentIdMaps()
    images: list[AnnotatedImage] = []
    skipped: list[tuple[str, str]] = []
    listing = []
    for entry in load_panoptic(json_path):
        image_path = locate(entry.file_name)
        if image_path is None:
            skipped.append((entry.file_name, f"not found under {image_root}"))
            continue
        image = AnnotatedImage(str(image_path), reader(image_path), (entry.height, entry.width))
        if entry.png_name is not None:
            png = png_dir / entry.png_name
            maps.expected[png] = (
                entry.height,
                entry.width,
                frozenset(s.segment_id for s in entry.segments),
            )
            if png.is_file():
                stat = png.stat()
                listing.append((entry.png_name, stat.st_size, stat.st_mtime_ns))
            for segment in entry.segments:
                image.sources.append(
                    MaskSource(
                        canonical(segment.category, strict=False),
                        1.0,
                        maps.loader(png, segment.segment_id),
                        f"{png} segment {segment.segment_id}",
                    )
                )
        images.append(image)
    fingerprint = ("panoptic", json_path.name, sha256_file(json_path), stable_key(listing))
    return images, skipped, fingerprint
