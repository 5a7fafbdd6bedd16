"""Batched classification of build items, streamed from disk.

With a :class:`~pipeline.editing.split.SplitModel` the part of the network before the edited
layer runs once per image, and every later evaluation of an edit costs only the rest.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from pipeline.editing.build_images import BuildImages, Item
from pipeline.editing.layers import model_device
from pipeline.editing.split import SplitModel


def batched(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class Predictor:
    """Logits of build items under ``model`` (with whatever edit is applied to it right now).

    Items are loaded and preprocessed ``batch_size`` at a time and never kept. With ``split``
    (a :class:`SplitModel` of the same model), the frontier of every row is cached by its
    pixel content and an item seen before is not even loaded again.
    """

    def __init__(
        self,
        model: nn.Module,
        preprocess: Callable[[list[np.ndarray]], Tensor],
        data: BuildImages,
        split: SplitModel | None = None,
        batch_size: int = 32,
    ) -> None:
        self.model = model
        self.preprocess = preprocess
        self.data = data
        self.split = split
        self.batch_size = batch_size
        self._digests: dict[Item, str] = {}
        self.loaded = 0  # items read from disk (for tests and benchmarks)

    def load(self, items: Sequence[Item]) -> Tensor:
        """Preprocessed batch of ``items`` (read from the build)."""
        self.loaded += len(items)
        return self.preprocess([self.data.rgb(item) for item in items])

    def _batch_logits(self, items: Sequence[Item]) -> Tensor:
        device = model_device(self.model)
        split = self.split
        if split is not None and all(item in self._digests for item in items):
            keys = split.cache_keys([self._digests[item] for item in items])
            frontier = split.cached_frontier(keys) if keys is not None else None
            if frontier is not None:
                return split.run_suffix(tuple(v.to(device) for v in frontier)).float().cpu()
        images = self.load(items).to(device)
        if split is None:
            return self.model(images).float().cpu()
        digests = split.row_digests(images)
        self._digests.update(zip(items, digests, strict=True))
        keys = split.cache_keys(digests)
        return split.run_suffix(split.run_prefix(images, keys)).float().cpu()

    @torch.no_grad()
    def logits(self, items: Sequence[Item]) -> Tensor:
        """``(N, K)`` float32 logits on the CPU, in the order of ``items``."""
        items = list(items)
        if not items:
            return torch.zeros(0, 0)
        was_training = self.model.training
        self.model.eval()
        try:
            return torch.cat(
                [self._batch_logits(batch) for batch in batched(items, self.batch_size)]
            )
        finally:
            self.model.train(was_training)

    def predict(self, items: Sequence[Item]) -> dict[Item, int]:
        """Top-1 class of each distinct item."""
        unique = list(dict.fromkeys(items))
        if not unique:
            return {}
        top1 = self.logits(unique).argmax(1).tolist()
        return dict(zip(unique, top1, strict=True))
