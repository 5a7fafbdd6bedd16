"""Procedural gravel and grass styles beyond the three tinted scikit-image crops of each.

Gravel is a field of stones (Voronoi cells shaded as rounded or faceted bumps) whose size,
shape and colours vary by style; grass is drawn blade by blade (anti-aliased curved strokes) on
soil, or as moss. Each generator is a pure function of its random generator
(`tools/make_textures.py` seeds it per texture and index).
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from tools.texture_blocks import SIZE, Colour, Palette, colourise, fbm, grid, normalise, shade

# --- gravel ----------------------------------------------------------------------------------


def stone_cells(rng: np.random.Generator, count: int) -> tuple[np.ndarray, np.ndarray]:
    """(cell index, distance to the cell's edge in px) of a tileable Voronoi field of stones."""
    points = rng.uniform(0, SIZE, (count, 2))
    shifts = [(dy, dx) for dy in (-SIZE, 0, SIZE) for dx in (-SIZE, 0, SIZE)]
    tiled = np.concatenate([points + shift for shift in shifts])
    y, x = grid(SIZE)
    distances, index = cKDTree(tiled).query(np.stack([y.ravel(), x.ravel()], 1), k=2)
    edge = (distances[:, 1] - distances[:, 0]) / 2
    return (index[:, 0] % count).reshape(SIZE, SIZE), edge.reshape(SIZE, SIZE)


def stones(
    rng: np.random.Generator,
    count: int,
    colours: list[Colour],
    rounded: bool,
    gap: float,
    ground: Colour,
) -> np.ndarray:
    """A stone field as float RGB: each stone a colour from `colours` with its own brightness,
    shaded as a dome (`rounded`) or a faceted chip, on `ground` showing through the gaps."""
    cell, edge = stone_cells(rng, count)
    size = SIZE / np.sqrt(count)
    inside = np.clip((edge - gap) / 2.0, 0, 1)
    profile = np.sqrt(np.clip(edge / (0.5 * size), 0, 1)) if rounded else edge / (0.5 * size)
    if not rounded:  # chips: a random tilt per stone gives flat, angular facets
        y, x = grid(SIZE)
        tilt = rng.normal(0, 0.6, (count, 2))
        profile = np.clip(profile, 0, 0.6) + (tilt[cell, 0] * y + tilt[cell, 1] * x) / SIZE
    height = profile * inside + 0.15 * fbm(rng, SIZE, sigma=2, octaves=2, gain=0.5) * inside
    light = normalise(shade(height, strength=3.0 * size), 1, 99)
    palette = np.array(colours, np.float64)[rng.integers(0, len(colours), count)]
    tone = rng.uniform(0.75, 1.15, count)
    colour = palette[cell] * tone[cell][..., None]
    stone = colour * (0.45 + 0.75 * light[..., None])
    speckle = 1 + 0.08 * rng.standard_normal((SIZE, SIZE, 1))
    shadow = ndimage.gaussian_filter(inside, 2.0, mode="wrap")[..., None]
    backdrop = np.asarray(ground, np.float64) * (0.5 + 0.5 * shadow)
    return stone * speckle * inside[..., None] + backdrop * (1 - inside[..., None])


def to_uint8(canvas: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(canvas), 0, 255).astype(np.uint8)


def gravel_pebbles(rng: np.random.Generator) -> np.ndarray:
    """River pebbles: large rounded stones in grey, tan, rust and white."""
    colours = [(150, 146, 140), (176, 154, 120), (150, 100, 70), (210, 206, 198), (96, 98, 102)]
    return to_uint8(stones(rng, 70, colours, True, 1.5, (50, 44, 38)))


def gravel_fine(rng: np.random.Generator) -> np.ndarray:
    """Fine grey gravel: many small rounded grains, closely packed."""
    colours = [(132, 130, 128), (160, 158, 152), (104, 104, 106), (186, 182, 174)]
    return to_uint8(stones(rng, 1400, colours, True, 0.6, (60, 58, 56)))


def gravel_crushed(rng: np.random.Generator) -> np.ndarray:
    """Crushed limestone: angular pale chips with flat facets and dusty gaps."""
    colours = [(214, 210, 200), (190, 186, 176), (226, 222, 214), (170, 166, 158)]
    return to_uint8(stones(rng, 380, colours, False, 1.0, (150, 146, 138)))


def gravel_red(rng: np.random.Generator) -> np.ndarray:
    """Red lava gravel: porous brick-red to dark chips."""
    colours = [(150, 62, 44), (120, 50, 40), (176, 84, 58), (90, 40, 34)]
    field = stones(rng, 520, colours, False, 0.8, (50, 24, 20))
    pores = (fbm(rng, SIZE, sigma=1.2, octaves=2, gain=0.5) < 0.3)[..., None]
    return to_uint8(field * (1 - 0.35 * pores))


def gravel_wet(rng: np.random.Generator) -> np.ndarray:
    """Wet gravel: dark saturated stones with bright specular glints."""
    colours = [(70, 66, 62), (92, 80, 66), (60, 64, 70), (104, 96, 88)]
    field = stones(rng, 300, colours, True, 1.0, (24, 22, 20))
    glints = ndimage.gaussian_filter(
        (rng.random((SIZE, SIZE)) < 0.002).astype(np.float64), 1.2, mode="wrap"
    )
    return to_uint8(field + 255 * np.clip(8 * glints, 0, 1)[..., None])


GRAVEL = [gravel_pebbles, gravel_fine, gravel_crushed, gravel_red, gravel_wet]

# --- grass -----------------------------------------------------------------------------------


def blades(
    canvas: np.ndarray,
    rng: np.random.Generator,
    count: int,
    length: tuple[float, float],
    upright: float,
    colours: list[Colour],
) -> None:
    """Draw `count` curved, anti-aliased grass blades on `canvas` (uint8 RGB, in place).

    `upright` 0..1: 0 points blades every way (a lawn seen from above), 1 points them up.
    """
    for _ in range(count):
        x, y = rng.uniform(-20, SIZE + 20, 2)
        angle = -np.pi / 2 + (1 - upright) * rng.uniform(-np.pi, np.pi) + rng.normal(0, 0.25)
        bend = rng.normal(0, 0.05)
        points = []
        for _ in range(6):
            points.append((x, y))
            step = rng.uniform(*length) / 5
            x, y = x + step * np.cos(angle), y + step * np.sin(angle)
            angle += bend
        colour = np.asarray(colours[int(rng.integers(len(colours)))], np.float64)
        colour = tuple(int(c) for c in np.clip(colour * rng.uniform(0.7, 1.2), 0, 255))
        width = int(rng.integers(1, 3))
        path = np.round(np.array(points) * 4).astype(np.int32)
        cv2.polylines(canvas, [path], False, colour, width, cv2.LINE_AA, shift=2)


def soil(rng: np.random.Generator, palette: Palette) -> np.ndarray:
    return colourise(fbm(rng, SIZE, sigma=20, octaves=4, gain=0.6), palette)


def grass_lawn(rng: np.random.Generator) -> np.ndarray:
    """Mown lawn from above: dense short blades pointing every way, mid to light green."""
    canvas = soil(rng, [(0.0, (20, 36, 12)), (1.0, (52, 80, 28))])
    colours = [(70, 130, 40), (96, 156, 52), (58, 110, 36), (120, 170, 70)]
    blades(canvas, rng, 9000, (10, 22), 0.0, colours)
    return canvas


def grass_meadow(rng: np.random.Generator) -> np.ndarray:
    """Meadow: tall upright blades swaying together, darker at the base, pale seed heads."""
    canvas = soil(rng, [(0.0, (16, 28, 10)), (1.0, (40, 60, 22))])
    colours = [(62, 118, 38), (86, 140, 48), (108, 150, 60), (48, 96, 30)]
    blades(canvas, rng, 5000, (50, 110), 0.85, colours)
    for _ in range(120):
        centre = (int(rng.integers(SIZE)), int(rng.integers(SIZE)))
        cv2.ellipse(canvas, centre, (2, 6), rng.uniform(-20, 20), 0, 360, (200, 190, 130), -1)
    return canvas


def grass_dry(rng: np.random.Generator) -> np.ndarray:
    """Dry grass: tangled straw-yellow and pale brown blades over bare brown soil."""
    canvas = soil(rng, [(0.0, (54, 40, 26)), (1.0, (110, 86, 56))])
    colours = [(204, 178, 112), (182, 150, 92), (226, 204, 140), (150, 120, 74)]
    blades(canvas, rng, 4500, (20, 60), 0.3, colours)
    return canvas


def grass_clover(rng: np.random.Generator) -> np.ndarray:
    """Lawn with clover: short blades, three-leaved clover patches and a few white flowers."""
    canvas = grass_lawn(rng)
    for _ in range(160):
        x, y = rng.uniform(0, SIZE, 2)
        radius = rng.uniform(4, 7)
        colour = tuple(int(c * rng.uniform(0.8, 1.1)) for c in (46, 112, 40))
        for k in range(3):
            angle = rng.uniform(0, 2 * np.pi) / 3 + k * 2 * np.pi / 3
            leaf = (int(x + radius * np.cos(angle)), int(y + radius * np.sin(angle)))
            cv2.circle(canvas, leaf, int(radius), colour, -1, cv2.LINE_AA)
    for _ in range(25):
        centre = (int(rng.integers(SIZE)), int(rng.integers(SIZE)))
        cv2.circle(canvas, centre, int(rng.integers(5, 9)), (236, 234, 226), -1, cv2.LINE_AA)
    return canvas


def grass_moss(rng: np.random.Generator) -> np.ndarray:
    """Moss: a fine, springy cushion of deep and yellow-green tufts."""
    tufts = fbm(rng, SIZE, sigma=6, octaves=4, gain=0.7)
    light = normalise(shade(fbm(rng, SIZE, sigma=14, octaves=3, gain=0.5), 30.0), 1, 99)
    grain = rng.standard_normal((SIZE, SIZE)) * 0.06
    values = 0.1 + 0.5 * tufts + 0.35 * light + grain
    palette: Palette = [
        (0.0, (18, 34, 10)),
        (0.4, (58, 96, 26)),
        (0.75, (118, 150, 44)),
        (1.0, (180, 196, 90)),
    ]
    return colourise(np.clip(values, 0, 1), palette)


GRASS = [grass_lawn, grass_meadow, grass_dry, grass_clover, grass_moss]
