"""Mask refinement for the `cam` segmenter: GrabCut from a CAM, superpixel voting, clean-up.

Every function here is deterministic: GrabCut's GMM initialisation uses OpenCV's global RNG,
which `grabcut_from_cam` seeds before each call, and SLIC is deterministic.
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy import ndimage


def resize_longer(image: np.ndarray, size: int) -> tuple[np.ndarray, float]:
    """Resize so the longer side is `size` (area when shrinking, bicubic when growing)."""
    height, width = image.shape[:2]
    scale = size / max(height, width)
    new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
    if (new_h, new_w) == (height, width):
        return image, 1.0
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    return cv2.resize(image, (new_w, new_h), interpolation=interp), scale


def resize_map(values: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a float map to (height, width)."""
    if values.shape[:2] == shape:
        return values.astype(np.float32, copy=False)
    return cv2.resize(
        values.astype(np.float32), (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR
    )


def resize_mask(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Resize a boolean mask to (height, width): bilinear on 0/1, then ≥ 0.5 (smooth edges)."""
    if mask.shape == shape:
        return mask.astype(bool, copy=True)
    return resize_map(mask.astype(np.float32), shape) >= 0.5


def keep_seeded_components(mask: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """Connected components of `mask` that touch `seeds`; the largest one if none does."""
    labels, count = ndimage.label(mask)
    if count == 0:
        return mask.astype(bool, copy=True)
    touched = np.unique(labels[seeds & mask])
    touched = touched[touched > 0]
    if touched.size == 0:
        sizes = np.bincount(labels.ravel(), minlength=count + 1)
        sizes[0] = 0
        touched = np.array([int(np.argmax(sizes))])
    return np.isin(labels, touched)


def fill_holes(mask: np.ndarray) -> np.ndarray:
    return ndimage.binary_fill_holes(mask).astype(bool)


def grabcut_from_cam(
    image: np.ndarray,
    cam: np.ndarray,
    fg_threshold: float,
    sure_fg_threshold: float,
    sure_bg_threshold: float,
    iterations: int = 5,
    seed: int = 0,
) -> np.ndarray:
    """GrabCut on an RGB uint8 image, initialised from a CAM normalised to [0, 1].

    cam ≥ sure_fg → sure foreground; cam ≥ fg → probable foreground; cam < sure_bg → sure
    background; the rest probable background. Returns the thresholded CAM itself when GrabCut
    cannot run (no background or no foreground samples) or returns an empty mask.
    """
    cam_mask = cam >= fg_threshold
    init = np.full(cam.shape, cv2.GC_PR_BGD, dtype=np.uint8)
    init[cam_mask] = cv2.GC_PR_FGD
    init[cam >= sure_fg_threshold] = cv2.GC_FGD
    init[cam < sure_bg_threshold] = cv2.GC_BGD
    has_fg = bool(np.any((init == cv2.GC_FGD) | (init == cv2.GC_PR_FGD)))
    has_bg = bool(np.any((init == cv2.GC_BGD) | (init == cv2.GC_PR_BGD)))
    if not (has_fg and has_bg) or iterations <= 0:
        return cam_mask
    bgr = np.ascontiguousarray(image[..., ::-1])
    bgd_model = np.zeros((1, 65), np.float64)
    fgd_model = np.zeros((1, 65), np.float64)
    cv2.setRNGSeed(seed)
    try:
        cv2.grabCut(bgr, init, None, bgd_model, fgd_model, iterations, cv2.GC_INIT_WITH_MASK)
    except cv2.error:
        return cam_mask
    refined = (init == cv2.GC_FGD) | (init == cv2.GC_PR_FGD)
    return refined if refined.any() else cam_mask


def superpixel_mask(
    image: np.ndarray,
    heat: np.ndarray,
    threshold: float,
    n_segments: int,
    compactness: float = 10.0,
) -> np.ndarray:
    """SLIC superpixels of `image` whose mean `heat` exceeds `threshold`.

    Falls back to `heat > threshold` itself when some pixels exceed it but no superpixel's mean
    does (a peak narrower than the superpixels).
    """
    from skimage.segmentation import slic

    raw = heat > threshold
    if not raw.any():
        return raw
    labels = slic(image, n_segments=n_segments, compactness=compactness, start_label=0)
    counts = np.bincount(labels.ravel())
    sums = np.bincount(labels.ravel(), weights=heat.ravel().astype(np.float64))
    means = sums / np.maximum(counts, 1)
    mask = (means > threshold)[labels]
    return mask if mask.any() else raw


def gaussian_window(size: int) -> np.ndarray:
    """A Gaussian over `size` pixels centred on the window, σ = size / 4, peak 1."""
    centre = (size - 1) / 2.0
    sigma = max(size / 4.0, 1e-6)
    offsets = np.arange(size, dtype=np.float64) - centre
    return np.exp(-0.5 * (offsets / sigma) ** 2)


def as_rgb(image: np.ndarray) -> np.ndarray:
    """uint8 H x W x 3 (grey is repeated, alpha dropped)."""
    array = np.asarray(image)
    if array.dtype != np.uint8:
        raise ValueError(f"images must be uint8, got {array.dtype}")
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] not in (3, 4):
        raise ValueError(f"images must be H x W x 3 RGB, got shape {array.shape}")
    return np.ascontiguousarray(array[:, :, :3])
