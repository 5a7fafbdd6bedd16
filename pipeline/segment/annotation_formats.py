"""Reading ground-truth masks: COCO/LVIS JSON, mask PNG folders, resizing. Pure functions.

Used by the `annotations` segmenter (`pipeline/segment/annotations.py`), which also reads COCO
panoptic (`panoptic.py`), label-map PNG folders (`label_maps.py`) and Hugging Face datasets
(`hf_annotations.py`) into the `AnnotatedImage` records defined here. Every error names the
file and what is wrong with it (`AnnotationError`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif")


class AnnotationError(ValueError):
    """Annotations that cannot be used; the message names the file and the problem."""


@dataclass(frozen=True)
class CocoAnnotation:
    annotation_id: Any
    category: str  # the category's name as the file spells it
    segmentation: Any  # polygons (list of lists), uncompressed RLE or compressed RLE (dict)
    score: float


@dataclass
class CocoImage:
    file_name: str
    height: int
    width: int
    annotations: list[CocoAnnotation] = field(default_factory=list)


@dataclass(frozen=True)
class MaskSource:
    """One annotated mask of one image, read only when a build asks for its concept."""

    concept: str
    score: float
    load: Callable[[], np.ndarray | None]  # bool mask at the original size; None: no mask
    origin: str  # where it comes from, for error messages


@dataclass
class AnnotatedImage:
    """An image some annotation file describes, and the masks it gives that image."""

    uri: str
    read: Callable[[], np.ndarray]  # the original RGB pixels, decoded as the pipeline does
    declared: tuple[int, int] | None  # (height, width) the annotations state, if any
    sources: list[MaskSource] = field(default_factory=list)
    shape: tuple[int, int] | None = None  # the decoded original (height, width)


ImageReader = Callable[[Path], Callable[[], np.ndarray]]  # image file → lazy pixel reader


class LastDecoded:
    """The last label file decoded, kept so that the masks of one image decode it once.

    An image's masks are read one after the other, so one slot is enough and memory stays
    at one label map whatever the size of the data set.
    """

    def __init__(self, decode: Callable[[Path], np.ndarray]) -> None:
        self._decode = decode
        self._last: tuple[Path, np.ndarray] | None = None

    def __call__(self, path: Path) -> np.ndarray:
        last = self._last
        if last is not None and last[0] == path:
            return last[1]
        values = self._decode(path)
        self._last = (path, values)
        return values


def file_error(path: Path, problem: str) -> AnnotationError:
    """The error for an annotation file that cannot be used: its path, then the problem."""
    return AnnotationError(f"annotations {path}: {problem}")


def read_json_object(path: str | Path, required: Sequence[str], what: str) -> dict[str, Any]:
    """A JSON file's top-level object, with the lists `required` checked present.

    `what` says what kind of file has those lists, for the error message.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise file_error(path, f"cannot read ({error.strerror or error})") from None
    except UnicodeDecodeError as error:
        raise file_error(path, f"not UTF-8 text ({error.reason} at byte {error.start})") from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise file_error(
            path, f"not valid JSON: {error.msg} at line {error.lineno} column {error.colno}"
        ) from None
    if not isinstance(document, dict):
        raise file_error(path, f"expected a JSON object, found {type(document).__name__}")
    for key in required:
        if not isinstance(document.get(key), list):
            raise file_error(path, f"missing list {key!r} ({what} has {', '.join(required)})")
    return document


def load_coco(path: str | Path) -> list[CocoImage]:
    """The images of a COCO- or LVIS-format instance JSON with their annotations, checked.

    Needs `images` (id, file_name or coco_url, height, width), `annotations` (image_id,
    category_id, segmentation; optional score) and `categories` (id, name).
    """
    path = Path(path)
    document = read_json_object(
        path, ("images", "annotations", "categories"), "a COCO instances file"
    )
    categories: dict[Any, str] = {}
    for number, category in enumerate(document["categories"]):
        if not isinstance(category, dict) or "id" not in category or "name" not in category:
            raise file_error(path, f"categories[{number}] needs 'id' and 'name'")
        categories[category["id"]] = str(category["name"])
    images = coco_images(path, document["images"])
    for number, annotation in enumerate(document["annotations"]):
        if not isinstance(annotation, dict):
            raise file_error(path, f"annotations[{number}] is not an object")
        ident = annotation.get("id", number)
        for key in ("image_id", "category_id", "segmentation"):
            if key not in annotation:
                raise file_error(path, f"annotation {ident!r} has no {key!r}")
        if annotation["image_id"] not in images:
            raise file_error(
                path,
                f"annotation {ident!r} refers to image_id "
                f"{annotation['image_id']!r}, which is not in 'images'",
            )
        if annotation["category_id"] not in categories:
            raise file_error(
                path,
                f"annotation {ident!r} refers to category_id "
                f"{annotation['category_id']!r}, which is not in 'categories'",
            )
        image = images[annotation["image_id"]]
        segmentation = annotation["segmentation"]
        _check_segmentation(path, ident, segmentation, image.height, image.width)
        image.annotations.append(
            CocoAnnotation(
                ident,
                categories[annotation["category_id"]],
                segmentation,
                float(annotation.get("score", 1.0)),
            )
        )
    return list(images.values())


def coco_images(path: Path, entries: list[Any]) -> dict[Any, CocoImage]:
    """The `images` list of a COCO instances or panoptic JSON by id, each entry checked."""
    images: dict[Any, CocoImage] = {}
    for number, image in enumerate(entries):
        if not isinstance(image, dict) or "id" not in image:
            raise file_error(path, f"images[{number}] has no 'id'")
        name = image.get("file_name") or Path(str(image.get("coco_url", ""))).name
        try:
            height, width = int(image["height"]), int(image["width"])
        except (KeyError, TypeError, ValueError):
            raise file_error(
                path, f"image {image['id']!r} needs integer 'height' and 'width'"
            ) from None
        if not name:
            raise file_error(path, f"image {image['id']!r} has no 'file_name' (or 'coco_url')")
        if height < 1 or width < 1:
            raise file_error(path, f"image {image['id']!r} has size {width}x{height}")
        images[image["id"]] = CocoImage(str(name), height, width)
    return images


def _check_segmentation(path: Path, ident: Any, segmentation: Any, height: int, width: int) -> None:
    if isinstance(segmentation, list):
        for polygon in segmentation:
            if not isinstance(polygon, list) or not all(
                isinstance(v, int | float) for v in polygon
            ):
                raise file_error(path, f"annotation {ident!r}: a polygon must be a list of numbers")
            if len(polygon) < 6 or len(polygon) % 2:
                raise file_error(
                    path,
                    f"annotation {ident!r}: a polygon needs an even number (≥ 6) of coordinates, "
                    f"got {len(polygon)}",
                )
        return
    if isinstance(segmentation, dict):
        counts, size = segmentation.get("counts"), segmentation.get("size")
        if not isinstance(counts, list | str | bytes) or not isinstance(size, list):
            raise file_error(path, f"annotation {ident!r}: RLE needs 'counts' and 'size'")
        if [int(s) for s in size] != [height, width]:
            raise file_error(
                path,
                f"annotation {ident!r}: RLE size {size} (height, width) does not match its "
                f"image's {[height, width]}",
            )
        if isinstance(counts, list) and sum(int(c) for c in counts) != height * width:
            raise file_error(
                path,
                f"annotation {ident!r}: uncompressed RLE counts sum to {sum(counts)}, "
                f"not {height} x {width} = {height * width}",
            )
        return
    raise file_error(path, f"annotation {ident!r}: segmentation must be polygons or RLE")


def rasterize_segmentation(segmentation: Any, height: int, width: int) -> np.ndarray:
    """A COCO segmentation (polygons, uncompressed or compressed RLE) as a bool H x W mask,
    rasterised by pycocotools exactly as `COCO.annToMask` does."""
    from pycocotools import mask as mask_utils

    if isinstance(segmentation, list):
        if not segmentation:
            return np.zeros((height, width), dtype=bool)
        rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
    elif isinstance(segmentation["counts"], list):
        rle = mask_utils.frPyObjects(segmentation, height, width)
    else:
        counts = segmentation["counts"]
        rle = {
            "size": [height, width],
            "counts": counts.encode() if isinstance(counts, str) else counts,
        }
    return mask_utils.decode(rle).astype(bool)


def read_mask_png(path: str | Path) -> np.ndarray:
    """A mask image as bool: 0/1-valued images count non-zero pixels, others pixels > 127."""
    try:
        with Image.open(path) as image:
            values = np.asarray(image.convert("L"))
    except OSError as error:
        raise AnnotationError(f"mask {path}: cannot read ({error})") from None
    return values > 0 if values.max(initial=0) <= 1 else values > 127


def working_shape(height: int, width: int, max_side: int) -> tuple[int, int]:
    """The (height, width) `pipeline.imageio.resize_max_side` gives an image of this size."""
    scale = max_side / max(height, width)
    if scale >= 1.0:
        return height, width
    return max(1, round(height * scale)), max(1, round(width * scale))


def resize_mask_nearest(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of a bool mask to (height, width), sampling pixel centres."""
    mask = np.asarray(mask, dtype=bool)
    if mask.shape == tuple(shape):
        return mask.copy()
    resized = cv2.resize(
        mask.astype(np.uint8), (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST_EXACT
    )
    return resized > 0


def find_images(root: str | Path) -> dict[str, Path]:
    """Image files under `root` (recursive) by path relative to root, posix-style."""
    root = Path(root)
    if not root.is_dir():
        raise AnnotationError(f"image root {root} is not a folder")
    return {
        p.relative_to(root).as_posix(): p
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    }


def image_locator(root: Path) -> Callable[[str], Path | None]:
    """Finds an annotation's `file_name` under `root`: by relative path, else by file name."""
    files = find_images(root)
    by_name = {Path(rel).name: p for rel, p in files.items()}
    return lambda name: files.get(name) or by_name.get(Path(name).name)


def images_by_stem(files: Iterable[Path], root: Path) -> dict[str, Path]:
    """Image files by file stem; two images with one stem are an error (ambiguous)."""
    table: dict[str, Path] = {}
    for path in files:
        if path.stem in table:
            raise AnnotationError(
                f"image root {root}: {table[path.stem].name} and {path.name} share the stem "
                f"{path.stem!r}, so masks in a folder of that name are ambiguous"
            )
        table[path.stem] = path
    return table
