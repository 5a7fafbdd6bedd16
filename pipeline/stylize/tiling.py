"""Texture canvas synthesis: cover an H x W area with randomly offset, flipped patches of a style.

This is a cheap stand-in for image quilting: patches on a regular grid overlap by a few pixels and
are blended with linear ramps. The blend is *variance preserving* (deviations from the mean are
divided by sqrt(sum w^2) instead of sum w), because a plain weighted average of two unrelated
texture patches washes out contrast along every seam and shows the grid. All randomness comes from
the caller's generator, so the canvas is a deterministic function of the seed.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

MIN_STYLE_SIDE = 8


def style_short_side(height: int, width: int, scale: float) -> int:
    """Short side, in pixels, that the style image is resampled to for an H x W image.

    At `scale` 1.0 the whole style image spans half the image's longer side, so the texture's
    elements keep the same size relative to the photo whatever its resolution.
    """
    return max(MIN_STYLE_SIDE, round(scale * max(height, width) / 2.0))


def resize_short_side(image: np.ndarray, short_side: int) -> np.ndarray:
    """Resize keeping the aspect ratio so that min(H, W) == short_side (area filter to shrink)."""
    height, width = image.shape[:2]
    factor = short_side / min(height, width)
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    if size == (width, height):
        return image.copy()
    interpolation = cv2.INTER_AREA if factor < 1.0 else cv2.INTER_LINEAR
    return cv2.resize(image, size, interpolation=interpolation)


def tile_geometry(style_short: int, tile: float, overlap: float) -> tuple[int, int]:
    """(core tile size, overlap) in pixels, such that one patch (core + overlap) fits the style."""
    core = max(2, round(tile * style_short))
    seam = max(1, round(overlap * core))
    if core + seam > style_short:  # keep the same proportions, shrunk to fit
        core = max(1, math.floor(style_short / (1.0 + overlap)))
        seam = max(0, min(round(overlap * core), style_short - core))
    return core, seam


def ramp(length: int, seam: int) -> np.ndarray:
    """1-D blending weight: rises over `seam` pixels, flat, falls over the last `seam` pixels.

    Rising and falling ramps of neighbouring patches sum to one across a seam; weights stay > 0
    so every canvas pixel is covered even at the canvas border.
    """
    k = np.arange(length, dtype=np.float32)
    if seam <= 0:
        return np.ones(length, dtype=np.float32)
    up = (k + 1.0) / (seam + 1.0)
    down = (length - k) / (seam + 1.0)
    return np.minimum(1.0, np.minimum(up, down)).astype(np.float32)


def synthesize_canvas(
    style: np.ndarray,
    height: int,
    width: int,
    core: int,
    seam: int,
    rng: np.random.Generator,
    flips: bool = True,
) -> np.ndarray:
    """An H x W x C float32 canvas made of `style` patches (style: H' x W' x C float32).

    Patches of (core + seam) pixels are taken at random offsets (and random horizontal/vertical
    flips when `flips`) and laid on a grid with pitch `core`. Random draws happen in one fixed
    order, so equal generator states give identical canvases.
    """
    style_h, style_w, channels = style.shape
    patch = core + seam
    if patch > min(style_h, style_w):
        raise ValueError(f"patch of {patch} px does not fit a {style_h}x{style_w} style image")
    rows = max(1, math.ceil((height - seam) / core))
    cols = max(1, math.ceil((width - seam) / core))
    offsets_y = rng.integers(0, style_h - patch + 1, size=(rows, cols))
    offsets_x = rng.integers(0, style_w - patch + 1, size=(rows, cols))
    flip_bits = rng.integers(0, 2, size=(rows, cols, 2)) if flips else np.zeros((rows, cols, 2))

    mean = np.asarray(cv2.mean(style)[:channels], dtype=np.float32)
    centred = style - mean
    weight_1d = ramp(patch, seam)
    weight = np.outer(weight_1d, weight_1d)
    canvas_h, canvas_w = rows * core + seam, cols * core + seam
    acc = np.zeros((canvas_h, canvas_w, channels), dtype=np.float32)
    wsq = np.zeros((canvas_h, canvas_w), dtype=np.float32)
    weight_sq = weight * weight
    weight_3d = np.ascontiguousarray(np.broadcast_to(weight[:, :, None], (patch, patch, channels)))
    scratch = np.empty((patch, patch, channels), dtype=np.float32)
    for r in range(rows):
        for c in range(cols):
            oy, ox = int(offsets_y[r, c]), int(offsets_x[r, c])
            piece = centred[oy : oy + patch, ox : ox + patch]
            if flip_bits[r, c, 0]:
                piece = piece[::-1]
            if flip_bits[r, c, 1]:
                piece = piece[:, ::-1]
            y, x = r * core, c * core
            np.multiply(piece, weight_3d, out=scratch)
            acc[y : y + patch, x : x + patch] += scratch
            wsq[y : y + patch, x : x + patch] += weight_sq
    scale = 1.0 / np.sqrt(wsq[:height, :width])
    return acc[:height, :width] * scale[:, :, None] + mean
