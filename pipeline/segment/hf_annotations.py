"""Ground-truth masks from a Hugging Face dataset, for the `annotations` segmenter.

Either a column of mask images per concept (`hf_mask_columns={concept: column}`) or a
segmentation map column (`hf_segmentation_column`) with its `hf_id2name` {id: concept name}.
Rows are read lazily, one cell at a time, so a large dataset costs nothing until matched.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.hashing import stable_key
from pipeline.imageio import decode_image
from pipeline.segment.annotation_formats import AnnotatedImage, AnnotationError, MaskSource
from pipeline.segment.vocabulary import canonical


def hf_annotations(
    dataset: Any,
    split: str,
    image_column: str,
    mask_columns: dict[str, str] | None,
    segmentation_column: str | None,
    id2name: dict[Any, str] | str | None,
    max_pixels: int,
) -> tuple[list[AnnotatedImage], tuple[str, str]]:
    """One annotated image per row of the dataset, and a fingerprint of the dataset."""
    dataset = _open_dataset(dataset, split)
    columns = set(dataset.column_names)
    if bool(mask_columns) == bool(segmentation_column):
        raise ValueError("annotations: give hf_mask_columns or hf_segmentation_column (one)")
    needed = [
        image_column,
        *(mask_columns or {}).values(),
        *filter(None, [segmentation_column]),
    ]
    missing = [c for c in needed if c not in columns]
    if missing:
        raise AnnotationError(f"dataset has no column {missing}; it has {sorted(columns)}")
    names: dict[int, str] = {}
    if segmentation_column:
        if isinstance(id2name, str):
            id2name = json.loads(Path(id2name).read_text(encoding="utf-8"))
        if not id2name:
            raise ValueError("annotations: hf_segmentation_column needs hf_id2name")
        names = {int(k): canonical(str(v), strict=False) for k, v in id2name.items()}
    images = []
    for row in range(len(dataset)):
        uri = f"hf:{split}[{row}]"
        image = AnnotatedImage(
            uri, _hf_image_reader(dataset, row, image_column, uri, max_pixels), None
        )
        for concept, column in (mask_columns or {}).items():
            image.sources.append(
                MaskSource(
                    canonical(concept, strict=False),
                    1.0,
                    _hf_mask_loader(dataset, row, column),
                    f"{uri}.{column}",
                )
            )
        for label, concept in names.items():
            image.sources.append(
                MaskSource(
                    concept,
                    1.0,
                    _hf_label_loader(dataset, row, segmentation_column, label),
                    f"{uri}.{segmentation_column}=={label}",
                )
            )
        images.append(image)
    fingerprint = str(getattr(dataset, "_fingerprint", "")) or stable_key(dataset.column_names)
    return images, ("hf", fingerprint)


def _open_dataset(dataset: Any, split: str) -> Any:
    if not isinstance(dataset, str | Path):
        return dataset[split] if hasattr(dataset, "keys") and split in dataset else dataset
    import datasets

    if Path(dataset).exists():
        loaded = datasets.load_from_disk(str(dataset))
        return loaded[split] if isinstance(loaded, datasets.DatasetDict) else loaded
    return datasets.load_dataset(str(dataset), split=split)


def _hf_image_reader(
    dataset: Any, row: int, column: str, uri: str, max_pixels: int
) -> Callable[[], np.ndarray]:
    def read() -> np.ndarray:
        value = dataset[row][column]
        if isinstance(value, np.ndarray):
            return np.ascontiguousarray(value.astype(np.uint8))
        return decode_image(value, uri, max_pixels).rgb

    return read


def _hf_values(value: Any) -> np.ndarray | None:
    """A mask or label-map cell (PIL image, array, nested lists) as a 2-D array; None if empty."""
    if value is None:
        return None
    values = np.asarray(value)  # PIL images keep their values (palette indices, labels)
    if values.ndim == 3:
        values = values[:, :, 0]
    if values.ndim != 2:
        raise AnnotationError(f"expected a 2-D mask or label map, got shape {values.shape}")
    return values


def _hf_mask_loader(dataset: Any, row: int, column: str) -> Callable[[], np.ndarray | None]:
    def load() -> np.ndarray | None:
        values = _hf_values(dataset[row][column])
        if values is None:
            return None
        return values > 0 if values.max(initial=0) <= 1 else values > 127

    return load


def _hf_label_loader(
    dataset: Any, row: int, column: str, label: int
) -> Callable[[], np.ndarray | None]:
    def load() -> np.ndarray | None:
        values = _hf_values(dataset[row][column])
        return None if values is None else values == label

    return load
