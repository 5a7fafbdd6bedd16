"""Texture library: the shipped textures, manifest validation, user folders, style loading."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from pipeline.hashing import sha256_file
from pipeline.records import StyleImage
from pipeline.stylize.library import (
    ENV_VAR,
    TextureLibraryError,
    default_root,
    load_style,
    load_texture_library,
)
from tools import make_textures

REQUIRED = ("snow", "wood", "brick", "grass", "gravel")


def write_png(path: Path, image: np.ndarray) -> Path:
    """Write RGB(A) or grayscale pixels as PNG (cv2 wants BGR order)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if image.ndim == 3 and image.shape[2] == 3:
        image = image[:, :, ::-1]
    elif image.ndim == 3 and image.shape[2] == 4:
        image = image[:, :, [2, 1, 0, 3]]
    assert cv2.imwrite(str(path), image)
    return path


def pixels(seed: int, shape: tuple[int, ...] = (16, 16, 3)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)


def make_library(root: Path, textures: dict) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "manifest.yaml").write_text(yaml.safe_dump({"textures": textures}))
    return root


@pytest.fixture()
def small_library(tmp_path: Path) -> Path:
    write_png(tmp_path / "lib" / "dots" / "0.png", pixels(0))
    write_png(tmp_path / "lib" / "dots" / "1.png", pixels(1))
    entry = {"files": ["dots/0.png", "dots/1.png"], "source": "test pixels", "license": "CC0-1.0"}
    return make_library(tmp_path / "lib", {"dots": entry})


# --- the shipped library ---------------------------------------------------------------------


def test_shipped_library_is_complete_and_licensed() -> None:
    library = load_texture_library()
    assert set(REQUIRED) <= set(library.names())
    styles = library.styles()
    total = 0
    for name in REQUIRED:
        assert len([s for s in styles if s.texture == name]) >= 3
    for style in styles:
        path = Path(style.path)
        assert path.is_absolute() and path.suffix == ".png"
        assert style.style_id == f"{style.texture}/{style.index}"
        assert style.license == "CC0-1.0" and style.source.strip()
        assert style.sha256 == sha256_file(path)
        assert path.stat().st_size < 500_000
        total += path.stat().st_size
        image = load_style(style)
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
        assert min(image.shape[:2]) >= 256 and max(image.shape[:2]) <= 512
    assert total < 8_000_000
    assert "data.brick()" in library.texture("brick").source


def test_default_root_is_the_repo_textures_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert default_root() == Path(__file__).resolve().parents[1] / "textures"
    assert (default_root() / "manifest.yaml").is_file()


def test_shipped_procedural_textures_are_reproducible() -> None:
    """The PNGs on disk are exactly what the generator draws from its fixed seed."""
    generated = make_textures.stripes_candy(make_textures.texture_rng(0, "stripes", 1))
    on_disk = load_style(
        next(s for s in load_texture_library().styles(["stripes"]) if s.index == 1)
    )
    assert np.array_equal(generated, on_disk)
    again = make_textures.stripes_candy(make_textures.texture_rng(0, "stripes", 1))
    assert np.array_equal(generated, again)


# --- choosing the root -----------------------------------------------------------------------


def test_env_var_and_argument_choose_the_root(
    small_library: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_VAR, str(small_library))
    assert load_texture_library().names() == ["dots"]
    other = make_library(
        tmp_path / "other",
        {"solo": {"files": [str(small_library / "dots" / "0.png")], "source": "s", "license": "x"}},
    )
    assert load_texture_library(other).names() == ["solo"]  # argument beats the env var


# --- validation ------------------------------------------------------------------------------


def test_missing_file_is_named(small_library: Path) -> None:
    (small_library / "dots" / "1.png").unlink()
    with pytest.raises(TextureLibraryError, match=r"texture 'dots': file 'dots/1.png' does not"):
        load_texture_library(small_library)


def test_missing_license_and_empty_source_are_named(tmp_path: Path) -> None:
    write_png(tmp_path / "lib" / "a" / "0.png", pixels(0))
    root = make_library(
        tmp_path / "lib",
        {
            "nolicense": {"files": ["a/0.png"], "source": "somewhere"},
            "nosource": {"files": ["a/0.png"], "source": "  ", "license": "CC0-1.0"},
        },
    )
    with pytest.raises(TextureLibraryError) as error:
        load_texture_library(root)
    message = str(error.value)
    # every problem is reported in one go, each naming its texture
    assert "texture 'nolicense': missing or empty 'license'" in message
    assert "texture 'nosource': missing or empty 'source'" in message


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ({"source": "s", "license": "l"}, "exactly one of 'files'"),
        ({"files": ["a/0.png"], "folder": "a", "source": "s", "license": "l"}, "exactly one"),
        ({"files": [], "source": "s", "license": "l"}, "non-empty list"),
        ({"files": ["a/notes.txt"], "source": "s", "license": "l"}, "not an image file type"),
        ({"folder": "nowhere", "source": "s", "license": "l"}, "folder 'nowhere' does not exist"),
        ({"folder": "empty", "source": "s", "license": "l"}, "holds no image files"),
        ({"files": ["a/0.png"], "source": "s", "licence": "l"}, "unknown keys"),
        ("just a string", "expected a mapping"),
    ],
)
def test_bad_entries_are_explained(tmp_path: Path, entry: object, problem: str) -> None:
    write_png(tmp_path / "lib" / "a" / "0.png", pixels(0))
    (tmp_path / "lib" / "a" / "notes.txt").write_text("not an image")
    (tmp_path / "lib" / "empty").mkdir()
    root = make_library(tmp_path / "lib", {"bad": entry})
    with pytest.raises(TextureLibraryError, match="texture 'bad'") as error:
        load_texture_library(root)
    assert problem in str(error.value)


def test_bad_names_and_manifests(tmp_path: Path) -> None:
    with pytest.raises(TextureLibraryError, match="manifest not found"):
        load_texture_library(tmp_path / "missing")
    write_png(tmp_path / "lib" / "a" / "0.png", pixels(0))
    root = make_library(
        tmp_path / "lib", {"a/b": {"files": ["a/0.png"], "source": "s", "license": "l"}}
    )
    with pytest.raises(TextureLibraryError, match="invalid name"):
        load_texture_library(root)
    (root / "manifest.yaml").write_text("styles: {}\n")
    with pytest.raises(TextureLibraryError, match="top-level 'textures:'"):
        load_texture_library(root)
    (root / "manifest.yaml").write_text("textures: [unclosed\n")
    with pytest.raises(TextureLibraryError, match="not valid YAML"):
        load_texture_library(root)


# --- user folders ----------------------------------------------------------------------------


def test_manifest_folder_entry_takes_sorted_images(tmp_path: Path) -> None:
    folder = tmp_path / "lib" / "mine"
    write_png(folder / "b.png", pixels(2))
    write_png(folder / "a.jpg", pixels(1))
    (folder / "README.txt").write_text("ignored")
    root = make_library(
        tmp_path / "lib", {"mine": {"folder": "mine", "source": "my photos", "license": "CC-BY"}}
    )
    styles = load_texture_library(root).styles(["mine"])
    assert [Path(s.path).name for s in styles] == ["a.jpg", "b.png"]
    assert [s.style_id for s in styles] == ["mine/0", "mine/1"]
    assert {s.license for s in styles} == {"CC-BY"}


def test_add_texture_folder(small_library: Path, tmp_path: Path) -> None:
    library = load_texture_library(small_library)
    folder = tmp_path / "dropped"
    write_png(folder / "02.png", pixels(5))
    write_png(folder / "01.png", pixels(4, (20, 24)))  # grayscale
    write_png(folder / "03.png", pixels(6, (12, 10, 4)))  # RGBA
    texture = library.add_texture_folder("dropped", folder, "CC-BY-4.0", "my camera")
    assert [p.name for p in texture.files] == ["01.png", "02.png", "03.png"]
    assert library.names() == ["dots", "dropped"]
    styles = library.styles(["dropped"])
    assert [s.style_id for s in styles] == ["dropped/0", "dropped/1", "dropped/2"]
    assert all(s.license == "CC-BY-4.0" and s.source == "my camera" for s in styles)
    shapes = [library.load_style(s).shape for s in styles]
    assert shapes == [(20, 24, 3), (16, 16, 3), (12, 10, 3)]
    gray = library.load_style(styles[0])
    assert np.array_equal(gray[:, :, 0], pixels(4, (20, 24)))
    assert np.all(gray[..., 0] == gray[..., 2])
    assert np.array_equal(library.load_style(styles[1]), pixels(5))

    with pytest.raises(TextureLibraryError, match="missing or empty 'license'"):
        library.add_texture_folder("again", folder, "", "my camera")
    with pytest.raises(TextureLibraryError, match="does not exist"):
        library.add_texture_folder("ghost", tmp_path / "ghost", "CC0-1.0", "x")
    with pytest.raises(TextureLibraryError, match="defined twice"):
        library.add_texture_folder("dropped", folder, "CC0-1.0", "x")


# --- styles and loading ----------------------------------------------------------------------


def test_styles_selection_and_unknown_names(small_library: Path, tmp_path: Path) -> None:
    library = load_texture_library(small_library)
    write_png(tmp_path / "x" / "0.png", pixels(9))
    library.add_texture_folder("aaa", tmp_path / "x", "CC0-1.0", "x")
    assert [s.texture for s in library.styles()] == ["aaa", "dots", "dots"]  # sorted by name
    assert [s.style_id for s in library.styles(["dots", "dots"])] == ["dots/0", "dots/1"]
    with pytest.raises(KeyError, match=r"unknown texture 'lava'; available: aaa, dots"):
        library.styles(["dots", "lava"])


def test_style_records_round_trip_and_pin_the_file(small_library: Path) -> None:
    style = load_texture_library(small_library).styles(["dots"])[0]
    assert StyleImage.from_row(style.to_row()) == style
    assert np.array_equal(load_style(style), pixels(0))
    write_png(Path(style.path), pixels(42))
    with pytest.raises(ValueError, match=r"style dots/0: .* changed"):
        load_style(style)
    Path(style.path).unlink()
    with pytest.raises(FileNotFoundError, match="style dots/0"):
        load_style(style)
