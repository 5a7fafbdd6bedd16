"""Generate the bundled texture library: `python tools/make_textures.py [--out DIR]`.

Why generated and not downloaded: every shipped style image must have a clear licence and be
reproducible. Procedural textures (snow, wood, stripes, fur, leaves, paint) are drawn from fixed
seeds with numpy/scipy/OpenCV; brick, grass and gravel are colourings and crops of scikit-image's
CC0 sample images.
Running this again (from the repository root; `python -m tools.make_textures` works too) rewrites
identical pixels and the manifest that `pipeline.stylize.library` reads.
"""

from __future__ import annotations

import argparse
import sys
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np
import yaml
from scipy import ndimage
from skimage import data as skdata

if __package__ in (None, ""):  # run as `python tools/make_textures.py`: import from the repo
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.stylize.library import default_splits
from tools import texture_ground, texture_photos, texture_snow_wood
from tools.texture_blocks import (
    SIZE,
    Colour,
    Palette,
    blobs,
    colourise,
    fbm,
    grid,
    normalise,
    shade,
    stretched_noise,
)

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "textures"  # the repository's library
CC0 = "CC0-1.0"

# --- procedural textures ---------------------------------------------------------------------

SNOW_SHADOW: Colour = (150, 166, 192)


def snow_noise(rng: np.random.Generator) -> np.ndarray:
    """Snow surface: blue-grey to white fractal noise with a fine sparkle."""
    base = fbm(rng, SIZE, sigma=40, octaves=6, gain=0.55)
    sparkle = rng.standard_normal((SIZE, SIZE)) * 0.03
    palette = [
        (0.0, SNOW_SHADOW),
        (0.45, (212, 222, 236)),
        (0.8, (244, 247, 252)),
        (1.0, (255, 255, 255)),
    ]
    return colourise(np.clip(base + sparkle, 0, 1), palette)


def snow_flakes(rng: np.random.Generator) -> np.ndarray:
    """Falling snow: white flakes of three sizes over a soft blue-grey background."""
    background = fbm(rng, SIZE, sigma=60, octaves=3, gain=0.5)
    flakes = blobs(rng, SIZE, 1400, 1.0) + blobs(rng, SIZE, 350, 2.2) + blobs(rng, SIZE, 70, 4.0)
    values = np.clip(0.15 + 0.3 * background + flakes, 0, 1)
    palette = [
        (0.0, (96, 110, 136)),
        (0.35, (140, 155, 180)),
        (0.7, (215, 224, 238)),
        (1.0, (255, 255, 255)),
    ]
    return colourise(values, palette)


def snow_drifts(rng: np.random.Generator) -> np.ndarray:
    """Wind-blown drifts: lit wavy ridges with blue shadows and grain."""
    y, _ = grid(SIZE)
    warp = fbm(rng, SIZE, sigma=70, octaves=3, gain=0.5) - 0.5
    height = np.sin(2 * np.pi * (3 * y / SIZE + 0.9 * warp))
    height += 0.25 * (fbm(rng, SIZE, sigma=12, octaves=3, gain=0.5) - 0.5)
    light = shade(height, strength=14.0)
    values = np.clip(
        0.1 + 0.85 * normalise(light, 1, 99) + rng.standard_normal((SIZE, SIZE)) * 0.025, 0, 1
    )
    palette = [
        (0.0, (128, 146, 178)),
        (0.4, (190, 204, 226)),
        (0.8, (240, 244, 250)),
        (1.0, (255, 255, 255)),
    ]
    return colourise(values, palette)


WOOD: Palette = [
    (0.0, (88, 50, 26)),
    (0.35, (140, 88, 48)),
    (0.7, (182, 128, 78)),
    (1.0, (210, 162, 108)),
]


def wood_rings(rng: np.random.Generator) -> np.ndarray:
    """Flat-sawn board: growth rings as noisy arcs around an off-canvas pith, plus fibres."""
    y, x = grid(SIZE)
    radius = np.sqrt(((x + 0.6 * SIZE) / 3.5) ** 2 + (y - 0.45 * SIZE) ** 2)
    warp = fbm(rng, SIZE, sigma=50, octaves=4, gain=0.5) - 0.5
    phase = np.mod(radius / 22.0 + 1.2 * warp, 1.0)
    rings = phase**3  # light early wood, sharp dark late-wood edge
    fibres = stretched_noise(rng, SIZE, (0.7, 30.0))
    return colourise(np.clip(0.9 - 0.7 * rings + 0.06 * fibres, 0, 1), WOOD)


def wood_grain(rng: np.random.Generator) -> np.ndarray:
    """Quarter-sawn board: straight, slightly wavy grain lines along x."""
    y, _ = grid(SIZE)
    warp = stretched_noise(rng, SIZE, (6.0, 60.0))
    lines = 0.5 + 0.5 * np.sin(2 * np.pi * (16 * y / SIZE) + 1.3 * warp)
    fibres = stretched_noise(rng, SIZE, (0.6, 25.0))
    tone = fbm(rng, SIZE, sigma=90, octaves=2, gain=0.5)
    values = 0.25 + 0.45 * lines**2 + 0.2 * tone + 0.05 * fibres
    return colourise(np.clip(values, 0, 1), WOOD)


def wood_planks(rng: np.random.Generator) -> np.ndarray:
    """Floor boards: four planks with their own grain and tone, dark joints, staggered ends."""
    y, _ = grid(SIZE)
    plank_h = SIZE // 4
    values = np.zeros((SIZE, SIZE))
    for row in range(4):
        band = slice(row * plank_h, (row + 1) * plank_h)
        warp = stretched_noise(rng, SIZE, (5.0, 50.0))
        grain = 0.5 + 0.5 * np.sin(2 * np.pi * (y / rng.uniform(9, 14)) + 1.6 * warp)
        fibres = stretched_noise(rng, SIZE, (0.6, 20.0))
        plank = rng.uniform(0.3, 0.6) + 0.3 * grain**3 + 0.05 * fibres
        values[band] = plank[band]
        joint = int(rng.integers(0, SIZE))
        values[band, joint : joint + 2] = 0.05  # end joint
    values[np.mod(y, plank_h) < 2] = 0.05  # long joints
    return colourise(np.clip(values, 0, 1), WOOD)


def stripes_zebra(rng: np.random.Generator) -> np.ndarray:
    """Zebra-like warped black and white stripes."""
    _, x = grid(SIZE)
    warp = fbm(rng, SIZE, sigma=60, octaves=3, gain=0.5) - 0.5
    wave = np.sin(2 * np.pi * (10 * x / SIZE + 1.5 * warp))
    values = 1.0 / (1.0 + np.exp(-6.0 * wave))
    return colourise(values, [(0.0, (22, 20, 20)), (1.0, (238, 234, 226))])


def stripes_candy(rng: np.random.Generator) -> np.ndarray:
    """Diagonal red and white stripes with slight fabric noise."""
    y, x = grid(SIZE)
    wave = np.sin(2 * np.pi * 8 * (x + y) / SIZE)
    values = np.clip(1.0 / (1.0 + np.exp(-8.0 * wave)) + rng.normal(0, 0.03, (SIZE, SIZE)), 0, 1)
    return colourise(values, [(0.0, (190, 30, 40)), (1.0, (246, 240, 236))])


def stripes_pinstripe(rng: np.random.Generator) -> np.ndarray:
    """Navy cloth with thin light pinstripes."""
    _, x = grid(SIZE)
    lines = np.exp(-0.5 * ((np.mod(x, 32) - 16) / 1.0) ** 2)
    cloth = stretched_noise(rng, SIZE, (0.5, 3.0)) * 0.04
    values = np.clip(0.15 + 0.8 * lines + cloth, 0, 1)
    return colourise(values, [(0.0, (18, 26, 52)), (1.0, (214, 218, 230))])


# --- fur ---------------------------------------------------------------------------------------


def flow_streaks(
    source: np.ndarray, angle: np.ndarray, length: int, taper: float = 1.0
) -> np.ndarray:
    """Line integral convolution (tileable): `source` averaged along the flow field `angle`.

    Each pixel follows the flow backwards in `length` 1-px steps, weighting step s by
    (1 - s / length) ** taper, so sparse bright dots become strands that fade towards their tips.
    """
    size = source.shape[0]
    y, x = grid(size)
    src = source.astype(np.float32)
    dy, dx = np.sin(angle).astype(np.float32), np.cos(angle).astype(np.float32)
    py, px = y.astype(np.float32), x.astype(np.float32)
    total = np.zeros((size, size))
    weights = 0.0
    for step in range(length):
        weight = (1.0 - step / length) ** taper
        total += weight * cv2.remap(src, px, py, cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP)
        weights += weight
        sy = cv2.remap(dy, px, py, cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP)
        sx = cv2.remap(dx, px, py, cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP)
        py, px = np.mod(py - sy, size), np.mod(px - sx, size)
    return total / weights


def hair_roots(rng: np.random.Generator, density: float, low: float) -> np.ndarray:
    """Sparse random dots of brightness in [low, 1): where strands start."""
    return (rng.random((SIZE, SIZE)) < density) * rng.uniform(low, 1.0, (SIZE, SIZE))


def fur_short(rng: np.random.Generator) -> np.ndarray:
    """Short dense fur: fine brown strands combed diagonally, with darker roots and light tips."""
    angle = 0.5 * np.pi - 0.35 + 1.4 * (fbm(rng, SIZE, sigma=90, octaves=2, gain=0.5) - 0.5)
    hair = normalise(flow_streaks(hair_roots(rng, 0.08, 0.5), angle, 14, taper=0.7), 1, 99.5)
    clumps = fbm(rng, SIZE, sigma=14, octaves=2, gain=0.5)
    tone = fbm(rng, SIZE, sigma=80, octaves=2, gain=0.5)
    values = 0.15 + 0.6 * hair + 0.15 * clumps + 0.15 * tone
    palette = [
        (0.0, (34, 20, 12)),
        (0.35, (92, 56, 30)),
        (0.7, (158, 110, 66)),
        (1.0, (222, 192, 150)),
    ]
    return colourise(np.clip(values, 0, 1), palette)


def fur_long(rng: np.random.Generator) -> np.ndarray:
    """Long flowing fur: golden wavy locks of strands running down, darker between the locks."""
    y, _ = grid(SIZE)
    warp = fbm(rng, SIZE, sigma=70, octaves=2, gain=0.5) - 0.5
    angle = 0.5 * np.pi + 0.55 * np.sin(2 * np.pi * (2 * y / SIZE + 1.5 * warp))
    hair = normalise(flow_streaks(hair_roots(rng, 0.12, 0.4), angle, 40, taper=0.5), 1, 99.5)
    lumps = ndimage.gaussian_filter(rng.standard_normal((SIZE, SIZE)), 5, mode="wrap")
    locks = normalise(flow_streaks(lumps, angle, 60, taper=0.3), 2, 98)
    tone = fbm(rng, SIZE, sigma=90, octaves=2, gain=0.5)
    values = 0.05 + 0.45 * hair + 0.4 * locks + 0.12 * tone
    palette = [
        (0.0, (70, 42, 18)),
        (0.35, (150, 98, 46)),
        (0.7, (212, 164, 96)),
        (1.0, (246, 222, 172)),
    ]
    return colourise(np.clip(values, 0, 1), palette)


def fur_leopard(rng: np.random.Generator) -> np.ndarray:
    """Leopard pelt: short golden fur with dark broken rosettes around tawny centres, and spots."""
    y, x = grid(SIZE)
    angle = 0.5 * np.pi - 0.2 + (fbm(rng, SIZE, sigma=90, octaves=2, gain=0.5) - 0.5)
    hair = normalise(flow_streaks(hair_roots(rng, 0.08, 0.5), angle, 10, taper=0.7), 1, 99.5)
    yw = y + 12 * (fbm(rng, SIZE, sigma=10, octaves=2, gain=0.5) - 0.5)
    xw = x + 12 * (fbm(rng, SIZE, sigma=10, octaves=2, gain=0.5) - 0.5)

    def window(
        cy: float, cx: float, reach: int
    ) -> tuple[tuple[np.ndarray, ...], np.ndarray, np.ndarray]:
        """Index of the square around (cy, cx), wrapping so the pelt tiles, and offsets (y, x).

        The offsets of the square's pixels from the point are warped, so that spots wobble.
        """
        rows = np.arange(int(cy) - reach, int(cy) + reach) % SIZE
        cols = np.arange(int(cx) - reach, int(cx) + reach) % SIZE
        index = np.ix_(rows, cols)
        half = SIZE / 2
        dy = np.mod(yw[index] - cy + half, SIZE) - half
        return index, dy, np.mod(xw[index] - cx + half, SIZE) - half

    ring = np.zeros((SIZE, SIZE))
    centre = np.zeros((SIZE, SIZE))
    cells = 6
    step = SIZE / cells
    for row in range(cells):  # rosettes on a jittered, staggered grid
        for col in range(cells):
            cy = (row + 0.5 + rng.uniform(-0.3, 0.3)) * step
            cx = (col + 0.5 * (row % 2) + rng.uniform(-0.3, 0.3)) * step
            radius = rng.uniform(0.2, 0.33) * step
            index, dy, dx = window(cy, cx, int(step) + 8)
            tilt = rng.uniform(0, np.pi)
            u = dy * np.cos(tilt) + dx * np.sin(tilt)
            v = -dy * np.sin(tilt) + dx * np.cos(tilt)
            theta = np.arctan2(u, v)
            wobble = 1 + sum(
                rng.uniform(0.05, 0.15) * np.sin(k * theta + rng.uniform(0, 2 * np.pi))
                for k in (2, 3, 5)
            )
            dist = np.hypot(u, v * rng.uniform(0.7, 0.95)) / wobble
            breaks = sum(np.sin(k * theta + rng.uniform(0, 2 * np.pi)) for k in (2, 3, 4))
            gaps = breaks > rng.uniform(-1.6, -0.9)
            width = step * rng.uniform(0.05, 0.07)
            width = width * (1 + 0.6 * np.sin(3 * theta + rng.uniform(0, 6)))
            ring[index] = np.maximum(ring[index], (np.abs(dist - radius) < width) * gaps)
            centre[index] = np.maximum(centre[index], dist < radius)
    for _ in range(28):  # small solid spots between the rosettes
        index, dy, dx = window(*rng.uniform(0, SIZE, 2), 16)
        spot = np.hypot(dy, dx) < rng.uniform(3, 7)
        ring[index] = np.maximum(ring[index], spot * (centre[index] == 0))
    ring = normalise(flow_streaks(ring, angle, 6, taper=0.5))  # hairy edges
    centre = ndimage.gaussian_filter(centre, 2.0, mode="wrap")
    base = 0.62 + 0.3 * hair + 0.12 * (fbm(rng, SIZE, sigma=60, octaves=2, gain=0.5) - 0.5)
    values = base * (1 - 0.92 * ring) * (1 - 0.22 * centre)
    palette = [
        (0.0, (30, 20, 14)),
        (0.3, (90, 56, 26)),
        (0.55, (170, 108, 44)),
        (0.75, (214, 158, 76)),
        (1.0, (242, 214, 150)),
    ]
    return colourise(np.clip(values, 0, 1), palette)


# --- leaves ------------------------------------------------------------------------------------

Segment = tuple[tuple[float, float], tuple[float, float]]

LEAF_COLOURS: dict[str, Colour] = {
    "red": (176, 36, 22),
    "crimson": (132, 22, 26),
    "orange": (220, 104, 24),
    "amber": (226, 152, 32),
    "yellow": (234, 196, 52),
    "brown": (110, 62, 28),
    "russet": (150, 70, 32),
    "tan": (170, 118, 58),
}
SOIL: Palette = [(0.0, (16, 12, 10)), (0.5, (36, 28, 20)), (1.0, (66, 52, 36))]


def rotation(angle: float) -> np.ndarray:
    return np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])


def leaf_shape(
    rng: np.random.Generator, kind: str, length: float
) -> tuple[np.ndarray, list[Segment], Segment]:
    """Outline polygon, vein segments and stem of a leaf (x, y), centred, tip towards +x."""
    if kind == "maple":

        def radius(theta: np.ndarray) -> np.ndarray:
            lobes = (0.5 + 0.5 * np.cos(5 * theta)) ** 1.3
            teeth = 0.05 * (0.5 + 0.5 * np.cos(35 * theta)) ** 4
            return 0.5 * length * (0.42 + 0.58 * lobes + teeth) * (0.78 + 0.22 * np.cos(theta))

        theta = np.linspace(-np.pi, np.pi, 360, endpoint=False)
        polygon = radius(theta)[:, None] * np.stack([np.cos(theta), np.sin(theta)], 1)
        tips = np.array([0, 2, -2, 4, -4]) * np.pi / 5
        ends = 0.9 * radius(tips)[:, None] * np.stack([np.cos(tips), np.sin(tips)], 1)
        veins: list[Segment] = [((0.0, 0.0), (float(ex), float(ey))) for ex, ey in ends]
        base = -float(radius(np.array(np.pi)))
        return polygon, veins, ((base + 0.02 * length, 0.0), (base - 0.25 * length, 0.02 * length))
    t = np.linspace(0, 1, 160)
    if kind == "oak":
        lobes = np.abs(np.sin(4.5 * np.pi * t)) ** 0.6
        half = 0.26 * length * np.sin(np.pi * t**0.9) ** 0.7 * (0.45 + 0.55 * lobes)
        ribs, spread = np.linspace(0.15, 0.85, 5), 0.2
    else:  # ovate (beech, birch, cherry) with a finely serrated edge
        half = rng.uniform(0.22, 0.3) * length * np.sin(np.pi * t**0.75) ** 0.9
        half *= 1 + 0.04 * np.sin(60 * t)
        ribs, spread = np.linspace(0.12, 0.72, 7), 0.17
    top = np.stack([t * length, half], 1)
    bottom = np.stack([t[::-1] * length, -half[::-1]], 1)
    polygon = np.concatenate([top, bottom]) - [0.5 * length, 0.0]
    veins = [((-0.5 * length, 0.0), (0.45 * length, 0.0))]
    for u in (ribs - 0.5) * length:
        for side in (-1, 1):
            veins.append(((u, 0.0), (u + 0.12 * length, side * spread * length)))
    return polygon, veins, ((-0.5 * length, 0.0), (-0.64 * length, 0.01 * length))


def draw_segments(segments: list[Segment], rot: np.ndarray, centre: np.ndarray, side: int):
    """Anti-aliased 1-px lines in [0, 1] on a side x side canvas: segments rotated, then moved."""
    canvas = np.zeros((side, side), np.uint8)
    for start, end in segments:
        a = np.rint((rot @ start + centre) * 16).astype(int)
        b = np.rint((rot @ end + centre) * 16).astype(int)
        cv2.line(canvas, (int(a[0]), int(a[1])), (int(b[0]), int(b[1])), 255, 1, cv2.LINE_AA, 4)
    return canvas / 255.0


def leaf_litter(
    rng: np.random.Generator,
    count: int,
    kinds: Sequence[str],
    lengths: tuple[float, float],
    colours: Sequence[str],
) -> np.ndarray:
    """`count` leaves dropped one over another, each casting a soft shadow, on dark soil.

    Each leaf is drawn in a square window around it whose rows and columns wrap around the
    canvas, so the litter tiles. A leaf blends from a centre colour to an edge colour (both drawn
    from `colours`), is mottled, and has lighter veins and a stem.
    """
    canvas = colourise(fbm(rng, SIZE, sigma=30, octaves=4, gain=0.6), SOIL).astype(np.float64)
    mottle = fbm(rng, SIZE, sigma=6, octaves=3, gain=0.6)
    for _ in range(count):
        kind = kinds[int(rng.integers(len(kinds)))]
        length = rng.uniform(*lengths)
        rot = rotation(rng.uniform(0, 2 * np.pi))
        cx, cy = rng.uniform(0, SIZE, 2)
        half = int(0.7 * length) + 14
        side = 2 * half
        window = np.ix_(
            np.arange(int(cy) - half, int(cy) + half) % SIZE,
            np.arange(int(cx) - half, int(cx) + half) % SIZE,
        )
        centre = np.array([half + cx % 1, half + cy % 1])
        outline, veins, stem = leaf_shape(rng, kind, length)
        mask = np.zeros((side, side), np.uint8)
        points = np.rint((outline @ rot.T + centre) * 16).astype(np.int32)
        cv2.fillPoly(mask, [points], 255, cv2.LINE_AA, shift=4)
        alpha = mask / 255.0
        vein = draw_segments(veins, rot, centre, side) * alpha
        alpha = np.maximum(alpha, draw_segments([stem], rot, centre, side))
        shadow = np.roll(ndimage.gaussian_filter(alpha, 3.0), (3, 3), axis=(0, 1))
        ground = canvas[window] * (1 - 0.55 * shadow[..., None])
        edge = np.array(LEAF_COLOURS[colours[int(rng.integers(len(colours)))]], np.float64)
        inner = np.array(LEAF_COLOURS[colours[int(rng.integers(len(colours)))]], np.float64)
        wy, wx = grid(side)
        radius = np.hypot(wx - centre[0], wy - centre[1]) / (0.5 * length)
        blend = np.clip(radius * rng.uniform(0.8, 1.4), 0, 1)[..., None]
        colour = inner * (1 - blend) + edge * blend
        colour *= rng.uniform(0.75, 1.1) + 0.35 * (mottle[window][..., None] - 0.5)
        colour = colour * (1 - 0.3 * vein[..., None]) + 0.36 * vein[..., None] * inner
        canvas[window] = ground * (1 - alpha[..., None]) + colour * alpha[..., None]
    return np.clip(np.rint(canvas), 0, 255).astype(np.uint8)


def leaves_maple(rng: np.random.Generator) -> np.ndarray:
    """Fallen maple leaves in red, crimson, orange, amber and yellow overlapping on dark soil."""
    colours = ("red", "crimson", "orange", "amber", "yellow")
    return leaf_litter(rng, 70, ["maple"], (70, 120), colours)


def leaves_small(rng: np.random.Generator) -> np.ndarray:
    """Small oval serrated leaves in yellow, amber, orange, brown and tan scattered on dark soil."""
    colours = ("yellow", "amber", "orange", "brown", "tan")
    return leaf_litter(rng, 160, ["ovate"], (30, 60), colours)


def leaves_oak(rng: np.random.Generator) -> np.ndarray:
    """Mixed oak, maple and oval leaves in brown, russet, tan, red and amber on dark soil."""
    colours = ("brown", "russet", "tan", "red", "amber")
    return leaf_litter(rng, 85, ["oak", "oak", "maple", "ovate"], (55, 100), colours)


# --- paint (graffiti) --------------------------------------------------------------------------

SPRAY: dict[str, Colour] = {
    "pink": (236, 32, 124),
    "cyan": (22, 174, 232),
    "yellow": (252, 212, 24),
    "lime": (124, 212, 42),
    "orange": (250, 112, 22),
    "purple": (128, 52, 198),
    "red": (226, 30, 40),
    "blue": (28, 64, 204),
}
TAG_BLACK: Colour = (16, 14, 18)


def stroke_path(rng: np.random.Generator, length: float, step: float, wiggle: float) -> np.ndarray:
    """Points (x, y) of a smooth random curve of about `length` px starting anywhere."""
    heading = rng.uniform(0, 2 * np.pi)
    bend = 0.0
    points = [rng.uniform(0, SIZE, 2)]
    for _ in range(max(int(length / step), 2)):
        bend = 0.85 * bend + rng.normal(0, wiggle)
        heading += bend
        points.append(points[-1] + step * np.array([np.cos(heading), np.sin(heading)]))
    return np.array(points)


def tag_path(rng: np.random.Generator, letters: int) -> np.ndarray:
    """Points (x, y) of a hand-written looking scrawl: loops along a tilted baseline (a tag)."""
    height = rng.uniform(14, 26)
    t = np.linspace(0, 2 * np.pi * letters, 60 * letters)
    loop = height * rng.uniform(0.3, 0.5) * (1 + 0.4 * np.sin(t / 3.1 + rng.uniform(0, 6)))
    x = t / (2 * np.pi) * height * rng.uniform(0.6, 0.9) + loop * np.cos(t)
    y = -height * (0.5 + 0.5 * np.sin(t / 2.3)) * np.abs(np.sin(t / 2)) + 0.7 * loop * np.sin(t)
    points = np.stack([x + rng.uniform(-0.4, 0.1) * y, y], 1)
    return points @ rotation(rng.uniform(-0.3, 0.3)).T + rng.uniform(0, SIZE, 2)


def stamp(mask: np.ndarray, points: np.ndarray, radii: np.ndarray) -> None:
    """Filled anti-aliased discs (a round brush) at points, and at their copies one side away."""
    for (x, y), r in zip(points, radii, strict=True):
        for dy in (-SIZE, 0, SIZE):
            for dx in (-SIZE, 0, SIZE):
                if -r < x + dx < SIZE + r and -r < y + dy < SIZE + r:
                    centre = (int(np.rint((x + dx) * 16)), int(np.rint((y + dy) * 16)))
                    cv2.circle(mask, centre, int(np.rint(r * 16)), 255, -1, cv2.LINE_AA, shift=4)


def drips(rng: np.random.Generator, points: np.ndarray, radii: np.ndarray, count: int):
    """Alpha of `count` paint runs: thin lines falling from under the stroke, ending in a drop."""
    mask = np.zeros((SIZE, SIZE), np.uint8)
    for index in rng.choice(len(points), size=min(count, len(points)), replace=False):
        (x, y), r = points[index], radii[index]
        x += rng.uniform(-0.5, 0.5) * r
        width = rng.uniform(1.2, 2.6) * (1 + r / 40)
        fall = rng.uniform(15, 80)
        steps = np.arange(0, fall, 1.0)
        line = np.stack([np.full_like(steps, x), y + 0.5 * r + steps], 1)
        stamp(mask, line, width * (1 - 0.3 * steps / fall))
        stamp(mask, line[-1:], np.array([width * rng.uniform(1.2, 1.6)]))  # the drop
    return ndimage.gaussian_filter(mask / 255.0, 0.6, mode="wrap")


def spray(rng: np.random.Generator, mask: np.ndarray, soft: float, overspray: float) -> np.ndarray:
    """Alpha of a sprayed shape: a soft edge plus a halo of fine paint dots just outside it."""
    hard = mask / 255.0
    core = np.clip((ndimage.gaussian_filter(hard, soft, mode="wrap") - 0.15) / 0.7, 0, 1)
    halo = ndimage.gaussian_filter(hard, 2 * soft + 3, mode="wrap") * (1 - core)
    dots = rng.random(mask.shape) < overspray * halo
    return np.maximum(core, 0.75 * dots)


def concrete(rng: np.random.Generator, palette: Palette) -> np.ndarray:
    """Concrete wall as float RGB: blotchy fractal noise with a little grain."""
    values = 0.85 * fbm(rng, SIZE, sigma=40, octaves=5, gain=0.6) + 0.15 * rng.random((SIZE, SIZE))
    return colourise(values, palette).astype(np.float64)


def over(canvas: np.ndarray, alpha: np.ndarray, colour: Colour) -> np.ndarray:
    """Paint `colour` over `canvas` (float RGB) with per-pixel opacity `alpha`."""
    return canvas * (1 - alpha[..., None]) + np.asarray(colour, np.float64) * alpha[..., None]


def spray_colour(rng: np.random.Generator) -> Colour:
    return list(SPRAY.values())[int(rng.integers(len(SPRAY)))]


def to_uint8(canvas: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(canvas), 0, 255).astype(np.uint8)


def paint_blobs(rng: np.random.Generator) -> np.ndarray:
    """Spray-paint blobs: bold colour clouds with overspray and runs on a light concrete wall."""
    canvas = concrete(rng, [(0.0, (120, 118, 112)), (0.6, (168, 164, 156)), (1.0, (196, 192, 184))])
    for _ in range(22):
        mask = np.zeros((SIZE, SIZE), np.uint8)
        points = stroke_path(rng, rng.uniform(10, 100), 6.0, 0.3)
        radii = np.full(len(points), rng.uniform(16, 40))
        stamp(mask, points, radii)
        alpha = spray(rng, mask, rng.uniform(2, 4), 0.6)
        alpha = np.maximum(alpha, drips(rng, points, radii, int(rng.integers(1, 5))))
        canvas = over(canvas, alpha, spray_colour(rng))
    return to_uint8(canvas)


def paint_strokes(rng: np.random.Generator) -> np.ndarray:
    """Graffiti strokes: bold tapered colour bands with black outlines, white shine and drips."""
    canvas = concrete(rng, [(0.0, (90, 88, 86)), (0.6, (136, 132, 126)), (1.0, (170, 166, 160))])
    for _ in range(13):
        points = stroke_path(rng, rng.uniform(200, 420), 3.0, 0.05)
        width = rng.uniform(12, 24)
        radii = width * (0.35 + 0.65 * np.sin(np.pi * np.linspace(0, 1, len(points))) ** 0.4)
        outline = np.zeros((SIZE, SIZE), np.uint8)
        stamp(outline, points, radii + 4)
        canvas = over(canvas, spray(rng, outline, 1.0, 0.3), TAG_BLACK)
        body = np.zeros((SIZE, SIZE), np.uint8)
        stamp(body, points, radii)
        inside = spray(rng, body, 1.0, 0.0)
        alpha = np.maximum(inside, drips(rng, points, radii, int(rng.integers(2, 6))))
        canvas = over(canvas, alpha, spray_colour(rng))
        shine = np.zeros((SIZE, SIZE), np.uint8)
        stamp(shine, points - [0.3 * width, 0.4 * width], np.maximum(radii * 0.18, 1))
        canvas = over(canvas, 0.8 * spray(rng, shine, 1.2, 0.0) * inside, (250, 250, 246))
    return to_uint8(canvas)


def paint_layers(rng: np.random.Generator) -> np.ndarray:
    """Layered graffiti on a dark wall: overlapping sprayed fills and strokes, drips, black tags."""
    canvas = concrete(rng, [(0.0, (60, 58, 60)), (0.6, (100, 96, 98)), (1.0, (130, 126, 126))])
    for layer in range(36):
        mask = np.zeros((SIZE, SIZE), np.uint8)
        if layer % 3 == 0:
            points = stroke_path(rng, rng.uniform(20, 80), 6.0, 0.3)
            radii = np.full(len(points), rng.uniform(25, 50))
        else:
            points = stroke_path(rng, rng.uniform(100, 300), 3.0, 0.12)
            radii = np.full(len(points), rng.uniform(5, 16))
        stamp(mask, points, radii)
        alpha = spray(rng, mask, rng.uniform(1, 3), 0.5)
        alpha = np.maximum(alpha, drips(rng, points, radii, int(rng.integers(0, 4))))
        canvas = over(canvas, alpha, spray_colour(rng))
    for _ in range(6):
        mask = np.zeros((SIZE, SIZE), np.uint8)
        points = tag_path(rng, int(rng.integers(4, 8)))
        stamp(mask, points, np.full(len(points), rng.uniform(1.5, 2.5)))
        canvas = over(canvas, spray(rng, mask, 0.7, 0.1), TAG_BLACK)
    return to_uint8(canvas)


# --- scikit-image sample textures ------------------------------------------------------------

CROPS = (
    ("full image", (0, 0, 512)),
    ("top-left 384x384 crop", (0, 0, 384)),
    ("bottom-right 320x320 crop", (192, 192, 320)),
)
#: Output side per texture (procedural ones default to SIZE): grass is noisier than the rest and
#: needs 448 px to stay under 500 KB; fur is drawn at SIZE and area-downsampled to 384 px.
SIDES = {"brick": 512, "grass": 448, "gravel": 512, "fur": 384}

TINTS: dict[str, tuple[str, tuple[Palette, Palette, Palette]]] = {
    "brick": (
        "reddish",
        (
            [(0.0, (52, 22, 18)), (0.5, (148, 64, 44)), (1.0, (222, 170, 140))],
            [(0.0, (66, 34, 20)), (0.5, (176, 92, 54)), (1.0, (232, 190, 152))],
            [(0.0, (40, 18, 16)), (0.5, (120, 48, 38)), (1.0, (200, 142, 120))],
        ),
    ),
    "grass": (
        "green",
        (
            [(0.0, (18, 42, 10)), (0.5, (68, 118, 34)), (1.0, (168, 206, 110))],
            [(0.0, (34, 46, 12)), (0.5, (110, 130, 40)), (1.0, (206, 212, 120))],
            [(0.0, (10, 32, 12)), (0.5, (44, 96, 36)), (1.0, (130, 184, 100))],
        ),
    ),
    "gravel": (
        "grey-brown",
        (
            [(0.0, (50, 46, 42)), (0.5, (128, 118, 104)), (1.0, (214, 204, 188))],
            [(0.0, (58, 46, 34)), (0.5, (142, 120, 94)), (1.0, (222, 204, 176))],
            [(0.0, (44, 46, 48)), (0.5, (118, 118, 116)), (1.0, (206, 206, 202))],
        ),
    ),
}


def tinted_crops(name: str) -> list[np.ndarray]:
    """Three colourings of a grayscale scikit-image texture (see CROPS and TINTS)."""
    gray = getattr(skdata, name)().astype(np.float64) / 255.0
    _, palettes = TINTS[name]
    out = SIDES[name]
    images = []
    for (_, (top, left, side)), palette in zip(CROPS, palettes, strict=True):
        crop = gray[top : top + side, left : left + side]
        if side != out:
            method = cv2.INTER_CUBIC if out > side else cv2.INTER_AREA
            crop = cv2.resize(crop, (out, out), interpolation=method)
        images.append(colourise(normalise(crop, 1, 99), palette))
    return images


def skimage_source(name: str, index: int) -> str:
    tint, _ = TINTS[name]
    out = SIDES[name]
    what, _ = CROPS[index]
    return (
        f"scikit-image data.{name}() (CC0), grayscale 512x512, {what}; resized to {out}x{out} "
        f"where needed (bicubic up, area down), contrast-stretched between its 1st and 99th "
        f"percentile and coloured with a {tint} 3-stop palette (palette {index}) by "
        "python tools/make_textures.py"
    )


# --- library ---------------------------------------------------------------------------------

Maker = Callable[[np.random.Generator], np.ndarray]
PROCEDURAL: dict[str, list[Maker]] = {
    "snow": [snow_noise, snow_flakes, snow_drifts, *texture_snow_wood.SNOW],
    "wood": [wood_rings, wood_grain, wood_planks, *texture_snow_wood.WOOD],
    "stripes": [stripes_zebra, stripes_candy, stripes_pinstripe],
    "fur": [fur_short, fur_long, fur_leopard],
    "leaves": [leaves_maple, leaves_small, leaves_oak],
    "paint": [paint_blobs, paint_strokes, paint_layers],
}
SKIMAGE = ("brick", "grass", "gravel")
#: procedural styles drawn after the scikit-image crops (indices 3...)
MORE: dict[str, list[Maker]] = {
    "grass": texture_ground.GRASS,
    "gravel": texture_ground.GRAVEL,
}
#: the first three styles of a texture keep their original PNG files (their ids and hashes are
#: what earlier builds recorded); later ones are JPEG at this side, to keep the library small
FIRST = 3
LATER_SIDE = 320
DESCRIPTIONS = {
    "snow": "snow surfaces: fresh, trodden, tyre-tracked, slushy, sun-lit, shaded, drifts",
    "wood": "wood: boards, grain, knots, end grain, bark, weathered and dark wood",
    "grass": "grass: lawns, meadow, dry grass, clover, moss",
    "gravel": "gravel: pebbles, fine, crushed, lava and wet gravel, pebbly soil",
    "stone": "stone: rock faces, cliffs, cobblestones, onyx",
    "sand": "sand: beach sand, desert sand, sandy gravel",
    "rust": "rusty and worn metal",
}


def texture_rng(seed: int, name: str, index: int) -> np.random.Generator:
    """Generator per (seed, texture, image): regenerating one image never shifts the others."""
    return np.random.default_rng([seed, zlib.crc32(name.encode()), index])


def procedural_source(make: Maker, name: str, index: int, seed: int, side: int) -> str:
    what = (make.__doc__ or "").strip().splitlines()[0]
    return (
        f"procedural: python tools/make_textures.py, {make.__name__} (seed {seed}, {name} "
        f"{index}); {what} Drawn at {SIZE}x{SIZE}"
        + (f", area-downsampled to {side}x{side}" if side != SIZE else "")
    )


def build(seed: int = 0) -> dict[str, list[tuple[np.ndarray, dict[str, str]]]]:
    """Every generated style image as {texture: [(pixels, manifest entry without file)]}."""
    textures: dict[str, list[tuple[np.ndarray, dict[str, str]]]] = {}
    for name, makers in PROCEDURAL.items():
        side = SIDES.get(name, SIZE)
        textures[name] = []
        for index, make in enumerate(makers):
            image = make(texture_rng(seed, name, index))
            out = side if index < FIRST else LATER_SIDE
            if out != SIZE:
                image = cv2.resize(image, (out, out), interpolation=cv2.INTER_AREA)
            source = procedural_source(make, name, index, seed, out)
            textures[name].append((image, {"kind": "procedural", "source": source}))
    for name in SKIMAGE:
        crops = tinted_crops(name)
        entries = [
            (image, {"kind": "procedural", "source": skimage_source(name, i)})
            for i, image in enumerate(crops)
        ]
        for index, make in enumerate(MORE.get(name, []), start=len(crops)):
            image = cv2.resize(
                make(texture_rng(seed, name, index)),
                (LATER_SIDE, LATER_SIDE),
                interpolation=cv2.INTER_AREA,
            )
            source = procedural_source(make, name, index, seed, LATER_SIDE)
            entries.append((image, {"kind": "procedural", "source": source}))
        textures[name] = entries
    return textures


def write_png(path: Path, rgb: np.ndarray) -> None:
    ok, encoded = cv2.imencode(".png", rgb[:, :, ::-1], [cv2.IMWRITE_PNG_COMPRESSION, 9])
    if not ok:
        raise RuntimeError(f"PNG encoding failed for {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encoded.tobytes())


def write_library(out: Path, seed: int = 0, photos: Path | None = None) -> Path:
    """Write the generated styles and the photos under `out`, and `out/manifest.yaml`.

    `photos`: the CC0 photo collection to import (`tools/texture_photos.py`); None keeps the
    photos `out/manifest.yaml` already lists. Splits follow `default_splits`, written out so
    the manifest names every texture's training and held-out styles.
    """
    path = out / "manifest.yaml"
    previous = yaml.safe_load(path.read_text()) if path.is_file() else {}
    if photos is not None:
        photo_entries = texture_photos.import_photos(photos, out)
    else:
        photo_entries = texture_photos.listed_photos(previous or {})
    styles: dict[str, list[dict[str, str]]] = {}
    for name, images in build(seed).items():
        styles[name] = []
        for index, (image, entry) in enumerate(images):
            if index < FIRST:
                relative = f"{name}/{index}.png"
                write_png(out / relative, image)
            else:
                relative = f"{name}/{index}.jpg"
                (out / relative).write_bytes(texture_photos.encode_jpeg(image, 88))
            styles[name].append({"file": relative, **entry, "license": CC0})
    for name, entries in photo_entries.items():
        styles.setdefault(name, []).extend(entries)
    manifest: dict[str, dict[str, object]] = {}
    for name, entries in styles.items():
        splits = default_splits([entry["kind"] for entry in entries])
        listed = [
            {
                "file": e["file"],
                "kind": e["kind"],
                "split": split,
                "source": e["source"],
                "license": e["license"],
            }
            for e, split in zip(entries, splits, strict=True)
        ]
        manifest[name] = {
            **({"description": DESCRIPTIONS[name]} if name in DESCRIPTIONS else {}),
            "styles": listed,
        }
    header = (
        "# Texture library read by pipeline.stylize.library. Generated by\n"
        "# `python tools/make_textures.py [--photos DIR]`: one entry per style image with its\n"
        "# own source and licence, its kind (procedural | photo) and its split (train |\n"
        "# heldout). A texture may instead name `files:` or a `folder:` of images with one\n"
        "# source and licence for all (splits then follow the default rule).\n"
    )
    body = yaml.safe_dump({"textures": manifest}, sort_keys=False, width=100)
    path.write_text(header + body)
    return path


def write_sheets(library_root: Path, folder: Path, thumb: int = 80) -> list[Path]:
    """One contact sheet per texture (styles, and the astronaut re-rendered in each) as a
    256-colour PNG in `folder`, for the documentation."""
    from PIL import Image

    from pipeline.stylize.library import load_texture_library
    from pipeline.stylize.preview import render_contact_sheet

    library = load_texture_library(library_root)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name in library.names():
        sheet = render_contact_sheet(library, thumb=thumb, textures=[name])
        path = folder / f"{name}.png"
        Image.fromarray(sheet).quantize(256, dither=Image.Dither.NONE).save(path, optimize=True)
        written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="library folder")
    parser.add_argument("--seed", type=int, default=0, help="seed of the procedural textures")
    parser.add_argument(
        "--photos",
        type=Path,
        default=texture_photos.DEFAULT_PHOTOS if texture_photos.DEFAULT_PHOTOS.is_dir() else None,
        help="CC0 photo folder with SOURCES.tsv to import (default: ../shared/textures-cc0 if "
        "present; else the photos already listed are kept)",
    )
    parser.add_argument(
        "--sheets", type=Path, default=None, help="also write a contact sheet per texture here"
    )
    args = parser.parse_args(argv)
    manifest = write_library(args.out, args.seed, args.photos)
    if args.sheets is not None:
        print(f"wrote {len(write_sheets(args.out, args.sheets))} contact sheets to {args.sheets}")
    total = sum(p.stat().st_size for p in args.out.rglob("*") if p.suffix in {".png", ".jpg"})
    print(f"wrote {manifest} ({total / 1e6:.2f} MB of images)")


if __name__ == "__main__":
    main()
