"""Concept location: does a concept's map fall on its ground-truth mask?

IoU of the thresholded map and the pointing game (is the map's maximum inside the mask), each
beside two trivial maps that a map must beat to mean anything: the whole image and a centred
ellipse. A CAV's map is the projection of each position's activation on the CAV's channel
direction (the CAV averaged over positions).
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from pipeline.concepts.crops import centred_ellipse


def iou(prediction: np.ndarray, truth: np.ndarray) -> float:
    """Intersection over union of two boolean masks (NaN when both are empty)."""
    p, t = prediction.astype(bool), truth.astype(bool)
    union = np.logical_or(p, t).sum()
    return float(np.logical_and(p, t).sum() / union) if union else float("nan")


def threshold_map(heatmap: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Pixels at or above `threshold` of the min-max normalised map (none for a flat map)."""
    low, high = float(heatmap.min()), float(heatmap.max())
    if high <= low:
        return np.zeros(heatmap.shape, bool)
    return (heatmap - low) / (high - low) >= threshold


def pointing_game(heatmap: np.ndarray, truth: np.ndarray) -> float:
    """1.0 when the map's maximum (first in row-major order) lies in the mask, else 0.0."""
    y, x = np.unravel_index(int(np.argmax(heatmap)), heatmap.shape)
    return float(bool(truth[y, x]))


def location_scores(
    heatmap: np.ndarray, truth: np.ndarray, threshold: float = 0.5
) -> dict[str, float]:
    """IoU and pointing game of a map against a mask, and of the trivial maps.

    Args:
        heatmap: a map at the mask's size (any real values).
        truth: the ground-truth mask.
        threshold: share of the map's min-max range that counts as "on".

    Returns:
        `iou`, `pointing`, `iou_whole` (the whole image: the mask's area fraction),
        `iou_ellipse` (centred ellipse covering half the image), `pointing_centre` (the
        trivial maps' maximum, the centre pixel, in the mask).
    """
    truth = truth.astype(bool)
    height, width = truth.shape
    ellipse = centred_ellipse(height, width, 0.5)
    return {
        "iou": iou(threshold_map(heatmap, threshold), truth),
        "pointing": pointing_game(heatmap, truth),
        "iou_whole": iou(np.ones_like(truth), truth),
        "iou_ellipse": iou(ellipse, truth),
        "pointing_centre": float(truth[height // 2, width // 2]),
    }


def cav_maps(activations: torch.Tensor, cav: torch.Tensor) -> np.ndarray:
    """Per image, the activation at each position projected on the CAV's channel direction.

    Args:
        activations: N x C x h x w activations of whole images at the CAV's layer.
        cav: the CAV over the flattened activation (C·h·w) or over channels (C).

    Returns:
        N x h x w maps.
    """
    _n, channels, _h, _w = activations.shape
    direction = cav.float().reshape(channels, -1).mean(1)
    return torch.einsum("nchw,c->nhw", activations.float(), direction).numpy()


def upsample(heatmap: np.ndarray, height: int, width: int) -> np.ndarray:
    """A layer-resolution map at the image's size (bilinear)."""
    return cv2.resize(heatmap.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
