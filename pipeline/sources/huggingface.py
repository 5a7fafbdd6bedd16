"""A Hugging Face dataset (hub name, local script/data folder, or `save_to_disk` folder).

The image column is read undecoded (`Image(decode=False)`) so that a corrupt or missing image
quarantines one row instead of failing the whole dataset iteration.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import cached_property
from pathlib import Path
from typing import Any

from PIL import Image

from pipeline.classify.imagenet import class_names as imagenet_names
from pipeline.imageio import ImageDecodeError, read_file_bytes
from pipeline.sources.base import SourceRef


class HuggingFaceSource:
    def __init__(
        self,
        dataset: str | None = None,
        path: str | None = None,
        dataset_config: str | None = None,
        split: str = "train",
        image_column: str = "image",
        label_column: str | None = None,
        label_names: str = "imagenet",
        limit: int | None = None,
    ) -> None:
        if not (dataset or path):
            raise ValueError("a Hugging Face source needs a dataset name or a local path")
        self.name = dataset or str(path)
        self.path = path
        self.dataset_config = dataset_config
        self.split = split
        self.image_column = image_column
        self.label_column = label_column
        self.label_names = label_names
        self.limit = limit
        self.id = f"hf:{self.name}:{dataset_config or ''}:{split}"

    @cached_property
    def dataset(self) -> Any:
        import datasets

        local = Path(self.path).expanduser() if self.path else None
        if local is not None and (local / "dataset_info.json").is_file():
            loaded = datasets.load_from_disk(str(local))
            if isinstance(loaded, datasets.DatasetDict):
                loaded = loaded[self.split]
        else:
            loaded = datasets.load_dataset(
                str(local) if local else self.name, self.dataset_config, split=self.split
            )
        if self.image_column not in loaded.column_names:
            raise KeyError(
                f"dataset {self.name} has no column {self.image_column!r}; "
                f"columns: {', '.join(loaded.column_names)}"
            )
        if self.label_column and self.label_column not in loaded.column_names:
            raise KeyError(f"dataset {self.name} has no label column {self.label_column!r}")
        if isinstance(loaded.features[self.image_column], datasets.Image):
            loaded = loaded.cast_column(self.image_column, datasets.Image(decode=False))
        return loaded

    def _label_name(self, label: int) -> str | None:
        if self.label_names == "imagenet":
            return imagenet_names()[label] if 0 <= label < 1000 else None
        feature = self.dataset.features.get(self.label_column)
        names = getattr(feature, "names", None)
        return names[label] if names and 0 <= label < len(names) else str(label)

    def refs(self) -> Iterator[SourceRef]:
        count = len(self.dataset) if self.limit is None else min(self.limit, len(self.dataset))
        labels = self.dataset[self.label_column][:count] if self.label_column else [None] * count
        for index, label in enumerate(labels):
            label = None if label is None or int(label) < 0 else int(label)
            yield SourceRef(
                uri=f"hf://{self.name}/{self.split}/{index}",
                label=label,
                label_name=self._label_name(label) if label is not None else None,
                meta={"row": index},
            )

    def read(self, ref: SourceRef) -> bytes | Image.Image:
        value = self.dataset[int(ref.meta["row"])][self.image_column]
        if value is None:
            raise ImageDecodeError(ref.uri, f"row has no image in column {self.image_column!r}")
        if isinstance(value, Image.Image):
            return value
        if isinstance(value, dict):
            if value.get("bytes"):
                return bytes(value["bytes"])
            if value.get("path"):
                return read_file_bytes(value["path"])
            raise ImageDecodeError(ref.uri, "image cell has neither bytes nor a path")
        if isinstance(value, bytes | bytearray):
            return bytes(value)
        raise ImageDecodeError(ref.uri, f"unsupported image cell type {type(value).__name__}")
