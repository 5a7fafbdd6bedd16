"""The Segmenter protocol: find named concepts in a batch of images."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class ConceptDetection:
    """One concept found in one image: a boolean mask of the image's size and a score in [0, 1]."""

    concept: str
    mask: np.ndarray  # bool, H x W, same size as the input image
    score: float


@runtime_checkable
class Segmenter(Protocol):
    """A loaded segmenter. `id` names the backend, its settings that change masks, and weights.

    `segment` takes uint8 RGB images (H x W x 3) and, per image, its class index or None, and
    returns per image the detections of the concepts it was asked for (possibly none).
    """

    id: str
    concepts: tuple[str, ...]

    def segment(
        self, images: Sequence[np.ndarray], labels: Sequence[int | None]
    ) -> list[list[ConceptDetection]]: ...
