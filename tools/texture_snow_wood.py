"""Procedural snow and wood styles beyond the first three of each (`tools/make_textures.py`).

Why these: an edit learnt from one style must be tested on others *of the same material*, so
each texture needs several surfaces that differ the way real ones do (fresh, trodden,
tyre-tracked, slushy, sun-lit, shaded snow; knotty, end-grain, bark, weathered, dark wood), not
different things that share a name. Each generator is a pure function of its random generator.
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy import ndimage

from tools.texture_blocks import (
    SIZE,
    Palette,
    colourise,
    fbm,
    grid,
    normalise,
    shade,
    stretched_noise,
)

# --- snow ------------------------------------------------------------------------------------

SNOW_COOL: Palette = [
    (0.0, (128, 146, 178)),
    (0.4, (192, 205, 226)),
    (0.8, (238, 243, 250)),
    (1.0, (255, 255, 255)),
]


def sparkle(rng: np.random.Generator, density: float) -> np.ndarray:
    """Isolated bright pixels (ice crystals catching the light), values in [0, 1]."""
    return (rng.random((SIZE, SIZE)) < density) * rng.uniform(0.5, 1.0, (SIZE, SIZE))


def snow_powder(rng: np.random.Generator) -> np.ndarray:
    """Fresh powder: bright, soft, barely undulating surface with fine glitter."""
    height = fbm(rng, SIZE, sigma=60, octaves=5, gain=0.5)
    light = normalise(shade(height, strength=60.0), 1, 99)
    values = 0.72 + 0.2 * light + 0.25 * sparkle(rng, 0.004)
    return colourise(np.clip(values, 0, 1), SNOW_COOL)


def footprints(rng: np.random.Generator, count: int) -> np.ndarray:
    """Depth map (0..1) of `count` boot prints along a few wandering walks."""
    depth = np.zeros((SIZE, SIZE), np.float32)
    for _ in range(count):
        x, y = rng.uniform(0, SIZE, 2)
        heading = rng.uniform(0, 2 * np.pi)
        for step in range(int(rng.integers(6, 14))):
            heading += rng.normal(0, 0.15)
            side = 9 if step % 2 else -9
            cx = x - side * np.sin(heading)
            cy = y + side * np.cos(heading)
            angle = np.degrees(heading)
            centre = (int(cx) % SIZE, int(cy) % SIZE)
            cv2.ellipse(depth, centre, (15, 7), angle, 0, 360, 1.0, -1, cv2.LINE_AA)
            x, y = x + 34 * np.cos(heading), y + 34 * np.sin(heading)
    return ndimage.gaussian_filter(depth, 2.0, mode="wrap")


def snow_trodden(rng: np.random.Generator) -> np.ndarray:
    """Trodden snow: overlapping boot prints pressed into a lumpy, slightly greyed surface."""
    height = 0.6 * fbm(rng, SIZE, sigma=20, octaves=4, gain=0.6) - footprints(rng, 14)
    light = normalise(shade(height, strength=40.0), 1, 99)
    grime = fbm(rng, SIZE, sigma=30, octaves=3, gain=0.5)
    values = 0.25 + 0.65 * light - 0.12 * grime * (height < 0.2)
    palette: Palette = [
        (0.0, (112, 120, 138)),
        (0.45, (178, 186, 200)),
        (0.8, (228, 232, 240)),
        (1.0, (250, 252, 255)),
    ]
    return colourise(np.clip(values, 0, 1), palette)


def snow_tyre(rng: np.random.Generator) -> np.ndarray:
    """Tyre tracks: two parallel ruts with a tread pattern in packed, dirty snow."""
    y, x = grid(SIZE)
    wobble = 14 * (fbm(rng, SIZE, sigma=80, octaves=2, gain=0.5) - 0.5)
    rut = np.zeros((SIZE, SIZE))
    tread = np.zeros((SIZE, SIZE))
    for centre in (0.3 * SIZE, 0.72 * SIZE):
        distance = np.abs(x - centre - wobble)
        inside = np.clip((46 - distance) / 6, 0, 1)
        rut = np.maximum(rut, inside)
        chevron = np.sin(2 * np.pi * (y + 0.6 * np.abs(x - centre - wobble)) / 14)
        tread = np.maximum(tread, inside * (chevron > 0.3))
    height = 0.5 * fbm(rng, SIZE, sigma=16, octaves=4, gain=0.6) - 0.8 * rut - 0.15 * tread
    light = normalise(shade(height, strength=30.0), 1, 99)
    dirt = fbm(rng, SIZE, sigma=12, octaves=3, gain=0.6)
    values = 0.3 + 0.6 * light - rut * (0.25 + 0.2 * dirt)
    palette: Palette = [
        (0.0, (70, 68, 70)),
        (0.35, (136, 138, 146)),
        (0.7, (212, 218, 228)),
        (1.0, (250, 252, 255)),
    ]
    return colourise(np.clip(values, 0, 1), palette)


def snow_slush(rng: np.random.Generator) -> np.ndarray:
    """Slush: wet grey-brown snow with dark meltwater pools and white lumps."""
    base = fbm(rng, SIZE, sigma=24, octaves=5, gain=0.6)
    water = fbm(rng, SIZE, sigma=40, octaves=3, gain=0.5) < 0.35
    lumps = normalise(shade(base, strength=25.0), 1, 99)
    values = 0.35 + 0.5 * lumps * (1 - 0.7 * water) + 0.05 * base - 0.2 * water
    palette: Palette = [
        (0.0, (52, 54, 56)),
        (0.3, (104, 100, 94)),
        (0.6, (164, 162, 156)),
        (1.0, (232, 234, 236)),
    ]
    return colourise(np.clip(values, 0, 1), palette)


def snow_sunlit(rng: np.random.Generator) -> np.ndarray:
    """Sun-lit snow: warm white crust, low sun raking over small ripples, strong glitter."""
    y, _ = grid(SIZE)
    warp = fbm(rng, SIZE, sigma=50, octaves=3, gain=0.5) - 0.5
    ripples = np.sin(2 * np.pi * (9 * y / SIZE + 1.5 * warp))
    height = 0.3 * ripples + fbm(rng, SIZE, sigma=10, octaves=3, gain=0.5)
    light = normalise(shade(height, strength=20.0), 1, 99)
    values = 0.45 + 0.5 * light + 0.4 * sparkle(rng, 0.01)
    palette: Palette = [
        (0.0, (150, 160, 190)),
        (0.5, (236, 232, 224)),
        (0.85, (255, 250, 236)),
        (1.0, (255, 255, 250)),
    ]
    return colourise(np.clip(values, 0, 1), palette)


def snow_shaded(rng: np.random.Generator) -> np.ndarray:
    """Shaded snow: a dim, blue cast surface in shadow, soft relief and no glitter."""
    height = fbm(rng, SIZE, sigma=35, octaves=5, gain=0.55)
    light = normalise(shade(height, strength=35.0), 1, 99)
    values = 0.2 + 0.6 * light + 0.15 * height
    palette: Palette = [
        (0.0, (70, 86, 122)),
        (0.5, (122, 140, 178)),
        (1.0, (182, 198, 226)),
    ]
    return colourise(np.clip(values, 0, 1), palette)


SNOW = [snow_powder, snow_trodden, snow_tyre, snow_slush, snow_sunlit, snow_shaded]

# --- wood ------------------------------------------------------------------------------------

PINE: Palette = [(0.0, (150, 104, 56)), (0.4, (204, 158, 98)), (1.0, (240, 208, 150))]


def wood_knots(rng: np.random.Generator) -> np.ndarray:
    """Knotty pine: light grain lines that bend around dark knots."""
    y, x = grid(SIZE)
    bend = np.zeros((SIZE, SIZE))
    knots = np.zeros((SIZE, SIZE))
    for _ in range(3):
        ky, kx = rng.uniform(0, SIZE, 2)
        radius = rng.uniform(12, 24)
        distance = np.hypot((y - ky) * 1.6, x - kx)
        bend += 30 * np.sign(y - ky) * np.exp(-((distance / (3 * radius)) ** 2))
        knots = np.maximum(knots, np.clip(1.2 - distance / radius, 0, 1))
    warp = stretched_noise(rng, SIZE, (6.0, 60.0))
    lines = 0.5 + 0.5 * np.sin(2 * np.pi * (y + bend) / 22 + 0.8 * warp)
    fibres = stretched_noise(rng, SIZE, (0.6, 25.0))
    values = 0.75 - 0.4 * lines**4 + 0.05 * fibres - 0.8 * knots
    return colourise(np.clip(values, 0, 1), [(0.0, (70, 40, 20)), *PINE[1:]])


def wood_endgrain(rng: np.random.Generator) -> np.ndarray:
    """End grain: the sawn face of a log, growth rings around the pith and radial cracks."""
    y, x = grid(SIZE)
    cy, cx = rng.uniform(0.35, 0.65, 2) * SIZE
    warp = fbm(rng, SIZE, sigma=40, octaves=3, gain=0.5) - 0.5
    radius = np.hypot(y - cy, x - cx)
    rings = np.mod(radius / 11.0 + 1.5 * warp, 1.0) ** 4
    theta = np.arctan2(y - cy, x - cx)
    cracks = np.zeros((SIZE, SIZE))
    for angle in rng.uniform(-np.pi, np.pi, 5):
        gap = np.abs(np.angle(np.exp(1j * (theta - angle))))
        cracks = np.maximum(cracks, (gap * radius < 1.5) * (radius < rng.uniform(80, 240)))
    pores = rng.standard_normal((SIZE, SIZE)) * 0.04
    values = 0.8 - 0.45 * rings + pores - 0.7 * cracks
    palette: Palette = [(0.0, (60, 36, 20)), (0.5, (168, 122, 78)), (1.0, (226, 190, 140))]
    return colourise(np.clip(values, 0, 1), palette)


def wood_bark(rng: np.random.Generator) -> np.ndarray:
    """Bark: vertical ridges split by deep dark furrows, grey-brown with lichen-pale tops."""
    ridges = stretched_noise(rng, SIZE, (40.0, 5.0))
    furrows = np.clip(1 - np.abs(ridges) * 2.5, 0, 1) ** 3
    height = normalise(-furrows + 0.3 * stretched_noise(rng, SIZE, (10.0, 2.0)))
    light = normalise(shade(height, strength=25.0), 1, 99)
    values = 0.15 + 0.55 * light * height + 0.25 * height
    palette: Palette = [(0.0, (30, 22, 16)), (0.45, (96, 80, 64)), (1.0, (176, 168, 150))]
    return colourise(np.clip(values, 0, 1), palette)


def wood_weathered(rng: np.random.Generator) -> np.ndarray:
    """Weathered boards: silver-grey vertical planks with open grain, cracks and gaps."""
    _, x = grid(SIZE)
    width = SIZE // 5
    values = np.zeros((SIZE, SIZE))
    for plank in range(5):
        band = slice(plank * width, (plank + 1) * width)
        warp = stretched_noise(rng, SIZE, (60.0, 5.0))
        grain = 0.5 + 0.5 * np.sin(2 * np.pi * x / rng.uniform(7, 12) + 1.8 * warp)
        fibres = stretched_noise(rng, SIZE, (25.0, 0.6))
        board = rng.uniform(0.45, 0.7) - 0.3 * grain**6 + 0.08 * fibres
        values[:, band] = board[:, band]
    cracks = stretched_noise(rng, SIZE, (50.0, 1.0)) > 2.6
    values[cracks] -= 0.35
    values[np.mod(x, width) < 3] = 0.05
    palette: Palette = [(0.0, (40, 38, 36)), (0.5, (132, 128, 120)), (1.0, (204, 200, 190))]
    return colourise(np.clip(values, 0, 1), palette)


def wood_walnut(rng: np.random.Generator) -> np.ndarray:
    """Dark walnut: chocolate-brown board with fine straight grain and curly figure."""
    y, x = grid(SIZE)
    warp = stretched_noise(rng, SIZE, (8.0, 80.0))
    lines = 0.5 + 0.5 * np.sin(2 * np.pi * (26 * y / SIZE) + warp)
    figure = 0.5 + 0.5 * np.sin(2 * np.pi * x / 18 + 2.0 * stretched_noise(rng, SIZE, (30, 4)))
    fibres = stretched_noise(rng, SIZE, (0.5, 30.0))
    values = 0.45 + 0.3 * lines**3 + 0.12 * figure + 0.06 * fibres
    palette: Palette = [(0.0, (34, 20, 12)), (0.5, (86, 56, 36)), (1.0, (150, 106, 70))]
    return colourise(np.clip(values, 0, 1), palette)


WOOD = [wood_knots, wood_endgrain, wood_bark, wood_weathered, wood_walnut]
