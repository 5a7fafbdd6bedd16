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
    default_splits,
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
    for style in styles:
        path = Path(style.path)
        assert path.is_absolute() and path.suffix in {".png", ".jpg"}
        assert style.style_id == f"{style.texture}/{style.index}"
        # every file has its own licence and source, not only its texture
        assert style.license == "CC0-1.0" and len(style.source.strip()) > 30
        assert style.sha256 == sha256_file(path)
        assert path.stat().st_size < 500_000
        total += path.stat().st_size
        image = load_style(style)
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
        assert min(image.shape[:2]) >= 256 and max(image.shape[:2]) <= 512
    assert total < 9_500_000
    assert len({s.path for s in styles}) == len(styles)  # no file is two styles
    assert "data.brick()" in library.texture("brick").styles[0].source


def test_shipped_library_has_real_and_procedural_styles() -> None:
    library = load_texture_library()
    for name in ("snow", "wood", "gravel", "grass"):
        kinds = [style.kind for style in library.texture(name).styles]
        assert kinds.count("procedural") >= 8 and kinds.count("photo") >= 2, name
    for name, photos in (("stone", 9), ("sand", 3), ("rust", 4)):
        assert [s.kind for s in library.texture(name).styles] == ["photo"] * photos
    photos = [s for n in library.names() for s in library.texture(n).styles if s.kind == "photo"]
    assert len(photos) == 29  # every photo of the CC0 collection
    for photo in photos:
        assert (
            "github.com/" in photo.source and "CC0" in photo.source and photo.path.suffix == ".jpg"
        )


def test_existing_style_ids_keep_their_files() -> None:
    """Builds made before the library grew refer to these ids; they must mean the same files."""
    library = load_texture_library()
    for name in ("snow", "wood", "brick", "grass", "gravel", "stripes", "fur", "leaves", "paint"):
        first = library.styles([name])[:3]
        assert [Path(s.path).name for s in first] == ["0.png", "1.png", "2.png"]
        assert [s.split for s in first] == ["train", "heldout", "train"]


def test_shipped_splits_are_declared_disjoint_and_deterministic() -> None:
    manifest = yaml.safe_load((default_root() / "manifest.yaml").read_text())
    library = load_texture_library()
    for name in library.names():
        declared = manifest["textures"][name]["styles"]
        assert all(entry["split"] in ("train", "heldout") for entry in declared), name
        texture = library.texture(name)
        train, heldout = texture.split("train"), texture.split("heldout")
        assert not set(train) & set(heldout)
        assert sorted(train + heldout) == list(range(len(texture.styles)))
        # the declared split is the default rule: a third of each kind held out, from its 2nd
        assert [s.split for s in texture.styles] == default_splits([s.kind for s in texture.styles])
        for kind in ("photo", "procedural"):
            sides = {s.split for s in texture.styles if s.kind == kind}
            if sum(s.kind == kind for s in texture.styles) >= 2:
                assert sides == {"train", "heldout"}, (name, kind)
        assert len(heldout) == sum(n // 3 + (n % 3 >= 2) for n in _kind_counts(texture))
    again = load_texture_library()
    assert [s.to_row() for s in again.styles()] == [s.to_row() for s in library.styles()]


def _kind_counts(texture) -> list[int]:
    kinds = [s.kind for s in texture.styles]
    return [kinds.count(kind) for kind in dict.fromkeys(kinds)]


def test_default_splits_hold_out_a_third_of_each_kind() -> None:
    kinds = ["procedural"] * 8 + ["photo"] * 2
    splits = default_splits(kinds)
    held = [i for i, split in enumerate(splits) if split == "heldout"]
    assert held == [1, 4, 7, 9]
    assert default_splits(["procedural"]) == ["train"]
    assert default_splits([*kinds, "photo"]) == [*splits, "train"]  # appending moves nothing
    assert default_splits(kinds) == splits


def test_styles_of_one_split_keep_their_ids() -> None:
    library = load_texture_library()
    heldout = library.styles(["snow"], split="heldout")
    train = library.styles(["snow"], split="train")
    assert {s.split for s in heldout} == {"heldout"} and {s.split for s in train} == {"train"}
    assert sorted(s.index for s in heldout + train) == list(range(len(library.styles(["snow"]))))
    assert "snow/1" in {s.style_id for s in heldout} and "snow/0" in {s.style_id for s in train}
    with pytest.raises(ValueError, match="unknown split 'test'"):
        library.styles(["snow"], split="test")


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


# --- per-file entries ------------------------------------------------------------------------


def test_style_entries_carry_their_own_source_licence_and_split(tmp_path: Path) -> None:
    for index in range(3):
        write_png(tmp_path / "lib" / "m" / f"{index}.png", pixels(index))
    styles = [
        {"file": "m/0.png", "kind": "photo", "source": "my camera", "license": "CC-BY-4.0"},
        {"file": "m/1.png", "kind": "procedural", "split": "heldout"},
        {"file": "m/2.png", "kind": "photo", "split": "heldout", "license": "CC0-1.0"},
    ]
    entry = {"styles": styles, "source": "drawn by me", "license": "CC0-1.0"}
    library = load_texture_library(make_library(tmp_path / "lib", {"m": entry}))
    records = library.styles(["m"])
    assert [(s.license, s.source, s.split) for s in records] == [
        ("CC-BY-4.0", "my camera", "train"),
        ("CC0-1.0", "drawn by me", "heldout"),  # the texture's licence and source
        ("CC0-1.0", "drawn by me", "heldout"),
    ]
    assert library.texture("m").license == "CC-BY-4.0, CC0-1.0"


def test_a_style_file_without_licence_or_source_is_named(tmp_path: Path) -> None:
    write_png(tmp_path / "lib" / "m" / "0.png", pixels(0))
    write_png(tmp_path / "lib" / "m" / "1.png", pixels(1))
    styles = [
        {"file": "m/0.png", "source": "mine", "license": "CC0-1.0"},
        {"file": "m/1.png", "source": "  "},
    ]
    root = make_library(tmp_path / "lib", {"m": {"styles": styles}})
    with pytest.raises(TextureLibraryError) as error:
        load_texture_library(root)
    message = str(error.value)
    assert "texture 'm': style 'm/1.png': missing or empty 'license'" in message
    assert "texture 'm': style 'm/1.png': missing or empty 'source'" in message
    assert "m/0.png" not in message


@pytest.mark.parametrize(
    ("styles", "problem"),
    [
        ([{"file": "m/0.png", "split": "test"}], "split 'test' is not one of"),
        ([{"file": "m/0.png", "kind": "drawing"}], "kind 'drawing' is not one of"),
        ([{"file": "m/0.png", "split": "heldout"}], "no style has split 'train'"),
        ([{"file": "m/0.png", "licence": "x"}], "unknown keys ['licence']"),
        (["m/0.png"], "needs a 'file'"),
    ],
)
def test_bad_style_entries_are_explained(tmp_path: Path, styles: list, problem: str) -> None:
    write_png(tmp_path / "lib" / "m" / "0.png", pixels(0))
    entry = {"styles": styles, "source": "s", "license": "l"}
    root = make_library(tmp_path / "lib", {"m": entry})
    with pytest.raises(TextureLibraryError, match="texture 'm'") as error:
        load_texture_library(root)
    assert problem in str(error.value)


def test_style_records_from_older_builds_have_no_split(small_library: Path) -> None:
    style = load_texture_library(small_library).styles(["dots"])[1]
    assert style.split == "heldout"  # the default rule: the second style is held out
    row = style.to_row()
    del row["split"]
    assert StyleImage.from_row(row).split == ""
