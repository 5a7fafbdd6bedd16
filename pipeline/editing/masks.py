"""Concept masks in the classifier's input geometry.

:func:`mask_transform` replays the geometric part of the classifier's preprocessing (resize,
centre crop, pad) on masks with nearest-neighbour interpolation, so a mask stays on the pixels
it marks; :func:`resize_mask` brings a stored mask to its image's size.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

_PHOTOMETRIC = {
    "ToTensor",
    "MaybeToTensor",
    "PILToTensor",
    "MaybePILToTensor",
    "ToNumpy",
    "Normalize",
    "NormalizeTensor",
    "ConvertImageDtype",
    "ToDtype",
    "ToImage",
    "ToPureTensor",
    "Grayscale",
    "ColorJitter",
}


def _geometric_steps(transform: Any) -> list[Callable[[Image.Image], Image.Image]] | None:
    """The transform's geometric steps re-targeted to masks, or None if one is unknown."""
    from torchvision import transforms as T
    from torchvision.transforms import InterpolationMode

    parts = list(getattr(transform, "transforms", [transform]))
    steps: list[Callable[[Image.Image], Image.Image]] = []
    for part in parts:
        name = type(part).__name__
        if name in _PHOTOMETRIC:
            continue
        if isinstance(part, T.Resize):
            steps.append(
                T.Resize(
                    part.size,
                    interpolation=InterpolationMode.NEAREST,
                    max_size=part.max_size,
                    antialias=True,  # no effect with nearest; avoids a warning
                )
            )
        elif isinstance(part, T.CenterCrop):
            steps.append(part)
        elif isinstance(part, T.Pad):
            steps.append(T.Pad(part.padding, fill=0, padding_mode=part.padding_mode))
        elif name in {"ResizeKeepRatio", "CenterCropOrPad"}:  # timm's eval-time geometry
            twin = copy.copy(part)
            if hasattr(twin, "interpolation"):
                twin.interpolation = InterpolationMode.NEAREST
            if hasattr(twin, "fill"):
                twin.fill = 0
            steps.append(twin)
        else:
            return None
    return steps


def mask_transform(classifier: Any) -> Callable[[np.ndarray], Tensor]:
    """A function: boolean ``(H, W)`` mask of an image → ``(1, h, w)`` float mask in the
    geometry of ``classifier.preprocess`` applied to that image.

    Exact (nearest neighbour) when the classifier exposes a torchvision ``transform`` made of
    known steps (timm's eval transform: resize shorter side, centre crop); otherwise the mask is
    pushed through ``preprocess`` itself as a black/white RGB image, un-normalised with a black
    and a white reference image and thresholded at 0.5 (the resampling kernel blurs the edge by
    a pixel or so).
    """
    steps = _geometric_steps(getattr(classifier, "transform", None))
    if steps is not None and getattr(classifier, "transform", None) is not None:

        def exact(mask: np.ndarray) -> Tensor:
            pil = Image.fromarray(np.asarray(mask, dtype=bool).astype(np.uint8) * 255, "L")
            for step in steps:
                pil = step(pil)
            return torch.from_numpy(np.asarray(pil) > 127).float()[None]

        return exact

    def through_preprocess(mask: np.ndarray) -> Tensor:
        mask = np.asarray(mask, dtype=bool)
        rgb = np.repeat(mask[..., None].astype(np.uint8) * 255, 3, axis=2)
        black, white = np.zeros_like(rgb), np.full_like(rgb, 255)
        out, low, high = classifier.preprocess([rgb, black, white])
        soft = ((out - low) / (high - low).clamp_min(1e-12)).mean(0)
        return (soft > 0.5).float()[None]

    return through_preprocess


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of a boolean mask to ``(height, width)``."""
    mask = np.asarray(mask, dtype=bool)
    if mask.shape == tuple(size):
        return mask
    pil = Image.fromarray(mask.astype(np.uint8) * 255, "L")
    return np.asarray(pil.resize((size[1], size[0]), Image.Resampling.NEAREST)) > 127
