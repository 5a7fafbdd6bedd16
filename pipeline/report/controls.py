"""Area-matched random-mask controls: the same edit applied to a random region of the same size.

A concept's sensitivity only means something against a control: re-texturing *any* quarter of
an image may break a prediction. The control mask lies in the same image, has exactly the
concept mask's pixel count, and is a few smooth random blobs: the top-k pixels of a seeded,
Gaussian-blurred noise field. It depends only on (seed, mask id, image size, area), so every
texture of one concept mask shares one control, and a re-run gives the same pixels.

Placement `anywhere` (default) ignores where the concept is, so a control may overlap it by
chance (about the concept's area fraction on average); `elsewhere` puts the control outside the
concept first and overlaps only as much as the area forces (a concept over half the image).
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
    placement: Placement = "anywhere",
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
