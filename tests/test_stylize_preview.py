"""Contact sheet of the texture library and the original / mask / counterfactual panel."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from pipeline.imageio import load_png
from pipeline.store.atomic import atomic_write_bytes
from pipeline.stylize.library import load_texture_library
from pipeline.stylize.preview import contact_sheet, render_contact_sheet, side_by_side


@pytest.fixture(scope="module")
def small_library(tmp_path_factory: pytest.TempPathFactory):
    """Two textures of 2 and 3 images (different sizes, one grayscale)."""
    root = tmp_path_factory.mktemp("textures")
    rng = np.random.default_rng(0)
    for name, count in (("dots", 2), ("noise", 3)):
        (root / name).mkdir()
        for index in range(count):
            shape = (40 + 10 * index, 60) if name == "noise" else (50, 50, 3)
            pixels = rng.integers(0, 256, shape, dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{index}.png")
    manifest = {
        "textures": {
            "dots": {"folder": "dots", "license": "CC0-1.0", "source": "test"},
            "noise": {"folder": "noise", "license": "CC-BY-4.0", "source": "test noise"},
        }
    }
    (root / "manifest.yaml").write_text(yaml.safe_dump(manifest))
    return load_texture_library(root)


def test_contact_sheet_grid(small_library, tmp_path: Path) -> None:
    thumb = 48
    out = atomic_write_bytes(tmp_path / "sheet.png", contact_sheet(small_library, thumb=thumb))
    sheet = load_png(out)
    # rows: 2 textures x (styles row + sample row); columns: label + at most 3 style images
    assert sheet.shape == (2 * 2 * thumb, (1 + 3) * thumb, 3)
    assert sheet.std() > 20  # not blank
    label = sheet[:thumb, :thumb].astype(int)
    assert (label < 100).any() and (label > 200).any()  # dark text on a light cell
    empty = sheet[:thumb, 3 * thumb + 2 :]  # "dots" has only 2 styles: last column is padding
    assert empty.std() < 10
    sample = sheet[thumb : 2 * thumb, thumb : 2 * thumb]  # "dots"/0 rendering of the photo
    assert sample.std() > 10


def test_contact_sheet_without_samples(small_library) -> None:
    sheet = render_contact_sheet(small_library, thumb=32, sample=None, max_styles=2)
    assert sheet.shape == (2 * 32, 3 * 32, 3) and sheet.dtype == np.uint8


def test_bundled_library_sheet(tmp_path: Path) -> None:
    library = load_texture_library()
    sheet = render_contact_sheet(library, thumb=32, sample=None)
    columns = max(len(library.texture(n).files) for n in library.names())
    assert sheet.shape == (len(library.names()) * 32, (1 + columns) * 32, 3)


def test_side_by_side() -> None:
    rng = np.random.default_rng(1)
    original = rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)
    mask = np.zeros((30, 40), bool)  # half size: resized to the original
    mask[5:20, 10:30] = True
    counterfactual = 255 - original
    panel = side_by_side(original, mask, counterfactual, captions=["a", "b", "c"])
    assert panel.dtype == np.uint8 and panel.shape[1] == 3 * 80 + 2 * 4
    band = panel.shape[0] - 60
    assert band > 0
    np.testing.assert_array_equal(panel[band:, :80], original)
    np.testing.assert_array_equal(panel[band:, 2 * 84 :], counterfactual)
    overlay = panel[band:, 84 : 84 + 80].astype(int)
    inside, outside = overlay[20:30, 30:50], overlay[50:, :]
    assert inside[..., 0].mean() > inside[..., 1].mean() + 50  # tinted red
    assert not np.array_equal(overlay, original)
    bare = side_by_side(original, mask.astype(np.uint8) * 255, counterfactual, ["", "", ""])
    assert bare.shape == (60, 248, 3)
    assert np.abs(outside - (0.8 * original[50:]).astype(int)).max() <= 1  # dimmed
    with pytest.raises(ValueError):
        side_by_side(original, mask, counterfactual, captions=["only one"])


def test_bundled_sheet_marks_held_out_styles() -> None:
    """Each texture row shows every style, real and procedural; held-out ones are framed and
    banded in orange (HELDOUT), training ones have a black band."""
    from pipeline.stylize.preview import HELDOUT

    library = load_texture_library()
    thumb = 48
    sheet = render_contact_sheet(library, thumb=thumb, sample=None, textures=["snow", "stone"])
    columns = max(len(library.texture(n).styles) for n in ("snow", "stone"))
    assert sheet.shape == (2 * thumb, (1 + columns) * thumb, 3)
    for row, name in enumerate(("snow", "stone")):
        for style in library.styles([name]):
            left = (1 + style.index) * thumb
            band = sheet[(row + 1) * thumb - 2, left + thumb // 2].astype(int)
            expected = HELDOUT if style.split == "heldout" else (0, 0, 0)
            assert np.abs(band - expected).max() < 40, style.style_id
    kinds = {s.kind for s in library.texture("snow").styles}
    assert kinds == {"photo", "procedural"}
