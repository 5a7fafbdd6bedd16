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
    candidates: int = 1,
) -> np.ndarray:
    """An H x W x C float32 canvas made of `style` patches (style: H' x W' x C float32).

    Patches of (core + seam) pixels are taken at random offsets (and random horizontal/vertical
    flips when `flips`) and laid on a grid with pitch `core`. With `candidates` > 1 each patch
    is the one of that many random draws that best matches, in the overlap, the patches already
    laid above and to its left (image quilting's patch choice, Efros & Freeman 2001): photos
    with structure (cobbles, planks, tyre tracks) then continue across seams instead of
    ghosting. Random draws happen in one fixed order, so equal generator states give identical
    canvases.
    """
    style_h, style_w, channels = style.shape
    patch = core + seam
    if patch > min(style_h, style_w):
        raise ValueError(f"patch of {patch} px does not fit a {style_h}x{style_w} style image")
    rows = max(1, math.ceil((height - seam) / core))
    cols = max(1, math.ceil((width - seam) / core))
    if candidates < 1:
        raise ValueError(f"candidates must be >= 1, got {candidates}")
    if candidates == 1:  # the original draw order: canvases of earlier versions are unchanged
        offsets_y = rng.integers(0, style_h - patch + 1, size=(rows, cols))
        offsets_x = rng.integers(0, style_w - patch + 1, size=(rows, cols))
        flip_bits = rng.integers(0, 2, size=(rows, cols, 2)) if flips else np.zeros((rows, cols, 2))
    else:
        offsets_y, offsets_x, flip_bits = _matched_draws(
            style, rows, cols, core, seam, rng, flips, candidates
        )

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


def _piece(style: np.ndarray, oy: int, ox: int, patch: int, flip: np.ndarray) -> np.ndarray:
    piece = style[oy : oy + patch, ox : ox + patch]
    if flip[0]:
        piece = piece[::-1]
    if flip[1]:
        piece = piece[:, ::-1]
    return piece


def _matched_draws(
    style: np.ndarray,
    rows: int,
    cols: int,
    core: int,
    seam: int,
    rng: np.random.Generator,
    flips: bool,
    candidates: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Offsets and flips per grid cell, each the best of `candidates` draws by the squared
    difference to the already chosen left and upper neighbours over the shared overlap."""
    style_h, style_w = style.shape[:2]
    patch = core + seam
    shape = (rows, cols, candidates)
    all_y = rng.integers(0, style_h - patch + 1, size=shape)
    all_x = rng.integers(0, style_w - patch + 1, size=shape)
    all_flips = rng.integers(0, 2, size=(*shape, 2)) if flips else np.zeros((*shape, 2), int)
    offsets_y = np.zeros((rows, cols), np.int64)
    offsets_x = np.zeros((rows, cols), np.int64)
    flip_bits = np.zeros((rows, cols, 2), np.int64)
    chosen: dict[tuple[int, int], np.ndarray] = {}
    for r in range(rows):
        for c in range(cols):
            best, best_cost = 0, np.inf
            for k in range(candidates):
                piece = _piece(
                    style, int(all_y[r, c, k]), int(all_x[r, c, k]), patch, all_flips[r, c, k]
                )
                cost = 0.0
                if seam and c > 0:
                    cost += float(np.square(piece[:, :seam] - chosen[r, c - 1][:, core:]).sum())
                if seam and r > 0:
                    cost += float(np.square(piece[:seam] - chosen[r - 1, c][core:]).sum())
                if cost < best_cost:
                    best, best_cost = k, cost
            offsets_y[r, c], offsets_x[r, c] = all_y[r, c, best], all_x[r, c, best]
            flip_bits[r, c] = all_flips[r, c, best]
            chosen[r, c] = _piece(
                style, int(offsets_y[r, c]), int(offsets_x[r, c]), patch, flip_bits[r, c]
            )
    return offsets_y, offsets_x, flip_bits


def seam_visibility(canvas: np.ndarray, core: int, seam: int) -> float:
    """How much the tile borders of a canvas stand out: the mean absolute step between
    neighbouring pixels across the middle lines of the seams, over that across every other
    line (luminance, both directions). About 1: no visible seam; a hard tile edge gives 2 or more.
    """
    gray = canvas.astype(np.float64)
    if gray.ndim == 3:
        gray = gray.mean(axis=2)
    steps_y = np.abs(np.diff(gray, axis=0)).mean(axis=1)  # step between rows i and i + 1
    steps_x = np.abs(np.diff(gray, axis=1)).mean(axis=0)
    on_seam, elsewhere = [], []
    for steps in (steps_y, steps_x):
        # the step between rows (or columns) k * core + seam // 2 - 1 and the next one
        lines = {k * core + seam // 2 - 1 for k in range(1, len(steps) // core + 1)}
        lines = {line for line in lines if 0 <= line < len(steps)}
        mask = np.zeros(len(steps), bool)
        mask[list(lines)] = True
        on_seam.append(steps[mask])
        elsewhere.append(steps[~mask])
    seam_step = float(np.concatenate(on_seam).mean())
    return seam_step / max(float(np.concatenate(elsewhere).mean()), 1e-9)
