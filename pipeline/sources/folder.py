"""A folder of images, walked recursively in sorted order without following symlinks.

Labels are inferred where the layout says them: a parent folder or file-name prefix that is an
ImageNet synset (`n04285008/…`, `n04285008_sports_car.JPEG`) or an ImageNet class name
(`sports_car/…`). Everything else is unlabelled. `limit` keeps the first N images of that
sorted walk (the walk stops there, so a limit on a huge folder is cheap).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from itertools import islice
from pathlib import Path

from pipeline.classify.imagenet import class_index, class_names
from pipeline.imageio import read_file_bytes
from pipeline.sources.base import SourceRef

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
_WNID = re.compile(r"^(n\d{8})(?:_|$)")


def infer_label(path: Path) -> int | None:
    for candidate in (path.stem, path.parent.name):
        match = _WNID.match(candidate)
        if match:
            try:
                return class_index(match.group(1))
            except KeyError:
                continue
    parent = path.parent.name.replace(" ", "_").lower()
    lowered = [name.lower() for name in class_names()]
    return lowered.index(parent) if parent in lowered else None


class FolderSource:
    def __init__(
        self, path: str | Path, infer_labels: bool = True, limit: int | None = None
    ) -> None:
        self.root = Path(path).expanduser().resolve()
        if not self.root.is_dir():
            raise FileNotFoundError(f"image folder not found: {self.root}")
        if limit is not None and limit < 1:
            raise ValueError(f"source.limit must be at least 1, not {limit}")
        self.infer_labels = infer_labels
        self.limit = limit
        self.id = f"folder:{self.root}"

    def _files(self) -> Iterator[Path]:
        for directory, subdirs, files in os.walk(self.root, followlinks=False):
            subdirs.sort()
            for name in sorted(files):
                path = Path(directory) / name
                if path.suffix.lower() in IMAGE_SUFFIXES:
                    yield path

    def refs(self) -> Iterator[SourceRef]:
        for path in islice(self._files(), self.limit):
            label = infer_label(path) if self.infer_labels else None
            yield SourceRef(
                uri=str(path),
                label=label,
                label_name=class_names()[label] if label is not None else None,
                meta={"relpath": str(path.relative_to(self.root))},
            )

    def read(self, ref: SourceRef) -> bytes:
        return read_file_bytes(ref.uri)
