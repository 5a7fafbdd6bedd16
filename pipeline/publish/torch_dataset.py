"""`CounterfactualDataset`: a `torch.utils.data.Dataset` over a finished build, no export needed.

One item per counterfactual row: the original, the mask and the counterfactual as tensors, the
labels and the row's metadata. It holds only plain values (the build path and, per row, the
relative file paths and labels), so it pickles to `DataLoader` workers; the PNGs are opened in
`__getitem__`, in the worker that asks for them. Labels follow the export: ImageNet indices with
`UNLABELLED` (1000) for an unlabelled source image; `reference` is the class a counterfactual is
judged against (the label, or the clean prediction where there is none).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from PIL import Image

from pipeline.publish.schema import UNLABELLED
from pipeline.records import ConceptMask, Counterfactual, SourceImage
from pipeline.store.build_store import BuildStore

METADATA = ("cf_id", "image_id", "concept", "texture", "style_image")


def _label(value: int | None) -> int:
    return UNLABELLED if value is None else int(value)


class CounterfactualDataset(torch.utils.data.Dataset):
    """Items: `image`, `counterfactual` (float CHW in [0, 1]), `mask` (float 1HW, 0/1), `label`,
    `clean_pred`, `cf_pred`, `reference` (int64), `kept` (bool) and the ids and names of
    `METADATA` (str).

    `kept_only`: only rows that passed every filter. `size`: resize every item to (H, W) (images
    bilinear, the mask nearest) so that a `DataLoader` can stack items of different shapes.
    `transform`: called on each item dict, after resizing.
    """

    def __init__(
        self,
        build_dir: str | Path,
        kept_only: bool = False,
        size: tuple[int, int] | None = None,
        transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    ) -> None:
        store = BuildStore(build_dir)
        if not store.has_manifest("counterfactuals"):
            raise FileNotFoundError(f"{store.root} has no manifest.parquet: build it first")
        images = {r.image_id: r for r in cast(list[SourceImage], store.read("images"))}
        masks = {r.mask_id: r for r in cast(list[ConceptMask], store.read("masks"))}
        rows = sorted(
            cast(list[Counterfactual], store.read("counterfactuals")), key=lambda r: r.cf_id
        )
        self.root = store.root
        self.size = size
        self.transform = transform
        self.rows: list[dict[str, Any]] = []
        for row in rows:
            if kept_only and not row.kept:
                continue
            label = _label(row.label)
            clean = _label(row.clean_pred)
            self.rows.append(
                {
                    "image_path": images[row.image_id].path,
                    "mask_path": masks[row.mask_id].path,
                    "cf_path": row.path,
                    "label": label,
                    "clean_pred": clean,
                    "cf_pred": _label(row.cf_pred),
                    "reference": label if label != UNLABELLED else clean,
                    "kept": bool(row.kept),
                    **{name: getattr(row, name) for name in METADATA},
                }
            )

    def __len__(self) -> int:
        return len(self.rows)

    def _read(self, relpath: str, mask: bool = False) -> torch.Tensor:
        with Image.open(self.root / relpath) as image:
            if mask:
                pixels = (np.asarray(image.convert("L")) > 127).astype(np.float32)[None]
                tensor = torch.from_numpy(pixels)
                mode = "nearest"
            else:
                array = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
                tensor = torch.from_numpy(array.transpose(2, 0, 1).copy())
                mode = "bilinear"
        if self.size is not None and tuple(tensor.shape[1:]) != tuple(self.size):
            kwargs = {"align_corners": False, "antialias": True} if mode == "bilinear" else {}
            tensor = torch.nn.functional.interpolate(
                tensor[None], size=self.size, mode=mode, **kwargs
            )[0]
        return tensor

    def __getitem__(self, index: int) -> dict[str, Any]:
        row = self.rows[index]
        item: dict[str, Any] = {
            "image": self._read(row["image_path"]),
            "mask": self._read(row["mask_path"], mask=True),
            "counterfactual": self._read(row["cf_path"]),
            **{k: torch.tensor(row[k]) for k in ("label", "clean_pred", "cf_pred", "reference")},
            "kept": torch.tensor(row["kept"]),
            **{name: row[name] for name in METADATA},
        }
        return self.transform(item) if self.transform is not None else item
