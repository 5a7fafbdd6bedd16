"""A build's images as items: counterfactuals, clean images, their masks and reference labels.

:class:`BuildImages` reads the build's manifests once (through :class:`BuildStore`) and loads
one item at a time: a counterfactual (``Item("cf", cf_id)``) or a clean image
(``Item("image", image_id)``), its concept mask, and its *reference label* (the image's own
label; the build classifier's clean prediction for an unlabelled image). :func:`case_items`
lists the items of an edit case by part.

"Correct" always means top-1 equals the item's own reference label, also for cases whose target
is a group of classes (see :mod:`pipeline.editing.groups`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from pipeline.cases import TEST_GROUPS, EditCase
from pipeline.editing.masks import resize_mask
from pipeline.store import BuildStore


class Item(NamedTuple):
    """One image of a build: ``kind`` is ``cf`` (counterfactual) or ``image`` (clean)."""

    kind: str
    id: str


def cf(cf_id: str) -> Item:
    return Item("cf", cf_id)


def image(image_id: str) -> Item:
    return Item("image", image_id)


def _optional_int(value: Any) -> int | None:
    if value is None:
        return None
    try:
        if math.isnan(float(value)):
            return None
    except (TypeError, ValueError):
        return None
    return int(value)


class BuildImages:
    """Read access to a build's counterfactuals, clean images and masks, by item."""

    def __init__(self, build_dir: str | Path) -> None:
        self.store = BuildStore(build_dir)
        cf_columns = ["cf_id", "image_id", "mask_id", "label", "clean_pred", "path", "style_image"]
        self.counterfactuals = self.store.frame("counterfactuals", cf_columns).set_index(
            "cf_id", drop=False
        )
        image_columns = ["image_id", "label", "path", "height", "width"]
        self.images = self.store.frame("images", image_columns).set_index("image_id", drop=False)
        self.masks = self.store.frame("masks", ["mask_id", "path"]).set_index("mask_id", drop=False)

    @property
    def root(self) -> Path:
        return self.store.root

    def clean_of(self, item: Item) -> Item:
        """The clean image of a counterfactual (an image item is its own clean image)."""
        if item.kind == "image":
            return item
        return image(str(self.counterfactuals.at[item.id, "image_id"]))

    def reference(self, item: Item) -> int | None:
        """The label a correct prediction must equal; None for an unlabelled clean image."""
        if item.kind == "cf":
            row = self.counterfactuals.loc[item.id]
            label = _optional_int(row["label"])
            return label if label is not None else _optional_int(row["clean_pred"])
        return _optional_int(self.images.at[item.id, "label"])

    def label(self, item: Item) -> int | None:
        """The item's own class label (its photo's), None where the build has none."""
        if item.kind == "cf":
            return _optional_int(self.counterfactuals.at[item.id, "label"])
        return _optional_int(self.images.at[item.id, "label"])

    def rgb(self, item: Item) -> np.ndarray:
        if item.kind == "cf":
            return self.store.load_image(str(self.counterfactuals.at[item.id, "path"]))
        if item.kind == "image":
            return self.store.load_image(str(self.images.at[item.id, "path"]))
        raise ValueError(f"unknown item kind {item.kind!r}")

    def mask(self, cf_id: str, size: tuple[int, int] | None = None) -> np.ndarray:
        """The concept mask of a counterfactual, at ``size`` (default: its clean image's)."""
        row = self.counterfactuals.loc[cf_id]
        mask = self.store.load_mask(str(self.masks.at[row["mask_id"], "path"]))
        if size is None:
            image_row = self.images.loc[row["image_id"]]
            size = (int(image_row["height"]), int(image_row["width"]))
        return resize_mask(mask, size)


@dataclass(frozen=True)
class CaseItems:
    """The items of a case by part; ``clean`` maps each counterfactual to its clean image."""

    train: list[Item]
    groups: dict[str, list[Item]]
    heldout: list[Item]
    validation: list[Item]
    clean: dict[Item, Item] = field(default_factory=dict)
    validation_cf: list[Item] = field(default_factory=list)

    def test_items(self) -> list[Item]:
        """Every item the final evaluation classifies (never used for selection)."""
        items = [item for group in self.groups.values() for item in group]
        items += [self.clean[item] for item in items]
        items += self.train + [self.clean[item] for item in self.train] + self.heldout
        return list(dict.fromkeys(items))


def case_items(case: EditCase, data: BuildImages) -> CaseItems:
    train = [cf(i) for i in case.train]
    groups = {name: [cf(i) for i in case.test_groups.get(name, [])] for name in TEST_GROUPS}
    tested = [item for group in groups.values() for item in group]
    validation_cf = [cf(i) for i in getattr(case, "validation_cf", [])]
    clean = {item: data.clean_of(item) for item in [*train, *tested, *validation_cf]}
    return CaseItems(
        train=train,
        groups=groups,
        heldout=[image(i) for i in case.heldout],
        validation=[image(i) for i in case.validation],
        clean=clean,
        validation_cf=validation_cf,
    )
