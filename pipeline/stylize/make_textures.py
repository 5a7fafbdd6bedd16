"""Generate the bundled texture library: `python -m pipeline.stylize.make_textures [--out DIR]`.

Why generated and not downloaded: every shipped style image must have a clear licence and be
reproducible. Procedural textures (snow, wood, stripes) are drawn from fixed seeds with
numpy/scipy; brick, grass and gravel are colourings and crops of scikit-image's CC0 sample images.
Running this again rewrites identical pixels and the manifest that `pipeline.stylize.library`
reads.
"""

from __future__ import annotations

import argparse
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np
import yaml
from scipy import ndimage
from skimage import data as skdata

SIZE = 512
DEFAULT_OUT = Path(__file__).resolve().parents[2] / "textures"
CC0 = "CC0-1.0"

Colour = tuple[int, int, int]
Palette = Sequence[tuple[float, Colour]]


# --- building blocks -------------------------------------------------------------------------


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


# --- scikit-image sample textures ------------------------------------------------------------

CROPS = (
    ("full image", (0, 0, 512)),
    ("top-left 384x384 crop", (0, 0, 384)),
    ("bottom-right 320x320 crop", (192, 192, 320)),
)
#: Output side per texture; grass is noisier than the rest and needs 448 px to stay under 500 KB.
SIDES = {"brick": 512, "grass": 448, "gravel": 512}

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


def skimage_source(name: str) -> str:
    tint, _ = TINTS[name]
    out = SIDES[name]
    parts = "; ".join(f"{i}: {what}" for i, (what, _) in enumerate(CROPS))
    return (
        f"scikit-image data.{name}() (CC0), grayscale 512x512; {parts}; each resized to "
        f"{out}x{out} where needed (bicubic up, area down), contrast-stretched "
        f"between its 1st and 99th percentile and coloured with a {tint} 3-stop palette "
        f"(a different palette per image) by python -m pipeline.stylize.make_textures"
    )


# --- library ---------------------------------------------------------------------------------

PROCEDURAL: dict[str, list[Callable[[np.random.Generator], np.ndarray]]] = {
    "snow": [snow_noise, snow_flakes, snow_drifts],
    "wood": [wood_rings, wood_grain, wood_planks],
    "stripes": [stripes_zebra, stripes_candy, stripes_pinstripe],
}
SKIMAGE = ("brick", "grass", "gravel")


def texture_rng(seed: int, name: str, index: int) -> np.random.Generator:
    """Generator per (seed, texture, image): regenerating one image never shifts the others."""
    return np.random.default_rng([seed, zlib.crc32(name.encode()), index])


def build(seed: int = 0) -> dict[str, tuple[list[np.ndarray], str]]:
    """All textures as {name: (images, source description)}."""
    textures: dict[str, tuple[list[np.ndarray], str]] = {}
    for name, makers in PROCEDURAL.items():
        images = [make(texture_rng(seed, name, i)) for i, make in enumerate(makers)]
        parts = "; ".join(f"{i}: {(make.__doc__ or '').strip()}" for i, make in enumerate(makers))
        source = f"procedural: python -m pipeline.stylize.make_textures (seed {seed}); {parts}"
        textures[name] = (images, source)
    for name in SKIMAGE:
        textures[name] = (tinted_crops(name), skimage_source(name))
    return textures


def write_png(path: Path, rgb: np.ndarray) -> None:
    ok, encoded = cv2.imencode(".png", rgb[:, :, ::-1], [cv2.IMWRITE_PNG_COMPRESSION, 9])
    if not ok:
        raise RuntimeError(f"PNG encoding failed for {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encoded.tobytes())


def write_library(out: Path, seed: int = 0) -> Path:
    """Write textures/<name>/<index>.png and textures/manifest.yaml under `out`."""
    manifest: dict[str, dict[str, object]] = {}
    for name, (images, source) in build(seed).items():
        files = []
        for index, image in enumerate(images):
            relative = f"{name}/{index}.png"
            write_png(out / relative, image)
            files.append(relative)
        manifest[name] = {"files": files, "source": source, "license": CC0}
    path = out / "manifest.yaml"
    header = (
        "# Texture library read by pipeline.stylize.library. Generated by\n"
        "# `python -m pipeline.stylize.make_textures`; a texture may also name a `folder:` of\n"
        "# images instead of `files:` (all images in it, sorted by name).\n"
    )
    body = yaml.safe_dump({"textures": manifest}, sort_keys=False, width=100)
    path.write_text(header + body)
    return path


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="library folder")
    parser.add_argument("--seed", type=int, default=0, help="seed of the procedural textures")
    args = parser.parse_args(argv)
    manifest = write_library(args.out, args.seed)
    total = sum(p.stat().st_size for p in args.out.rglob("*.png"))
    print(f"wrote {manifest} ({total / 1e6:.2f} MB of PNG)")


if __name__ == "__main__":
    main()
