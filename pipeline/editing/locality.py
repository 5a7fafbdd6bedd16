"""Locality on a labelled general image set: what an edit costs outside the cases' domain.

The cases' held-out clean images say how much an edit changes the images of its own domain;
a labelled general set (a folder of ImageNet photos in class-name or synset folders, or a
Hugging Face dataset with a label column) says what it costs elsewhere: the share of images
whose top-1 is unchanged and the accuracy drop. The set is decoded and run up to the edited
layer once per run (its frontier is kept), so every grid candidate of every case costs only
the network after the layer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from pipeline.editing.delta import EditResult, applied
from pipeline.editing.key_sources import HF_PREFIX, decoded_images, is_hf_spec, parse_hf_spec
from pipeline.editing.predict import batched
from pipeline.editing.split import SplitModel
from pipeline.hashing import pixels_id, stable_key
from pipeline.sources.base import Source
from pipeline.sources.folder import FolderSource

Preprocess = Callable[[list[np.ndarray]], Tensor]


@dataclass(frozen=True)
class GeneralLocality:
    """An edit's effect on the general set: images, top-1 unchanged (fraction), accuracy
    before and after (fractions; NaN without labels) and the drop in percentage points."""

    name: str
    n: int
    unchanged: float
    acc_pre: float
    acc_post: float

    @property
    def drop_pp(self) -> float:
        return 100.0 * (self.acc_pre - self.acc_post)


class LabelledSet:
    """A labelled image set held at the edited layer: the frontier of every image (or, for a
    model that cannot be split, its preprocessed input), its labels and its clean top-1."""

    def __init__(
        self,
        name: str,
        inputs: list[tuple[Tensor, ...]],
        labels: Tensor,
        model: nn.Module,
        split: SplitModel | None,
    ) -> None:
        self.name = name
        self._inputs = inputs  # per batch: the frontier, or (preprocessed images,)
        self.labels = labels
        self._model = model
        self._split = split
        self.top1_pre = self._top1()

    @property
    def n(self) -> int:
        return len(self.labels)

    @torch.no_grad()
    def _top1(self) -> Tensor:
        outputs = []
        for batch in self._inputs:
            if self._split is not None:
                logits = self._split.run_suffix(batch)
            else:
                logits = self._model(*batch)
            outputs.append(logits.argmax(1).cpu())
        return torch.cat(outputs) if outputs else torch.zeros(0, dtype=torch.long)

    def measure(self, edit: EditResult | None, scale: float = 1.0) -> GeneralLocality:
        """Top-1 unchanged and accuracy under ``edit`` (scaled); the model is left as it was."""
        if edit is None:
            post = self.top1_pre
        else:
            with applied(self._model, edit, scale):
                post = self._top1()
        known = self.labels >= 0
        labelled = int(known.sum())

        def accuracy(top1: Tensor) -> float:
            return float((top1[known] == self.labels[known]).float().mean()) if labelled else np.nan

        return GeneralLocality(
            name=self.name,
            n=self.n,
            unchanged=float((post == self.top1_pre).float().mean()) if self.n else np.nan,
            acc_pre=accuracy(self.top1_pre),
            acc_post=accuracy(post),
        )


def _source(spec: str, label_column: str) -> tuple[Source, str]:
    if is_hf_spec(spec):
        source = parse_hf_spec(spec)
        source.label_column = label_column
        return source, spec.removeprefix(HF_PREFIX)
    folder = Path(spec).expanduser()
    if (folder / "images").is_dir() and (folder / "manifest.parquet").is_file():
        folder = folder / "images"  # a build: its stored clean images (their labels unknown)
    return FolderSource(folder), folder.name


def load_labelled_set(
    spec: str,
    model: nn.Module,
    preprocess: Preprocess,
    split: SplitModel | None,
    *,
    label_column: str = "label",
    limit: int | None = None,
    max_side: int | None = None,
    batch_size: int = 32,
) -> LabelledSet:
    """Decode a labelled set and run it up to the edited layer once.

    Args:
        spec: a folder (labels from synset or class-name folders and file names) or
            ``hf:NAME_OR_PATH[@SPLIT][#IMAGE_COLUMN]`` (labels from ``label_column``).
        model: the classifier's torch model (the one the edits are applied to).
        preprocess: the classifier's preprocessing of RGB arrays.
        split: the model cut at the edited layer (None: keep the preprocessed inputs).
        label_column: the label column of a Hugging Face dataset.
        limit: the first ``limit`` images (sorted as the source lists them) at most.
        max_side: downscale images to the cases' build resolution first.
        batch_size: images per forward pass.
    """
    source, label = _source(spec, label_column)
    refs = list(source.refs())[:limit] if limit else list(source.refs())
    inputs: list[tuple[Tensor, ...]] = []
    labels: list[int] = []
    ids: list[str] = []
    with torch.no_grad():
        for chunk in batched(refs, batch_size):
            rgbs = []
            for ref, rgb in decoded_images(source, chunk, max_side):
                ids.append(pixels_id(rgb))
                rgbs.append(rgb)
                labels.append(-1 if ref.label is None else int(ref.label))
            if not rgbs:
                continue
            batch = preprocess(rgbs)
            if split is not None:
                inputs.append(split.prefix(batch))
            else:
                inputs.append((batch,))
    if not labels:
        raise ValueError(f"locality set {spec}: no readable image")
    name = f"{label}-{len(ids)}img-{stable_key(sorted(ids), length=12)}"
    return LabelledSet(name, inputs, torch.tensor(labels), model, split)
