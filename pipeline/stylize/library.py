"""The texture library: named sets of style images, each with a licence and a source.

Why a manifest: every counterfactual records which style image it was rendered in, and a dataset
can only be shared if each of those images has a known licence. So loading refuses any texture
without a licence or source, or whose files are missing, and names the file and the problem.

Layout (default root: the repo's `textures/`, or `$CONCEPTSWAP_TEXTURES`, or an argument):

    textures/manifest.yaml
    textures/snow/0.png ...

    textures:
      snow:
        files: [snow/0.png, snow/1.png]     # relative to the root, or absolute
        source: "procedural: ..."
        license: CC0-1.0
      mine:
        folder: my_photos/                  # every image in it, sorted by file name
        source: "my own photos"
        license: CC-BY-4.0

A user can also add a folder at run time with `TextureLibrary.add_texture_folder`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
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
ALLOWED_KEYS = frozenset({"files", "folder", "source", "license", "description"})
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class TextureLibraryError(ValueError):
    """The manifest or a texture folder is invalid; the message lists every problem found."""


def default_root() -> Path:
    """`$CONCEPTSWAP_TEXTURES` if set, else the `textures/` folder at the repository root."""
    override = os.environ.get(ENV_VAR)
    if override:
        return Path(override).expanduser().resolve()
    return Path(__file__).resolve().parents[2] / "textures"


@dataclass(frozen=True)
class Texture:
    """One validated texture: its style image files (absolute, in index order) and licence."""

    name: str
    files: tuple[Path, ...]
    license: str
    source: str


def _is_image(path: Path) -> bool:
    return (
        path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")
    )


def folder_images(folder: Path) -> list[Path]:
    """Image files directly in `folder`, sorted by name (so indices are stable)."""
    return sorted((p for p in folder.iterdir() if _is_image(p)), key=lambda p: p.name)


def _check_text(value: Any, what: str, where: str, problems: list[str]) -> str:
    if not isinstance(value, str) or not value.strip():
        problems.append(f"{where}: missing or empty {what!r} (a non-empty string is required)")
        return ""
    return value.strip()


def _resolve(root: Path, value: str) -> Path:
    path = Path(value).expanduser()
    return (path if path.is_absolute() else root / path).resolve()


def _texture_from_entry(
    name: str, entry: Any, root: Path, where: str, problems: list[str]
) -> Texture | None:
    """Validate one manifest entry, appending problems; returns None if it is unusable."""
    before = len(problems)
    where = f"{where}: texture {name!r}"
    if not isinstance(name, str) or not _NAME.match(name):
        problems.append(f"{where}: invalid name (letters, digits, '_', '-', '.'; no '/')")
    if not isinstance(entry, Mapping):
        problems.append(f"{where}: expected a mapping with files/folder, source and license")
        return None
    unknown = sorted(set(map(str, entry)) - ALLOWED_KEYS)
    if unknown:
        problems.append(f"{where}: unknown keys {unknown}; allowed: {sorted(ALLOWED_KEYS)}")
    license_ = _check_text(entry.get("license"), "license", where, problems)
    source = _check_text(entry.get("source"), "source", where, problems)

    files: list[Path] = []
    has_files, has_folder = "files" in entry, "folder" in entry
    if has_files == has_folder:
        problems.append(f"{where}: give exactly one of 'files' (a list) or 'folder' (a path)")
    elif has_files:
        listed = entry["files"]
        if not isinstance(listed, list) or not listed:
            problems.append(f"{where}: 'files' must be a non-empty list of paths")
        else:
            for item in listed:
                if not isinstance(item, str) or not item.strip():
                    problems.append(f"{where}: file entry {item!r} is not a path")
                    continue
                path = _resolve(root, item)
                if not path.is_file():
                    problems.append(f"{where}: file {item!r} does not exist ({path})")
                elif path.suffix.lower() not in IMAGE_SUFFIXES:
                    problems.append(f"{where}: file {item!r} is not an image file type")
                else:
                    files.append(path)
    else:
        value = entry["folder"]
        if not isinstance(value, str) or not value.strip():
            problems.append(f"{where}: 'folder' must be a path")
        else:
            folder = _resolve(root, value)
            if not folder.is_dir():
                problems.append(f"{where}: folder {value!r} does not exist ({folder})")
            else:
                files = folder_images(folder)
                if not files:
                    problems.append(f"{where}: folder {value!r} holds no image files ({folder})")
    if len(problems) > before:
        return None
    return Texture(name=name, files=tuple(files), license=license_, source=source)


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

    def styles(self, texture_names: list[str] | None = None) -> list[StyleImage]:
        """Style image records of the named textures (all, sorted by name, when None).

        sha256 is of the file bytes, so a record pins the exact file it was made from.
        """
        names = self.names() if texture_names is None else list(dict.fromkeys(texture_names))
        textures = [self.texture(name) for name in names]  # KeyError before any file is read
        return [
            StyleImage(
                style_id=f"{texture.name}/{index}",
                texture=texture.name,
                index=index,
                sha256=sha256_file(path),
                path=str(path),
                license=texture.license,
                source=texture.source,
            )
            for texture in textures
            for index, path in enumerate(texture.files)
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
