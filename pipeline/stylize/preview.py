"""Pictures for people: a contact sheet of the texture library and original/mask/result panels.

`contact_sheet` is the PNG that `conceptswap textures --preview PATH` writes (it returns the
bytes; the command writes the file): one row per texture with its style images, the first cell
holding the texture's name, licence, counts (procedural / photo, held out) and source, and
(optionally) a second row per texture with a sample photo re-rendered in each style image by
the `texture` stylizer, so a user sees what a texture does before building with it. Each style
is captioned `texture/index` and its kind (`proc` or `photo`); held-out styles have an orange
caption band and frame, training styles a dark one. The sheet is an exact grid:
`(1 + columns) * thumb` wide and `rows * thumb` high, where columns is the largest number of
style images of a texture and rows is the number of textures, doubled with samples.

`side_by_side` lays out original / mask overlay / counterfactual for the build report.
"""

from __future__ import annotations

import textwrap
from collections import Counter
from collections.abc import Sequence
from functools import lru_cache

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from pipeline.imageio import encode_png
from pipeline.stylize.base import Stylizer
from pipeline.stylize.colour import to_rgb_uint8
from pipeline.stylize.library import Texture, TextureLibrary, load_style

SAMPLES = ("astronaut", "coffee")
BACKGROUND = (245, 245, 245)
GRID = (200, 200, 200)
TEXT = (20, 20, 20)
MUTED = (90, 90, 90)
MASK_TINT = np.array([255, 40, 40], np.float32)
MASK_EDGE = (255, 220, 0)
HELDOUT = (230, 120, 0)  # caption band and frame of a held-out style
TRAIN = (0, 0, 0)
KIND_LABELS = {"photo": "photo", "procedural": "proc"}

Font = ImageFont.FreeTypeFont | ImageFont.ImageFont


@lru_cache(maxsize=8)
def _font(size: int) -> Font:
    """PIL's default font at `size` px (its bitmap fallback where FreeType is missing)."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # older Pillow or no FreeType
        return ImageFont.load_default()


def _fit(draw: ImageDraw.ImageDraw, text: str, font: Font, width: int) -> str:
    """`text`, cut with an ellipsis so it is at most `width` px wide."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"


def square_thumb(image: np.ndarray, size: int) -> np.ndarray:
    """Centre-crop to a square and resize to `size` x `size` (area filter when shrinking)."""
    rgb = to_rgb_uint8(image)
    height, width = rgb.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    crop = rgb[top : top + side, left : left + side]
    interpolation = cv2.INTER_AREA if side > size else cv2.INTER_CUBIC
    return np.ascontiguousarray(cv2.resize(crop, (size, size), interpolation=interpolation))


def sample_photo(name: str = "astronaut") -> np.ndarray:
    """A scikit-image sample photo (bundled with the package, so offline): astronaut or coffee."""
    from skimage import data

    if name not in SAMPLES:
        raise ValueError(f"unknown sample {name!r}; available: {', '.join(SAMPLES)}")
    return to_rgb_uint8(getattr(data, name)())


def _label_cell(lines: Sequence[tuple[str, Font, tuple[int, int, int]]], thumb: int) -> Image.Image:
    cell = Image.new("RGB", (thumb, thumb), BACKGROUND)
    draw = ImageDraw.Draw(cell)
    margin, y = max(2, thumb // 32), max(2, thumb // 32)
    for text, font, colour in lines:
        height = font.size if isinstance(font, ImageFont.FreeTypeFont) else 11
        if y + height > thumb - margin:
            break
        draw.text((margin, y), _fit(draw, text, font, thumb - 2 * margin), font=font, fill=colour)
        y += int(height * 1.25)
    return cell


def _caption(
    cell: np.ndarray, text: str, size: int, band_colour: tuple[int, int, int] = TRAIN
) -> np.ndarray:
    """`text` on a band (dark by default) along the bottom of a thumbnail."""
    image = Image.fromarray(cell)
    draw = ImageDraw.Draw(image)
    font = _font(size)
    band = int(size * 1.5)
    draw.rectangle((0, cell.shape[0] - band, cell.shape[1], cell.shape[0]), fill=band_colour)
    text = _fit(draw, text, font, cell.shape[1] - 4)
    draw.text((2, cell.shape[0] - band + (band - size) // 2), text, font=font, fill=(255, 255, 255))
    return np.asarray(image)


def _frame(cell: np.ndarray, colour: tuple[int, int, int]) -> np.ndarray:
    """A copy of `cell` with a border of `colour`, 1/32 of its side wide (at least 2 px)."""
    out = cell.copy()
    width = max(2, cell.shape[0] // 32)
    out[:width], out[-width:], out[:, :width], out[:, -width:] = colour, colour, colour, colour
    return out


def _style_cell(cell: np.ndarray, text: str, split: str, size: int) -> np.ndarray:
    """A style's thumbnail, captioned; framed and banded in orange when it is held out."""
    if split == "heldout":
        return _caption(_frame(cell, HELDOUT), text, size, HELDOUT)
    return _caption(cell, text, size)


def _summary(texture: Texture, shown: int) -> list[str]:
    """Label-cell lines: counts by kind and split (e.g. '8 proc + 2 photo, 3 held out')."""
    kinds = Counter(KIND_LABELS.get(style.kind, "other") for style in texture.styles)
    parts = " + ".join(f"{n} {kind}" for kind, n in sorted(kinds.items()))
    count = len(texture.styles)
    lines = [f"{shown} of {count}: {parts}" if shown < count else parts]
    lines.append(f"{len(texture.split('heldout'))} held out (orange)")
    return lines


def render_contact_sheet(
    library: TextureLibrary,
    thumb: int = 128,
    sample: str | np.ndarray | None = "astronaut",
    stylizer: Stylizer | None = None,
    textures: Sequence[str] | None = None,
    max_styles: int | None = None,
    seed: int = 0,
) -> np.ndarray:
    """The contact sheet as a uint8 RGB array (see the module docstring for the layout).

    Args:
        sample: a sample name (`astronaut`, `coffee`), an RGB image, or None for no sample rows.
        stylizer: renders the sample rows; default the `texture` stylizer with default settings.
        textures: names to show (default all, sorted); max_styles: cap on columns per texture.
    """
    if thumb < 32:
        raise ValueError(f"thumb must be >= 32, got {thumb}")
    names = library.names() if textures is None else list(textures)
    if not names:
        raise ValueError("the texture library is empty")
    styles_by_texture = {}
    for name in names:
        styles = library.styles([name])
        styles_by_texture[name] = styles[:max_styles] if max_styles else styles
    columns = max(len(styles) for styles in styles_by_texture.values())
    photo = None
    if sample is not None:
        photo = square_thumb(sample_photo(sample) if isinstance(sample, str) else sample, thumb)
        if stylizer is None:
            from pipeline.stylize.texture import TextureStylizer

            stylizer = TextureStylizer()
    rows_per_texture = 1 if photo is None else 2
    sheet = np.full(
        (len(names) * rows_per_texture * thumb, (1 + columns) * thumb, 3), BACKGROUND, np.uint8
    )
    title, small = _font(max(9, thumb // 9)), _font(max(8, thumb // 12))
    caption_size = max(8, thumb // 12)
    wrap = max(8, int(thumb / (0.55 * small.size))) if hasattr(small, "size") else 20

    for number, name in enumerate(names):
        styles = styles_by_texture[name]
        texture = library.texture(name)
        top = number * rows_per_texture * thumb
        lines = [(name, title, TEXT), (f"license: {texture.license}", small, TEXT)]
        lines += [(line, small, MUTED) for line in _summary(texture, len(styles))]
        lines += [(part, small, MUTED) for part in textwrap.wrap(texture.source, wrap)]
        sheet[top : top + thumb, :thumb] = np.asarray(_label_cell(lines, thumb))
        pixels = [load_style(style) for style in styles]
        for column, (style, image) in enumerate(zip(styles, pixels, strict=True), start=1):
            kind = KIND_LABELS.get(texture.styles[style.index].kind, "")
            text = f"{style.style_id} {kind}".strip()
            cell = _style_cell(square_thumb(image, thumb), text, style.split, caption_size)
            sheet[top : top + thumb, column * thumb : (column + 1) * thumb] = cell
        if photo is not None and stylizer is not None:
            row = top + thumb
            sheet[row : row + thumb, :thumb] = _caption(photo, "sample photo", caption_size)
            for column, (style, image) in enumerate(zip(styles, pixels, strict=True), start=1):
                out = stylizer.stylize([photo], image, seed=seed)[0]
                cell = _style_cell(out, f"sample in {style.style_id}", style.split, caption_size)
                sheet[row : row + thumb, column * thumb : (column + 1) * thumb] = cell

    canvas = Image.fromarray(sheet)
    draw = ImageDraw.Draw(canvas)
    for x in range(thumb, sheet.shape[1], thumb):
        draw.line((x, 0, x, sheet.shape[0]), fill=GRID)
    for y in range(rows_per_texture * thumb, sheet.shape[0], rows_per_texture * thumb):
        draw.line((0, y, sheet.shape[1], y), fill=TEXT, width=2)
    return np.asarray(canvas).copy()


def contact_sheet(
    library: TextureLibrary,
    thumb: int = 128,
    sample: str | np.ndarray | None = "astronaut",
    stylizer: Stylizer | None = None,
    textures: Sequence[str] | None = None,
    max_styles: int | None = None,
) -> bytes:
    """The library's contact sheet as PNG bytes; the caller decides where (and how) to write it."""
    sheet = render_contact_sheet(library, thumb, sample, stylizer, textures, max_styles)
    return encode_png(sheet)


def mask_overlay(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The image dimmed, the mask tinted red and outlined in yellow (same look as the report)."""
    rgb = to_rgb_uint8(image).astype(np.float32)
    inside = _as_mask(mask, rgb.shape[:2])
    out = np.where(inside[..., None], 0.45 * rgb + 0.55 * MASK_TINT, 0.8 * rgb).astype(np.uint8)
    contours, _ = cv2.findContours(
        inside.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE
    )
    thickness = max(1, round(max(rgb.shape[:2]) / 256))
    return cv2.drawContours(np.ascontiguousarray(out), contours, -1, MASK_EDGE, thickness)


def _as_mask(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    array = np.asarray(mask)
    if array.ndim == 3:
        array = array[..., 0]
    inside = array > (127 if array.dtype == np.uint8 and array.max() > 1 else 0)
    if inside.shape != shape:
        resized = cv2.resize(
            inside.astype(np.uint8), (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST
        )
        inside = resized > 0
    return inside


def side_by_side(
    original: np.ndarray,
    mask: np.ndarray,
    counterfactual: np.ndarray,
    captions: Sequence[str] | None = None,
    gap: int = 4,
) -> np.ndarray:
    """original | mask overlay | counterfactual, at the original's size, captioned above.

    `mask` may be boolean, 0/1 or 0/255 (any size: resized nearest to the original);
    `counterfactual` is resized to the original if it differs. `captions` (three strings,
    default "original", "mask", "counterfactual") go in a band above each panel; pass three
    empty strings for none. Returns uint8 RGB of height H + band and width 3 W + 2 gap.
    """
    rgb = to_rgb_uint8(original)
    height, width = rgb.shape[:2]
    cf = to_rgb_uint8(counterfactual)
    if cf.shape[:2] != (height, width):
        cf = cv2.resize(cf, (width, height), interpolation=cv2.INTER_AREA)
    panels = [rgb, mask_overlay(rgb, mask), cf]
    texts = list(captions) if captions is not None else ["original", "mask", "counterfactual"]
    if len(texts) != 3:
        raise ValueError(f"captions must be three strings, got {len(texts)}")
    size = max(10, min(16, width // 16))
    band = int(size * 1.6) if any(texts) else 0
    canvas = Image.new("RGB", (3 * width + 2 * gap, height + band), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    font = _font(size)
    for index, (panel, text) in enumerate(zip(panels, texts, strict=True)):
        left = index * (width + gap)
        canvas.paste(Image.fromarray(panel), (left, band))
        if text:
            draw.text(
                (left + 2, (band - size) // 2),
                _fit(draw, text, font, width - 4),
                font=font,
                fill=TEXT,
            )
    return np.asarray(canvas).copy()
