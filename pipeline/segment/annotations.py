"""`annotations`: ground-truth concept masks instead of a model.

Five sources, combinable in one backend:

* **COCO / LVIS JSON** (`coco_json`, one path or a list, plus `image_root`): polygons,
  uncompressed and compressed RLE, rasterised with pycocotools. A category's name is its
  concept (through the vocabulary: LVIS `car_(automobile)` → `car`, `tyre` → `tire`).
* **COCO panoptic** (`panoptic_json`, one path or a list, its PNG folder `panoptic_dir`, by
  default the JSON's path without `.json`, plus `image_root`): segment-id PNGs, things and
  stuff, one mask per segment (`pipeline/segment/panoptic.py`).
* **Label-map PNG folders** (`label_maps`, one folder or a list, with `label_names` or
  `label_colors`, plus `image_root`): one PNG of class ids per image, CamVid / ADE20K /
  Cityscapes / Pascal VOC style (`pipeline/segment/label_maps.py`).
* **Mask PNG folder** (`mask_dir`, plus `image_root`): layout
  `<mask_dir>/<image_stem>/<concept>.png`, one mask per concept, the size of the original
  image, white (or 1) = in. `<image_stem>` is the image's file name without extension,
  looked up anywhere under `image_root`.
* **Hugging Face dataset** (`hf_dataset`: a `datasets.Dataset`, a `save_to_disk` folder or a
  hub name, with `hf_split`, `hf_image_column`) with either a column of mask images per
  concept (`hf_mask_columns={concept: column}`) or a segmentation map column
  (`hf_segmentation_column`) and its `hf_id2name` {id: concept name}.

How images are matched: `segment()` only receives pixels, so the backend recognises an image by
its content. It computes `pipeline.hashing.pixels_id` of each annotated image, decoded like the
pipeline decodes it (`decode_image`: EXIF orientation, RGB) and resized like the pipeline
resizes it (`resize_max_side(rgb, max_side)`); set `max_side` to the build's `image.max_side`
(default 384). The id of the original-resolution pixels is indexed too. Images are decoded
lazily, at most once: first those whose declared size gives the incoming image's working size,
then, if none matches, all the others. Masks are rasterised at the original size and resized to
the incoming image with nearest neighbour. Each annotation (a COCO instance, a panoptic
segment, a class of a label map) is one detection, empty ones left out; the segment stage
merges the instances of one concept. An image without annotations gets no detections (counted
in `unmatched`), or an error with `on_missing="error"`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.hashing import pixels_id, sha256_file, stable_key
from pipeline.imageio import DEFAULT_MAX_PIXELS, decode_image, read_file_bytes, resize_max_side
from pipeline.segment.annotation_formats import (
    AnnotatedImage,
    AnnotationError,
    MaskSource,
    find_images,
    image_locator,
    images_by_stem,
    load_coco,
    rasterize_segmentation,
    read_mask_png,
    resize_mask_nearest,
    working_shape,
)
from pipeline.segment.base import ConceptDetection
from pipeline.segment.hf_annotations import hf_annotations
from pipeline.segment.label_maps import label_map_annotations
from pipeline.segment.panoptic import panoptic_annotations
from pipeline.segment.vocabulary import canonical

VERSION = "v1"
BACKEND = "annotations"


class AnnotationsSegmenter:
    """Concept masks read from annotation files, matched to images by their pixels."""

    def __init__(
        self,
        concepts: Sequence[str] | None = None,
        coco_json: str | Sequence[str] | None = None,
        image_root: str | None = None,
        mask_dir: str | None = None,
        panoptic_json: str | Sequence[str] | None = None,
        panoptic_dir: str | None = None,
        label_maps: str | Sequence[str] | None = None,
        label_names: dict[Any, Any] | list[Any] | str | None = None,
        label_colors: dict[str, Any] | str | None = None,
        label_ignore: Sequence[int] = (255,),
        label_suffix: str = "",
        image_suffix: str = "",
        hf_dataset: Any = None,
        hf_split: str = "train",
        hf_image_column: str = "image",
        hf_mask_columns: dict[str, str] | None = None,
        hf_segmentation_column: str | None = None,
        hf_id2name: dict[Any, str] | str | None = None,
        max_side: int = 384,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        on_missing: str = "empty",
    ) -> None:
        if on_missing not in ("empty", "error"):
            raise ValueError(
                f"{BACKEND}: on_missing must be 'empty' or 'error', got {on_missing!r}"
            )
        if max_side < 8:
            raise ValueError(f"{BACKEND}: max_side must be ≥ 8, got {max_side}")
        self.max_side = int(max_side)
        self.max_pixels = int(max_pixels)
        self.on_missing = on_missing
        self.images: list[AnnotatedImage] = []
        self.skipped: list[tuple[str, str]] = []  # (file, why) of annotations without an image
        self.unmatched = 0
        fingerprint: list[Any] = []
        if coco_json is not None:
            for path in _paths(coco_json):
                self._add_coco(path, self._root(image_root, "coco_json"))
                fingerprint.append(("coco", path.name, sha256_file(path)))
        if mask_dir is not None:
            fingerprint.append(("masks", self._add_mask_dir(Path(mask_dir), image_root)))
        if panoptic_json is not None:
            paths = _paths(panoptic_json)
            if panoptic_dir is not None and len(paths) != 1:
                raise ValueError(f"{BACKEND}: panoptic_dir goes with one panoptic_json")
            for path in paths:
                fingerprint.append(
                    self._add(
                        panoptic_annotations(
                            path,
                            None if panoptic_dir is None else Path(panoptic_dir),
                            self._root(image_root, "panoptic_json"),
                            self._read_file,
                        )
                    )
                )
        if label_maps is not None:
            fingerprint.append(
                self._add(
                    label_map_annotations(
                        _paths(label_maps),
                        self._root(image_root, "label_maps"),
                        self._read_file,
                        label_names,
                        label_colors,
                        [int(v) for v in label_ignore],
                        label_suffix,
                        image_suffix,
                    )
                )
            )
        if hf_dataset is not None:
            images, hf_fingerprint = hf_annotations(
                hf_dataset,
                hf_split,
                hf_image_column,
                hf_mask_columns,
                hf_segmentation_column,
                hf_id2name,
                self.max_pixels,
            )
            self.images.extend(images)
            fingerprint.append(hf_fingerprint)
        if not fingerprint:
            raise ValueError(
                f"{BACKEND}: give coco_json, panoptic_json, label_maps, mask_dir or hf_dataset"
            )
        if not self.images:
            raise AnnotationError(
                f"{BACKEND}: no annotated image found ({len(self.skipped)} skipped, e.g. "
                f"{self.skipped[:3]})"
            )
        available = tuple(dict.fromkeys(s.concept for i in self.images for s in i.sources))
        if concepts is None or list(concepts) == ["*"]:
            self.concepts: tuple[str, ...] = available
        else:
            self.concepts = tuple(dict.fromkeys(canonical(c, strict=False) for c in concepts))
            absent = [c for c in self.concepts if c not in available]
            if absent:
                raise ValueError(
                    f"{BACKEND}: the annotations have no {', '.join(absent)}; they have "
                    f"{', '.join(available) or 'nothing'}"
                )
        self._pending = set(range(len(self.images)))
        self._by_id: dict[str, list[int]] = {}
        self._by_shape: dict[tuple[int, int], list[int]] = {}
        self._undeclared = {i for i, image in enumerate(self.images) if image.declared is None}
        for index, image in enumerate(self.images):
            if image.declared is not None:
                for shape in {image.declared, working_shape(*image.declared, self.max_side)}:
                    self._by_shape.setdefault(shape, []).append(index)
        self.id = (
            f"{BACKEND}@{VERSION}({stable_key(fingerprint, length=16)},max_side={self.max_side})"
        )

    # ------------------------------------------------------------------ sources

    @staticmethod
    def _root(image_root: str | None, option: str) -> Path:
        if image_root is None:
            raise ValueError(f"{BACKEND}: {option} needs image_root (the folder of the images)")
        return Path(image_root)

    def _add(self, found: tuple[list[AnnotatedImage], list[tuple[str, str]], Any]) -> Any:
        """Take one reader's images and skipped files; its fingerprint goes into `id`."""
        images, skipped, fingerprint = found
        self.images.extend(images)
        self.skipped.extend(skipped)
        return fingerprint

    def _read_file(self, path: Path) -> Callable[[], np.ndarray]:
        def read() -> np.ndarray:
            return decode_image(read_file_bytes(path), str(path), self.max_pixels).rgb

        return read

    def _add_coco(self, path: Path, root: Path) -> None:
        locate = image_locator(root)
        for entry in load_coco(path):
            image_path = locate(entry.file_name)
            if image_path is None:
                self.skipped.append((entry.file_name, f"not found under {root}"))
                continue
            image = AnnotatedImage(
                str(image_path), self._read_file(image_path), (entry.height, entry.width)
            )
            for annotation in entry.annotations:
                image.sources.append(
                    MaskSource(
                        canonical(annotation.category, strict=False),
                        annotation.score,
                        _coco_loader(annotation.segmentation, entry.height, entry.width),
                        f"{path.name} annotation {annotation.annotation_id!r}",
                    )
                )
            self.images.append(image)

    def _add_mask_dir(self, mask_dir: Path, image_root: str | None) -> str:
        root = self._root(image_root, "mask_dir")
        if not mask_dir.is_dir():
            raise AnnotationError(f"mask folder {mask_dir} does not exist")
        stems = images_by_stem(find_images(root).values(), root)
        listing = []
        for folder in sorted(p for p in mask_dir.iterdir() if p.is_dir()):
            masks = sorted(folder.glob("*.png"))
            if folder.name not in stems:
                self.skipped.append((str(folder), f"no image named {folder.name}.* under {root}"))
                continue
            image_path = stems[folder.name]
            image = AnnotatedImage(str(image_path), self._read_file(image_path), None)
            for mask_path in masks:
                stat = mask_path.stat()
                listing.append(
                    (mask_path.relative_to(mask_dir).as_posix(), stat.st_size, stat.st_mtime_ns)
                )
                image.sources.append(
                    MaskSource(
                        canonical(mask_path.stem, strict=False),
                        1.0,
                        _png_loader(mask_path),
                        str(mask_path),
                    )
                )
            self.images.append(image)
        return stable_key(listing)

    # ------------------------------------------------------------------ matching

    def _hash(self, index: int) -> None:
        image = self.images[index]
        self._pending.discard(index)
        rgb = image.read()
        image.shape = (int(rgb.shape[0]), int(rgb.shape[1]))
        if image.declared is not None and image.declared != image.shape:
            raise AnnotationError(
                f"{image.uri} is {image.shape[1]}x{image.shape[0]} but its annotations say "
                f"{image.declared[1]}x{image.declared[0]}"
            )
        for key in {pixels_id(resize_max_side(rgb, self.max_side)), pixels_id(rgb)}:
            self._by_id.setdefault(key, []).append(index)

    def match(self, image: np.ndarray) -> list[AnnotatedImage]:
        """The annotated images with these pixels (working or original resolution): one per
        source that annotates them, none if no source does."""
        key = pixels_id(np.ascontiguousarray(image))
        shape = (int(image.shape[0]), int(image.shape[1]))
        # every candidate of this size, and the images of undeclared size, so that an image
        # annotated by several sources is found in all of them; everything else only on a miss
        for index in sorted({*self._by_shape.get(shape, []), *self._undeclared} & self._pending):
            self._hash(index)
        if key not in self._by_id:
            for index in sorted(self._pending):
                self._hash(index)
        return [self.images[index] for index in self._by_id.get(key, [])]

    # ------------------------------------------------------------------ Segmenter

    def segment(
        self, images: Sequence[np.ndarray], labels: Sequence[int | None]
    ) -> list[list[ConceptDetection]]:
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        wanted = set(self.concepts)
        results: list[list[ConceptDetection]] = []
        for pixels in images:
            records = self.match(pixels)
            if not records:
                self.unmatched += 1
                if self.on_missing == "error":
                    raise AnnotationError(
                        f"{BACKEND}: no annotated image has these {pixels.shape[1]}x"
                        f"{pixels.shape[0]} pixels (is max_side={self.max_side} the build's "
                        "image.max_side?)"
                    )
                results.append([])
                continue
            found = []
            sources = [(record, source) for record in records for source in record.sources]
            for record, source in sources:
                if source.concept not in wanted:
                    continue
                mask = source.load()
                if mask is None:
                    continue  # a cell without a mask (Hugging Face datasets)
                if mask.shape != record.shape:
                    raise AnnotationError(
                        f"{source.origin}: mask is {mask.shape[1]}x{mask.shape[0]} but image "
                        f"{record.uri} is {record.shape[1]}x{record.shape[0]}"  # type: ignore[index]
                    )
                working = resize_mask_nearest(mask, (pixels.shape[0], pixels.shape[1]))
                if working.any():  # a class of a label map that this image does not have
                    found.append(ConceptDetection(source.concept, working, source.score))
            results.append(found)
        return results


# ------------------------------------------------------------------ lazy loaders


def _coco_loader(segmentation: Any, height: int, width: int) -> Callable[[], np.ndarray]:
    return lambda: rasterize_segmentation(segmentation, height, width)


def _png_loader(path: Path) -> Callable[[], np.ndarray]:
    return lambda: read_mask_png(path)


def _paths(value: str | Sequence[str]) -> list[Path]:
    """An option that takes one path or a list of paths."""
    return [Path(value)] if isinstance(value, str | Path) else [Path(v) for v in value]


def create(**options: Any) -> AnnotationsSegmenter:
    return AnnotationsSegmenter(**options)
