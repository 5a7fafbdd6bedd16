"""The texture library: named sets of style images, each image with its own licence and source.

Why a manifest: every counterfactual records which style image it was rendered in, and a dataset
can only be shared if each of those images has a known licence. So loading refuses any style
image without a licence or source, or whose file is missing, and names the file and the problem.

Why declared splits: an edit is judged on styles it never saw. Each texture therefore names its
training styles and its held-out styles; a style without a declared split gets a deterministic
default (`default_splits`), so the split never depends on who built what when.

Layout (default root: the repo's `textures/`, or `$CONCEPTSWAP_TEXTURES`, or an argument):

    textures:
      snow:
        description: "snow surfaces"              # optional
        styles:                                   # one entry per style image
        - file: snow/0.png                        # relative to the root, or absolute
          kind: procedural                        # procedural | photo (optional)
          split: train                            # train | heldout (optional: default rule)
          source: "procedural: ..."               # optional when the texture gives one
          license: CC0-1.0                        # optional when the texture gives one
      mine:
        folder: my_photos/                        # or `files: [...]`: every image, sorted
        source: "my own photos"                   # then for every file
        license: CC-BY-4.0

A user can also add a folder at run time with `TextureLibrary.add_texture_folder`.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import yaml

from pipeline.hashing import sha256_bytes, sha256_file
from pipeline.records import StyleImage
from pipeline.stylize.colour import to_rgb_uint8

ENV_VAR = "CONCEPTSWAP_TEXTURES"
MANIFEST = "manifest.yaml"
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"})
ALLOWED_KEYS = frozenset({"files", "folder", "styles", "source", "license", "description"})
STYLE_KEYS = frozenset({"file", "source", "license", "split", "kind", "description"})
SPLITS = ("train", "heldout")
KINDS = ("photo", "procedural")
#: every HELDOUT_EVERY-th style of a kind, from its second, is held out by default (a third)
HELDOUT_EVERY = 3
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class TextureLibraryError(ValueError):
    """The manifest or a texture folder is invalid; the message lists every problem found."""


def default_root() -> Path:
    """`$CONCEPTSWAP_TEXTURES` if set, else the `textures/` folder at the repository root."""
    override = os.environ.get(ENV_VAR)
    if override:
        return Path(override).expanduser().resolve()
    return Path(__file__).resolve().parents[2] / "textures"


def default_splits(kinds: Sequence[str]) -> list[str]:
    """The default split of a texture's styles, given each style's kind in index order.

    Within each kind, counted in index order, the 2nd, 5th, 8th... style is held out (a third,
    rounded down) and the others train. So a texture with two or more styles of a kind has that
    kind on both sides, the first style (what `styles_per_texture: 1` takes) always trains, and
    the first two styles are one train and one held-out style. Adding styles at the end never
    moves an earlier style to the other side.
    """
    seen: Counter[str] = Counter()
    splits = []
    for kind in kinds:
        splits.append("heldout" if seen[kind] % HELDOUT_EVERY == 1 else "train")
        seen[kind] += 1
    return splits


@dataclass(frozen=True)
class StyleFile:
    """One style image of a texture: its file (absolute), licence, source, split and kind."""

    path: Path
    license: str
    source: str
    split: str  # "train" | "heldout"
    kind: str = ""  # "photo" | "procedural" | "" (not declared)
    description: str = ""


@dataclass(frozen=True)
class Texture:
    """One validated texture: its style images in index order."""

    name: str
    styles: tuple[StyleFile, ...]
    description: str = ""

    @property
    def files(self) -> tuple[Path, ...]:
        return tuple(style.path for style in self.styles)

    @property
    def license(self) -> str:
        """The licences of its style images, each once (one for most textures)."""
        return ", ".join(dict.fromkeys(style.license for style in self.styles))

    @property
    def source(self) -> str:
        """One line about where the images come from (per image: `styles[i].source`)."""
        sources = list(dict.fromkeys(style.source for style in self.styles))
        if len(sources) == 1:
            return sources[0]
        kinds = Counter(style.kind or "unspecified" for style in self.styles)
        counts = ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items()))
        lead = f"{self.description}; " if self.description else ""
        return f"{lead}{counts}; {len(sources)} sources, one per style image in the manifest"

    def split(self, split: str) -> list[int]:
        """Indices of the styles in `split` ("train" or "heldout")."""
        return [index for index, style in enumerate(self.styles) if style.split == split]


def _is_image(path: Path) -> bool:
    return (
        path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")
    )


def folder_images(folder: Path) -> list[Path]:
    """Image files directly in `folder`, sorted by name (so indices are stable)."""
    return sorted((p for p in folder.iterdir() if _is_image(p)), key=lambda p: p.name)


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def _resolve(root: Path, value: str) -> Path:
    path = Path(value).expanduser()
    return (path if path.is_absolute() else root / path).resolve()


def _image_file(root: Path, item: Any, where: str, problems: list[str]) -> Path | None:
    """An existing image file named by a manifest entry, or None (with the problem appended)."""
    if not isinstance(item, str) or not item.strip():
        problems.append(f"{where}: file entry {item!r} is not a path")
        return None
    path = _resolve(root, item)
    if not path.is_file():
        problems.append(f"{where}: file {item!r} does not exist ({path})")
    elif path.suffix.lower() not in IMAGE_SUFFIXES:
        problems.append(f"{where}: file {item!r} is not an image file type")
    else:
        return path
    return None


def _listed_files(
    entry: Mapping[str, Any], root: Path, where: str, problems: list[str]
) -> list[tuple[str, Path, Mapping[str, Any]]]:
    """(name as written, path, per-style fields) of each style image of a manifest entry."""
    modes = [key for key in ("files", "folder", "styles") if key in entry]
    if len(modes) != 1:
        problems.append(f"{where}: give exactly one of 'files' (a list), 'folder' or 'styles'")
        return []
    mode, value = modes[0], entry[modes[0]]
    if mode == "folder":
        if not isinstance(value, str) or not value.strip():
            problems.append(f"{where}: 'folder' must be a path")
            return []
        folder = _resolve(root, value)
        if not folder.is_dir():
            problems.append(f"{where}: folder {value!r} does not exist ({folder})")
            return []
        found = folder_images(folder)
        if not found:
            problems.append(f"{where}: folder {value!r} holds no image files ({folder})")
        return [(str(Path(value) / path.name), path, {}) for path in found]
    if not isinstance(value, list) or not value:
        problems.append(f"{where}: {mode!r} must be a non-empty list")
        return []
    listed = []
    for item in value:
        fields: Mapping[str, Any] = {}
        if mode == "styles":
            if not isinstance(item, Mapping) or "file" not in item:
                problems.append(f"{where}: style entry {item!r} needs a 'file'")
                continue
            fields, item = item, item["file"]
            unknown = sorted(set(map(str, fields)) - STYLE_KEYS)
            if unknown:
                allowed = sorted(STYLE_KEYS)
                problems.append(f"{where}: style {item!r}: unknown keys {unknown} ({allowed})")
        path = _image_file(root, item, where, problems)
        if path is not None:
            listed.append((str(item), path, fields))
    return listed


def _texture_from_entry(
    name: str, entry: Any, root: Path, where: str, problems: list[str]
) -> Texture | None:
    """Validate one manifest entry, appending problems; returns None if it is unusable."""
    before = len(problems)
    where = f"{where}: texture {name!r}"
    if not isinstance(name, str) or not _NAME.match(name):
        problems.append(f"{where}: invalid name (letters, digits, '_', '-', '.'; no '/')")
    if not isinstance(entry, Mapping):
        problems.append(f"{where}: expected a mapping with styles/files/folder, source, license")
        return None
    unknown = sorted(set(map(str, entry)) - ALLOWED_KEYS)
    if unknown:
        problems.append(f"{where}: unknown keys {unknown}; allowed: {sorted(ALLOWED_KEYS)}")
    listed = _listed_files(entry, root, where, problems)
    defaults = {key: _text(entry.get(key)) for key in ("license", "source")}
    if "styles" not in entry:  # one licence and source for every file: checked once
        for key, value in defaults.items():
            if not value:
                names = ", ".join(written for written, _, _ in listed) or "its files"
                problems.append(
                    f"{where}: missing or empty {key!r} for {names} (a non-empty string is needed)"
                )
    kinds = [_text(fields.get("kind")) for _, _, fields in listed]
    fallback = default_splits(kinds)
    styles = []
    for (written, path, fields), kind, default_split in zip(listed, kinds, fallback, strict=True):
        values = {k: _text(fields[k]) if k in fields else v for k, v in defaults.items()}
        if "styles" in entry:
            for key, value in values.items():
                if not value:
                    problems.append(
                        f"{where}: style {written!r}: missing or empty {key!r} "
                        "(give it on the style or on the texture)"
                    )
        split = _text(fields.get("split")) or default_split
        if split not in SPLITS:
            problems.append(f"{where}: style {written!r}: split {split!r} is not one of {SPLITS}")
        if kind and kind not in KINDS:
            problems.append(f"{where}: style {written!r}: kind {kind!r} is not one of {KINDS}")
        styles.append(
            StyleFile(
                path=path,
                license=values["license"],
                source=values["source"],
                split=split,
                kind=kind,
                description=_text(fields.get("description")),
            )
        )
    if styles and not any(style.split == "train" for style in styles):
        problems.append(f"{where}: no style has split 'train' (at least one must)")
    if len(problems) > before:
        return None
    return Texture(name=name, styles=tuple(styles), description=_text(entry.get("description")))


def _raise(problems: list[str]) -> None:
    if problems:
        raise TextureLibraryError("invalid texture library:\n  " + "\n  ".join(problems))


class TextureLibrary:
    """Validated textures by name, in manifest order, plus any folders added at run time."""

    def __init__(self, root: Path, textures: Iterable[Texture] = ()) -> None:
        self.root = root
        self._textures: dict[str, Texture] = {}
        for texture in textures:
            self._add(texture)

    def _add(self, texture: Texture) -> None:
        if texture.name in self._textures:
            raise TextureLibraryError(f"texture {texture.name!r} is defined twice")
        self._textures[texture.name] = texture

    def names(self) -> list[str]:
        return sorted(self._textures)

    def __contains__(self, name: object) -> bool:
        return name in self._textures

    def texture(self, name: str) -> Texture:
        try:
            return self._textures[name]
        except KeyError:
            raise KeyError(
                f"unknown texture {name!r}; available: {', '.join(self.names()) or '(none)'}"
            ) from None

    def add_texture_folder(
        self, name: str, folder: str | Path, license: str, source: str
    ) -> Texture:
        """Add every image in `folder` (sorted by name) as texture `name`.

        The licence is mandatory so that a user-dropped folder is held to the same rule as the
        bundled textures.
        """
        problems: list[str] = []
        entry = {"folder": str(Path(folder).expanduser()), "license": license, "source": source}
        texture = _texture_from_entry(name, entry, Path.cwd(), "add_texture_folder", problems)
        _raise(problems)
        assert texture is not None
        self._add(texture)
        return texture

    def styles(
        self, texture_names: list[str] | None = None, split: str | None = None
    ) -> list[StyleImage]:
        """Style image records of the named textures (all, sorted by name, when None).

        `split` ("train" or "heldout") keeps only that side; indices and ids stay those of the
        whole texture. sha256 is of the file bytes, so a record pins the exact file it was
        made from.
        """
        if split is not None and split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; available: {', '.join(SPLITS)}")
        names = self.names() if texture_names is None else list(dict.fromkeys(texture_names))
        textures = [self.texture(name) for name in names]  # KeyError before any file is read
        return [
            StyleImage(
                style_id=f"{texture.name}/{index}",
                texture=texture.name,
                index=index,
                sha256=sha256_file(style.path),
                path=str(style.path),
                license=style.license,
                source=style.source,
                split=style.split,
            )
            for texture in textures
            for index, style in enumerate(texture.styles)
            if split is None or style.split == split
        ]

    def load_style(self, style: StyleImage) -> np.ndarray:
        return load_style(style)


def load_style(style: StyleImage) -> np.ndarray:
    """Decode a style image to uint8 RGB, refusing a file that changed since its record was made.

    The check matters because cached stylized images are keyed by the style's sha256.
    """
    path = Path(style.path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise FileNotFoundError(f"style {style.style_id}: cannot read {path}: {error}") from error
    digest = sha256_bytes(data)
    if digest != style.sha256:
        raise ValueError(
            f"style {style.style_id}: {path} changed (sha256 {digest[:12]}, record has "
            f"{style.sha256[:12]}); list the styles again"
        )
    return decode_image(data, str(path))


def decode_image(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Encoded image bytes → uint8 RGB (grayscale and alpha handled by `to_rgb_uint8`)."""
    decoded = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if decoded is None:
        raise ValueError(f"{name}: not a decodable image")
    if decoded.ndim == 3 and decoded.shape[2] == 3:
        decoded = decoded[:, :, ::-1]
    elif decoded.ndim == 3 and decoded.shape[2] == 4:
        decoded = decoded[:, :, [2, 1, 0, 3]]
    return to_rgb_uint8(decoded)


def load_texture_library(root: Path | str | None = None) -> TextureLibrary:
    """Read and validate `<root>/manifest.yaml` (root: argument, `$CONCEPTSWAP_TEXTURES`, repo).

    All problems are collected and raised together as one `TextureLibraryError`, so fixing a
    manifest takes one run, not one run per mistake.
    """
    base = Path(root).expanduser().resolve() if root is not None else default_root()
    manifest = base / MANIFEST
    if not manifest.is_file():
        raise TextureLibraryError(f"texture manifest not found: {manifest}")
    try:
        document = yaml.safe_load(manifest.read_text())
    except yaml.YAMLError as error:
        raise TextureLibraryError(f"{manifest}: not valid YAML: {error}") from error
    entries = document.get("textures") if isinstance(document, Mapping) else None
    if not isinstance(entries, Mapping):
        raise TextureLibraryError(f"{manifest}: expected a top-level 'textures:' mapping")
    problems: list[str] = []
    textures = []
    for name, entry in entries.items():
        texture = _texture_from_entry(str(name), entry, base, str(manifest), problems)
        if texture is not None:
            textures.append(texture)
    _raise(problems)
    return TextureLibrary(base, textures)
