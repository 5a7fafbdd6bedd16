"""Model-input crops: a concept's masked region, random windows, whole images (pure numpy).

A concept example is the mask's box with some context, squared, the pixels outside the mask
set to the model's mean colour (zero after normalisation, so they carry no signal), resized to
the model's input size. Random examples are unmasked square windows of the same images.
"""

from __future__ import annotations

import cv2
import numpy as np

Box = tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive)


def mask_box(mask: np.ndarray, margin: float = 0.1) -> Box | None:
    """The square box around a mask's pixels plus `margin` of its side, inside the image.

    Args:
        mask: H x W boolean (or 0/1) mask.
        margin: context added on each side, as a share of the box's longer side.

    Returns:
        (x0, y0, x1, y1), or None for an empty mask.
    """
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return None
    height, width = mask.shape[:2]
    x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
    side = max(x1 - x0, y1 - y0)
    side = min(round(side * (1 + 2 * margin)), max(height, width))
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    return _clip_square(cx, cy, side, width, height)


def _clip_square(cx: float, cy: float, side: int, width: int, height: int) -> Box:
    """A box of `side` centred at (cx, cy), shifted (then cut) to fit the image."""
    x0 = round(cx - side / 2)
    y0 = round(cy - side / 2)
    x0 = min(max(x0, 0), max(width - side, 0))
    y0 = min(max(y0, 0), max(height - side, 0))
    return x0, y0, min(x0 + side, width), min(y0 + side, height)


def masked_crop(
    image: np.ndarray, mask: np.ndarray, size: int, fill: np.ndarray, margin: float = 0.1
) -> np.ndarray | None:
    """The concept's region at the model's input size, pixels outside the mask set to `fill`.

    Args:
        image: H x W x 3 uint8 RGB.
        mask: H x W mask of the concept (same size as `image`).
        size: the model's input side.
        fill: the RGB colour of the neutralised pixels (the model's mean).
        margin: context around the mask's box, as a share of its side.

    Returns:
        size x size x 3 uint8, or None when the mask is empty.
    """
    box = mask_box(mask, margin)
    if box is None:
        return None
    neutral = np.where(mask[..., None].astype(bool), image, fill.astype(np.uint8))
    return resize(crop(neutral, box), size)


def crop(image: np.ndarray, box: Box) -> np.ndarray:
    x0, y0, x1, y1 = box
    return image[y0:y1, x0:x1]


def resize(image: np.ndarray, size: int, nearest: bool = False) -> np.ndarray:
    """Resize to size x size (squashing the aspect ratio; area averaging when shrinking)."""
    if nearest:
        interpolation = cv2.INTER_NEAREST
    elif image.shape[0] > size or image.shape[1] > size:
        interpolation = cv2.INTER_AREA
    else:
        interpolation = cv2.INTER_LINEAR
    return cv2.resize(np.ascontiguousarray(image), (size, size), interpolation=interpolation)


def random_boxes(
    height: int, width: int, count: int, rng: np.random.Generator, scale: tuple[float, float]
) -> list[Box]:
    """`count` square windows with sides a uniform `scale` share of the shorter image side."""
    boxes = []
    short = min(height, width)
    for _ in range(count):
        side = max(8, round(rng.uniform(*scale) * short))
        x0 = int(rng.integers(0, width - side + 1))
        y0 = int(rng.integers(0, height - side + 1))
        boxes.append((x0, y0, x0 + side, y0 + side))
    return boxes


def grid_boxes(height: int, width: int, side: int, stride: int) -> list[Box]:
    """Square windows on a grid covering the image (CRAFT's patches), the last row and column
    flush with the border so every pixel is in some window."""
    side = min(side, height, width)

    def starts(length: int) -> list[int]:
        values = list(range(0, length - side + 1, max(1, stride)))
        if values[-1] != length - side:
            values.append(length - side)
        return values

    return [(x, y, x + side, y + side) for y in starts(height) for x in starts(width)]


def centred_ellipse(height: int, width: int, area_frac: float = 0.5) -> np.ndarray:
    """A centred ellipse with the image's aspect ratio covering `area_frac` of it: the trivial
    "objects are in the middle" map that a concept map must beat."""
    scale = np.sqrt(area_frac * 4 / np.pi)
    ys, xs = np.mgrid[0:height, 0:width]
    ny = (ys + 0.5 - height / 2) / (scale * height / 2)
    nx = (xs + 0.5 - width / 2) / (scale * width / 2)
    return (nx**2 + ny**2) <= 1.0
