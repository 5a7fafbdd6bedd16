"""The Classifier protocol: a batched image → class-probability function with an identity."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np
import torch


@runtime_checkable
class Classifier(Protocol):
    """A loaded classifier.

    `id` names the architecture and the weights' sha256, so cache keys change when weights do.
    `preprocess` turns uint8 RGB arrays into the model's input batch (its own resize, crop and
    normalisation); `predict_proba` runs batches of them and returns an N x C float32 array.
    """

    id: str
    class_names: list[str]
    model: torch.nn.Module
    device: torch.device

    def preprocess(self, images: Sequence[np.ndarray]) -> torch.Tensor: ...

    def predict_proba(self, images: Sequence[np.ndarray]) -> np.ndarray: ...


def resolve_device(device: str = "auto") -> torch.device:
    """`auto` picks CUDA when present, else CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def topk(probs: np.ndarray, k: int) -> list[list[list[float]]]:
    """Per row, the k most probable classes as [[class_index, prob], ...], most probable first."""
    k = min(k, probs.shape[1])
    order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return [[[int(c), float(row[c])] for c in idx] for row, idx in zip(probs, order, strict=True)]
