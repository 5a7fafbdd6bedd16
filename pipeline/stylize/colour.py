"""Colour helpers for the texture stylizer: pixel-format normalisation and statistics matching.

Statistics are matched in a colour-opponent space with a separate luminance channel (CIE Lab by
default) so that brightness, which the stylizer takes partly from the input photo, can be handled
apart from the texture's hue. All functions are pure and work on float32 arrays.
"""

from __future__ import annotations

import cv2
import numpy as np

#: Supported spaces; channel 0 is luminance in each, so callers can treat them alike.
COLOUR_SPACES: dict[str, tuple[int, int]] = {
    "lab": (cv2.COLOR_RGB2Lab, cv2.COLOR_Lab2RGB),
    "ycrcb": (cv2.COLOR_RGB2YCrCb, cv2.COLOR_YCrCb2RGB),
}
#: Span of the float luminance channel in each space (Lab L: 0..100, YCrCb Y: 0..1).
LUMA_RANGE: dict[str, float] = {"lab": 100.0, "ycrcb": 1.0}

_EPS = 1e-6


def to_rgb_uint8(image: np.ndarray) -> np.ndarray:
    """Return `image` as contiguous uint8 RGB (H x W x 3).

    Accepts grayscale (H x W or H x W x 1), RGB and RGBA, so user-supplied style images need no
    preparation. Alpha is composited over the alpha-weighted mean colour of the image rather than
    dropped, because the RGB under fully transparent pixels is often arbitrary (black or garbage)
    and would otherwise leak into the texture's colour statistics. 16-bit input is scaled down.
    """
    array = np.asarray(image)
    if array.dtype == np.uint16:
        array = (array >> 8).astype(np.uint8)
    if array.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got dtype {array.dtype}")
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4) or min(array.shape[:2]) < 1:
        raise ValueError(f"expected an H x W, H x W x 1, x 3 or x 4 image, got {array.shape}")
    channels = array.shape[2]
    if channels == 1:
        return np.ascontiguousarray(np.repeat(array, 3, axis=2))
    if channels == 3:
        return np.ascontiguousarray(array)
    rgb = array[:, :, :3].astype(np.float32)
    alpha = array[:, :, 3:].astype(np.float32) / 255.0
    total = float(alpha.sum())
    if total <= _EPS:  # fully transparent: nothing better than the raw colours
        return np.ascontiguousarray(array[:, :, :3])
    backdrop = (rgb * alpha).sum(axis=(0, 1)) / total
    out = rgb * alpha + backdrop * (1.0 - alpha)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _codes(space: str) -> tuple[int, int]:
    try:
        return COLOUR_SPACES[space]
    except KeyError:
        raise ValueError(
            f"unknown colour space {space!r}; available: {', '.join(COLOUR_SPACES)}"
        ) from None


def rgb_to_space(rgb: np.ndarray, space: str = "lab") -> np.ndarray:
    """uint8 (or float in [0, 1]) RGB → float32 image in `space` (Lab: L in [0, 100])."""
    forward, _ = _codes(space)
    if rgb.dtype == np.uint8:
        rgb = rgb.astype(np.float32) * (1.0 / 255.0)
    return cv2.cvtColor(np.ascontiguousarray(rgb, dtype=np.float32), forward)


def luminance(rgb: np.ndarray, space: str = "lab") -> np.ndarray:
    """Luminance channel of uint8 RGB as float32, in 8-bit units of `space` (Lab L * 255/100).

    Uses OpenCV's table-driven 8-bit conversion, several times faster than the float path; the
    stylizer standardises this channel, so the unit and the 8-bit quantisation do not matter.
    """
    forward, _ = _codes(space)
    return cv2.cvtColor(np.ascontiguousarray(rgb, dtype=np.uint8), forward)[:, :, 0].astype(
        np.float32
    )


def to_rgb_in_gamut(
    image: np.ndarray, space: str, toward: float, steps: int = 6, tolerance: float = 0.01
) -> np.ndarray:
    """float32 image in `space` → uint8 RGB, out-of-gamut pixels moved in luminance only.

    Why: clipping an out-of-gamut colour per RGB channel changes its hue and chroma (the dark,
    saturated shadows that lifted contrast gives a wood or bark texture turn grey), so the output
    would leave the texture's colour range. Moving only the luminance towards `toward` (the
    texture's mean, taken as in gamut) keeps the texture's colour and gives up just the
    brightness the gamut cannot show. A pixel is out of gamut when the round trip through
    clipped RGB moves it by more than `tolerance` of the luminance range; `steps` bisections
    place it within luminance-range / 2**steps of the gamut's edge.
    """
    image = np.ascontiguousarray(image, dtype=np.float32)
    rgb = space_to_float_rgb(image, space)
    # OpenCV clips to [0, 1]: only pixels with a channel at 0 or 1 can be outside
    edge = cv2.inRange(rgb, (1e-7,) * 3, (1.0 - 1e-7,) * 3) == 0
    if edge.any():
        fixed = keep_in_gamut(image[edge][None], space, toward, steps, tolerance)
        rgb[edge] = space_to_float_rgb(fixed, space)[0]
    return np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8)


def keep_in_gamut(
    image: np.ndarray, space: str, toward: float, steps: int = 6, tolerance: float = 0.01
) -> np.ndarray:
    """`image` (in `space`) with the luminance of its out-of-gamut pixels moved towards `toward`
    until their colour fits sRGB (see `to_rgb_in_gamut`)."""
    image = np.ascontiguousarray(image, dtype=np.float32)
    limit = tolerance * LUMA_RANGE[space]

    def fits(pixels: np.ndarray) -> np.ndarray:
        error = np.abs(rgb_to_space(space_to_float_rgb(pixels, space), space) - pixels)
        return (error[..., 0] <= limit) & (error[..., 1] <= limit) & (error[..., 2] <= limit)

    outside = ~fits(image)
    if not outside.any():
        return image
    pixels = image[outside][None]
    far, near = pixels[0, :, 0].copy(), np.full(pixels.shape[1], toward, np.float32)
    for _ in range(steps):
        pixels[0, :, 0] = 0.5 * (far + near)
        inside = fits(pixels)[0]
        near = np.where(inside, pixels[0, :, 0], near)
        far = np.where(inside, far, pixels[0, :, 0])
    pixels[0, :, 0] = near
    out = image.copy()
    out[outside] = pixels[0]
    return out


def space_to_float_rgb(image: np.ndarray, space: str = "lab") -> np.ndarray:
    """float32 image in `space` → float32 RGB (OpenCV clips it to [0, 1])."""
    _, backward = _codes(space)
    return cv2.cvtColor(np.ascontiguousarray(image, dtype=np.float32), backward)


def channel_stats(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and standard deviation (float64, shape (C,)) of an H x W x C image.

    cv2.meanStdDev accumulates in double precision and is ~10x faster than numpy's strided
    per-channel reductions, which dominated the stylizer's run time.
    """
    mean, std = cv2.meanStdDev(np.ascontiguousarray(image, dtype=np.float32))
    return mean.ravel(), std.ravel()


def match_stats(image: np.ndarray, target_mean: np.ndarray, target_std: np.ndarray) -> np.ndarray:
    """Shift and scale each channel of `image` to the target mean/std (Reinhard transfer).

    A channel with (near) zero spread is only shifted: scaling noise up from nothing would invent
    structure that the texture does not have.
    """
    mean, std = channel_stats(image)
    gain = np.where(std > _EPS, np.asarray(target_std) / np.maximum(std, _EPS), 1.0)
    offset = np.asarray(target_mean, dtype=np.float32) - (mean * gain).astype(np.float32)
    return image * gain.astype(np.float32) + offset


def standardise(channel: np.ndarray) -> np.ndarray:
    """Zero-mean, unit-std copy of a 2-D channel (all zeros if the channel is flat)."""
    stats = cv2.meanStdDev(np.ascontiguousarray(channel, dtype=np.float32))
    mean, std = float(stats[0][0, 0]), float(stats[1][0, 0])
    if std <= _EPS:
        return np.zeros_like(channel, dtype=np.float32)
    return ((channel - mean) / std).astype(np.float32)
