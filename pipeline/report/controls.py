"""The two controls of a counterfactual: a neutral re-rendering and an area-matched random mask.

A counterfactual changes a region *and* gives it a texture. Two controls separate the two:
- **neutral** (`neutral_fill`): the same mask, the same blend and feathering, but the texture
  replaced by the concept's own pixels made texture-free (their mean colour, or a blur of them
  that never reads pixels outside the mask). cf − neutral is what *this texture* adds;
- **random region** (`control_mask`): the same stylized image in a random mask of the concept's
  area, by default outside the concept. cf − random is what *this region* adds.

The random mask lies in the same image, has exactly the concept mask's pixel count, and is a
few smooth blobs: the top-k pixels of a seeded, Gaussian-blurred noise field. It depends only on
(seed, mask id, image size, area), so every texture of one concept mask shares one control, and
a re-run gives the same pixels. Placement `elsewhere` (default) puts it outside the concept
first and overlaps only as much as the area forces (a concept over half the image); `anywhere`
ignores the concept, so on a stuff concept such as road it lands largely on the road itself.
The control counterfactual is `pipeline.transform.composite(image, stylized, control, blend)`
with the counterfactual's own stylized image, blend and feather.
"""

from __future__ import annotations

from typing import Literal

import cv2
import numpy as np

from pipeline.hashing import stable_key

CONTROL_VERSION = "control-v1"
Placement = Literal["anywhere", "elsewhere"]
Neutral = Literal["mean", "blur"]
DEFAULT_PLACEMENT: Placement = "elsewhere"
DEFAULT_NEUTRAL: Neutral = "mean"


def control_seed(seed: int, mask_id: str) -> int:
    """The generator seed of one mask's control: a stable hash of (version, seed, mask id)."""
    return int(stable_key(CONTROL_VERSION, seed, mask_id, length=16), 16)


def random_blob_mask(
    shape: tuple[int, int],
    area: int,
    rng_seed: int,
    smoothness: float = 0.08,
    avoid: np.ndarray | None = None,
) -> np.ndarray:
    """A bool mask of exactly `area` pixels: the top-`area` pixels of smooth seeded noise.

    `smoothness` is the blur sigma as a fraction of the longer side (larger: fewer, rounder
    blobs). Pixels in `avoid` are taken only after every other pixel.
    """
    height, width = shape
    if not 0 <= area <= height * width:
        raise ValueError(f"area {area} does not fit a {height}x{width} image")
    field = np.random.default_rng(rng_seed).standard_normal((height, width)).astype(np.float32)
    sigma = max(1.0, smoothness * max(height, width))
    field = cv2.GaussianBlur(field, (0, 0), sigmaX=sigma, sigmaY=sigma)
    field = field.astype(np.float64).reshape(-1)
    if avoid is not None:
        field = field - np.where(avoid.reshape(-1), field.max() - field.min() + 1.0, 0.0)
    order = np.argsort(-field, kind="stable")[:area]
    mask = np.zeros(height * width, dtype=bool)
    mask[order] = True
    return mask.reshape(height, width)


def control_mask(
    concept_mask: np.ndarray,
    seed: int,
    mask_id: str,
    placement: Placement = DEFAULT_PLACEMENT,
    smoothness: float = 0.08,
) -> np.ndarray:
    """The area-matched control of one concept mask (bool H x W in, bool H x W out)."""
    if placement not in ("anywhere", "elsewhere"):
        raise ValueError(f"control placement must be 'anywhere' or 'elsewhere', got {placement!r}")
    concept = concept_mask.astype(bool)
    return random_blob_mask(
        concept.shape,
        int(concept.sum()),
        control_seed(seed, mask_id),
        smoothness=smoothness,
        avoid=concept if placement == "elsewhere" else None,
    )


def overlap_fraction(concept_mask: np.ndarray, control: np.ndarray) -> float:
    """Share of the concept's pixels that the control also covers (NaN for an empty concept)."""
    area = int(concept_mask.sum())
    return float(np.logical_and(concept_mask, control).sum() / area) if area else float("nan")


def neutral_fill(
    image: np.ndarray,
    concept_mask: np.ndarray,
    kind: Neutral = DEFAULT_NEUTRAL,
    sigma_frac: float = 0.04,
) -> np.ndarray:
    """A texture-free stand-in for the stylized image inside the concept (uint8 H x W x 3).

    `mean`: every pixel is the mean colour of the concept's pixels. `blur`: a normalised Gaussian
    blur of the concept's pixels only (blur(image·m) / blur(m), sigma = `sigma_frac` × longer
    side), so the concept keeps its coarse colour layout and no colour leaks in from outside.
    Outside the mask the image is returned unchanged (it is composited with the mask anyway).
    Composite it exactly like the stylized image: `composite(image, fill, mask, blend, feather)`.
    """
    mask = concept_mask.astype(bool)
    out = image.copy()
    if not mask.any():
        return out
    if kind == "mean":
        out[mask] = np.round(image[mask].reshape(-1, 3).mean(0)).astype(np.uint8)
        return out
    if kind != "blur":
        raise ValueError(f"neutral control must be 'mean' or 'blur', got {kind!r}")
    sigma = max(1.0, sigma_frac * max(mask.shape))
    weight = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), sigmaX=sigma, sigmaY=sigma)
    masked = image.astype(np.float32) * mask[..., None]
    blurred = cv2.GaussianBlur(masked, (0, 0), sigmaX=sigma, sigmaY=sigma)
    smooth = blurred / np.maximum(weight, 1e-6)[..., None]
    out[mask] = np.clip(np.round(smooth[mask]), 0, 255).astype(np.uint8)
    return out
