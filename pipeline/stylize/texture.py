"""Training-free texture re-rendering: tile the style, match its colours, keep the photo's shading.

Why this design: the counterfactual only needs the concept region to *look like* the texture while
keeping the object's shape readable, and it must run on CPU in milliseconds for whole datasets.
Steps per image:

1. synthesize a texture canvas the size of the image from randomly offset / flipped patches of
   the style image, resampled so its size is relative to the image (`pipeline.stylize.tiling`);
2. match the canvas's colour statistics (mean/std per channel) to the style image's in a
   perceptual space, Lab by default (`pipeline.stylize.colour`);
3. replace the canvas's luminance by a mix of its own standardised luminance and the input's
   blurred, standardised luminance (weight `shading`), rescaled to the style's luminance mean/std.
   The output's brightness therefore follows the photo's low-frequency shading and structure,
   while its colour statistics stay those of the texture. For very flat textures (snow) the
   photo's part gets at least `min_shading_std` of contrast, or the object would vanish;
4. where the result leaves the sRGB gamut (lifted contrast on a dark, saturated texture), move
   the pixel's luminance towards the texture's mean until it fits, keeping its colour
   (`pipeline.stylize.colour.to_rgb_in_gamut`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np

from pipeline.stylize.colour import (
    COLOUR_SPACES,
    LUMA_RANGE,
    channel_stats,
    luminance,
    match_stats,
    rgb_to_space,
    standardise,
    to_rgb_in_gamut,
    to_rgb_uint8,
)
from pipeline.stylize.tiling import (
    MIN_STYLE_SIDE,
    resize_short_side,
    style_short_side,
    synthesize_canvas,
    tile_geometry,
)

VERSION = "v2"  # v2: out-of-gamut colours keep their chroma (colour.to_rgb_in_gamut)


class TextureStylizer:
    """Re-render images in the texture of a style image (see the module docstring).

    Args:
        scale: texture size relative to the image; at 1.0 the style image's short side spans half
            the image's longer side. Larger values give coarser texture.
        shading: 0..1, how much of the output's luminance variation comes from the input photo's
            shading (0: pure texture, 1: texture hue with the photo's blurred brightness).
        colour_space: where statistics are matched and luminance is mixed: "lab" or "ycrcb".
        tile: patch core size as a fraction of the resampled style's short side.
        overlap: seam width as a fraction of the patch core size.
        shading_blur: Gaussian sigma of the input-luminance blur, as a fraction of the image's
            longer side (0 disables the blur).
        flips: whether patches are randomly flipped (breaks visible repetition; turn off for
            textures with a handedness, e.g. text).
        min_shading_std: floor on the std of the photo's shading term, as a fraction of the
            luminance range (Lab: 0.1 = 10 L units). Only raises contrast for flat textures.
        units_per_height: when set, the texture's size follows the concept, not the image: the
            style image's short side spans `height / units_per_height` pixels, where height is
            the concept's (mask bounding-box) height passed as `heights=` to `stylize`, or the
            image's. A photo of a surface then keeps a physical-looking grain on a small
            concept. None: `scale` decides, relative to the image.
        candidates: patches per grid cell to choose from, the one that best matches its left
            and upper neighbours in the overlap (1: random patches, as before). 4-8 keeps the
            structure of photographed surfaces continuous across tile seams.

    Output depends only on (image, style, seed): each image's random draws are seeded by
    (seed, height, width), not by its position in the batch, so batching never changes results.
    """

    def __init__(
        self,
        scale: float = 1.0,
        shading: float = 0.6,
        colour_space: str = "lab",
        tile: float = 0.5,
        overlap: float = 0.25,
        shading_blur: float = 0.015,
        flips: bool = True,
        min_shading_std: float = 0.1,
        units_per_height: float | None = None,
        candidates: int = 1,
    ) -> None:
        if not scale > 0:
            raise ValueError(f"scale must be > 0, got {scale}")
        if not 0.0 <= shading <= 1.0:
            raise ValueError(f"shading must be in [0, 1], got {shading}")
        if colour_space not in COLOUR_SPACES:
            raise ValueError(
                f"unknown colour_space {colour_space!r}; available: {', '.join(COLOUR_SPACES)}"
            )
        if not 0.0 < tile <= 1.0:
            raise ValueError(f"tile must be in (0, 1], got {tile}")
        if not 0.0 <= overlap < 1.0:
            raise ValueError(f"overlap must be in [0, 1), got {overlap}")
        if tile * (1.0 + overlap) > 1.0:
            raise ValueError(f"tile * (1 + overlap) must be <= 1, got {tile * (1.0 + overlap)}")
        if shading_blur < 0:
            raise ValueError(f"shading_blur must be >= 0, got {shading_blur}")
        if min_shading_std < 0:
            raise ValueError(f"min_shading_std must be >= 0, got {min_shading_std}")
        if units_per_height is not None and not units_per_height > 0:
            raise ValueError(f"units_per_height must be > 0, got {units_per_height}")
        if candidates < 1:
            raise ValueError(f"candidates must be >= 1, got {candidates}")
        self.scale = float(scale)
        self.shading = float(shading)
        self.colour_space = colour_space
        self.tile = float(tile)
        self.overlap = float(overlap)
        self.shading_blur = float(shading_blur)
        self.flips = bool(flips)
        self.min_shading_std = float(min_shading_std)
        self.units_per_height = None if units_per_height is None else float(units_per_height)
        self.candidates = int(candidates)
        self.id = (
            f"texture@{VERSION}(scale={self.scale!r},shading={self.shading!r},"
            f"colour_space={self.colour_space},tile={self.tile!r},overlap={self.overlap!r},"
            f"shading_blur={self.shading_blur!r},flips={self.flips},"
            f"min_shading_std={self.min_shading_std!r}"
            + (
                f",units_per_height={self.units_per_height!r}"
                if self.units_per_height is not None
                else ""
            )
            + (f",candidates={self.candidates}" if self.candidates != 1 else "")
            + ")"
        )

    def __repr__(self) -> str:
        return f"TextureStylizer({self.id})"

    def stylize(
        self,
        images: Sequence[np.ndarray],
        style: np.ndarray,
        seed: int = 0,
        heights: Sequence[int] | None = None,
    ) -> list[np.ndarray]:
        """Re-render each image in `style`; returns uint8 RGB images of the input sizes.

        `heights`: per image, the height in pixels of the concept the texture is for (used with
        `units_per_height`; default the image's height).
        """
        if heights is not None and len(heights) != len(images):
            raise ValueError(f"{len(heights)} heights for {len(images)} images")
        style_rgb = to_rgb_uint8(style)
        style_mean, style_std = channel_stats(rgb_to_space(style_rgb, self.colour_space))
        resized: dict[int, np.ndarray] = {}  # style resampled per target size, shared in a batch
        jobs = []
        for number, image in enumerate(images):
            rgb = to_rgb_uint8(image)
            height = rgb.shape[0] if heights is None else int(heights[number])
            short = self._style_short(rgb.shape[0], rgb.shape[1], height)
            if short not in resized:
                small = resize_short_side(style_rgb, short)
                resized[short] = rgb_to_space(small, self.colour_space)
            jobs.append((rgb, resized[short]))
        if len(jobs) < 2:
            return [self._render(rgb, small, style_mean, style_std, seed) for rgb, small in jobs]
        # images render on every core (numpy and OpenCV release the GIL); each has its own
        # random generator, so the outputs do not depend on the order or the thread
        with ThreadPoolExecutor(min(len(jobs), os.cpu_count() or 1)) as pool:
            return list(pool.map(lambda job: self._render(*job, style_mean, style_std, seed), jobs))

    def _style_short(self, height: int, width: int, concept_height: int) -> int:
        """Short side, in pixels, of the style image resampled for this image (and concept)."""
        if self.units_per_height is None:
            return style_short_side(height, width, self.scale)
        return max(MIN_STYLE_SIDE, round(max(1, concept_height) / self.units_per_height))

    def _render(
        self,
        rgb: np.ndarray,
        style: np.ndarray,
        style_mean: np.ndarray,
        style_std: np.ndarray,
        seed: int,
    ) -> np.ndarray:
        height, width = rgb.shape[:2]
        rng = np.random.default_rng([seed % 2**64, height, width])
        core, seam = tile_geometry(min(style.shape[:2]), self.tile, self.overlap)
        canvas = synthesize_canvas(
            style, height, width, core, seam, rng, self.flips, self.candidates
        )
        canvas = match_stats(canvas, style_mean, style_std)
        canvas[:, :, 0] = self._luminance(rgb, canvas[:, :, 0], style_mean[0], style_std[0])
        return to_rgb_in_gamut(canvas, self.colour_space, float(style_mean[0]))

    def _luminance(
        self, rgb: np.ndarray, texture: np.ndarray, mean: float, std: float
    ) -> np.ndarray:
        """Mix texture and photo luminance in standardised units, then restore the style's scale.

        Mixing z-scores (rather than raw values) makes `shading` mean the same thing for dark and
        bright photos and for low- and high-contrast textures; the final rescale keeps the
        output's luminance mean equal to the style's, and its std too unless the style is flatter
        than `min_shading_std` (then only the photo's share is lifted to that floor).
        """
        if self.shading == 0.0:
            return texture
        photo = luminance(rgb, self.colour_space)
        sigma = self.shading_blur * max(photo.shape)
        if sigma > 0:
            photo = cv2.GaussianBlur(photo, (0, 0), sigmaX=sigma, sigmaY=sigma)
        z_texture, z_photo = standardise(texture), standardise(photo)
        mixed = (1.0 - self.shading) * z_texture + self.shading * z_photo
        spread = float(cv2.meanStdDev(mixed)[1][0, 0])
        if spread <= 1e-6:
            return np.full_like(texture, float(mean))
        photo_std = max(float(std), self.min_shading_std * LUMA_RANGE[self.colour_space])
        texture_part = ((1.0 - self.shading) * float(std) / spread) * z_texture
        photo_part = (self.shading * photo_std / spread) * z_photo
        return (float(mean) + texture_part + photo_part).astype(np.float32)
