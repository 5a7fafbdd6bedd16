"""Drawing blocks shared by the texture generators: tileable noise, palettes, shading.

Kept apart from `tools/make_textures.py` so that each family of generated styles can live in its
own module; every function is pure given its random generator, so a seed fixes the pixels.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

SIZE = 512  # side, in pixels, every procedural texture is drawn at

Colour = tuple[int, int, int]
Palette = Sequence[tuple[float, Colour]]


def normalise(values: np.ndarray, low: float = 0.0, high: float = 100.0) -> np.ndarray:
    """Rescale to [0, 1] between the given percentiles (robust to a few extreme pixels)."""
    lo, hi = np.percentile(values, [low, high])
    return np.clip((values - lo) / max(hi - lo, 1e-9), 0.0, 1.0)


def fbm(rng: np.random.Generator, size: int, sigma: float, octaves: int, gain: float) -> np.ndarray:
    """Tileable fractal noise in [0, 1]: blurred white noise summed over halving scales.

    `mode="wrap"` makes every procedural texture seamless, which hides the stylizer's tile seams.
    """
    total = np.zeros((size, size))
    amplitude = 1.0
    for octave in range(octaves):
        layer = ndimage.gaussian_filter(
            rng.standard_normal((size, size)), sigma / 2**octave, mode="wrap"
        )
        total += amplitude * layer / max(layer.std(), 1e-9)
        amplitude *= gain
    return normalise(total)


def stretched_noise(rng: np.random.Generator, size: int, sigma: tuple[float, float]) -> np.ndarray:
    """Anisotropic tileable noise (sigma per axis, y then x), standardised: wood fibres."""
    layer = ndimage.gaussian_filter(rng.standard_normal((size, size)), sigma, mode="wrap")
    return (layer - layer.mean()) / max(layer.std(), 1e-9)


def colourise(values: np.ndarray, palette: Palette) -> np.ndarray:
    """Map values in [0, 1] to uint8 RGB by piecewise-linear interpolation between colour stops."""
    positions = [p for p, _ in palette]
    channels = [np.interp(values, positions, [c[i] for _, c in palette]) for i in range(3)]
    return np.clip(np.rint(np.stack(channels, axis=-1)), 0, 255).astype(np.uint8)


def blobs(rng: np.random.Generator, size: int, count: int, sigma: float) -> np.ndarray:
    """`count` soft round spots of peak ~1 at random places (tileable): snow flakes."""
    canvas = np.zeros((size, size))
    ys, xs = rng.integers(0, size, count), rng.integers(0, size, count)
    np.add.at(canvas, (ys, xs), rng.uniform(0.6, 1.0, count))
    return ndimage.gaussian_filter(canvas, sigma, mode="wrap") * (2 * np.pi * sigma**2)


def shade(height: np.ndarray, strength: float) -> np.ndarray:
    """Lambert shading in [0, 1] of a height field lit from the top left."""
    gy, gx = np.gradient(height * strength)
    normal = np.stack([-gx, -gy, np.ones_like(height)])
    normal /= np.linalg.norm(normal, axis=0)
    light = np.array([-0.5, -0.6, 0.62])
    return np.clip(np.tensordot(light / np.linalg.norm(light), normal, axes=1), 0.0, 1.0)


def grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates (y, x) as float arrays."""
    return np.mgrid[0:size, 0:size].astype(np.float64)
