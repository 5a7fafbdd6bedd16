"""Import CC0 photographs of real surfaces into the texture library (`tools/make_textures.py`).

Why a separate step: the photos come from a folder outside the repository (default
`../shared/textures-cc0` next to it) with a `SOURCES.tsv` that gives, per file, the repository it
was taken from, the path there, the licence as stated and where it is stated. Each photo is
resized to PHOTO_SIDE px (area filter), saved as JPEG, and gets its own manifest entry with that
provenance. Without the folder, the photos already in the library are kept as they are listed.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import cv2
import numpy as np

PHOTO_SIDE = 320  # the stylizer resamples styles to about half the image side: no need for more
JPEG_QUALITY = 85
DEFAULT_PHOTOS = Path(__file__).resolve().parents[2] / "shared" / "textures-cc0"
#: folder names in the photo collection that differ from the texture's name
RENAME = {"rust_metal": "rust"}
CC0 = "CC0-1.0"


def encode_jpeg(rgb: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
    """uint8 RGB → baseline JPEG bytes (optimised Huffman tables, no metadata)."""
    params = [cv2.IMWRITE_JPEG_QUALITY, quality, cv2.IMWRITE_JPEG_OPTIMIZE, 1]
    ok, encoded = cv2.imencode(".jpg", np.ascontiguousarray(rgb[:, :, ::-1]), params)
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return encoded.tobytes()


def fit_side(rgb: np.ndarray, side: int) -> np.ndarray:
    """Shrink (area filter) so the longer side is at most `side`; smaller ones stay as they are."""
    height, width = rgb.shape[:2]
    factor = side / max(height, width)
    if factor >= 1.0:
        return rgb
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)


def photo_source(row: dict[str, str], side: int) -> str:
    """The manifest `source` of one photo: where it was taken from and who states the licence."""
    return (
        f"photo {row['file']} from github.com/{row['repo_or_package']} ({row['path_in_it']}); "
        f"{row['license_as_stated']}; licence stated in {row['license_evidence']}; "
        f"resized to at most {side} px and saved as JPEG (quality {JPEG_QUALITY}) by "
        "python tools/make_textures.py"
    )


def read_sources(folder: Path) -> list[dict[str, str]]:
    """Rows of `SOURCES.tsv`, in file order; every listed file must be in the folder."""
    with (folder / "SOURCES.tsv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    for row in rows:
        if not (folder / row["texture"] / row["file"]).is_file():
            raise FileNotFoundError(f"{folder}: SOURCES.tsv lists a missing file {row['file']}")
    return rows


def import_photos(folder: Path, out: Path, side: int = PHOTO_SIDE) -> dict[str, list[Any]]:
    """Write each photo of `folder` to `out/<texture>/<stem>.jpg`; {texture: [(style entry,
    RGB pixels)]}, textures and photos sorted by name so the indices do not depend on the
    order of SOURCES.tsv."""
    imported: dict[str, list[Any]] = {}
    for row in sorted(read_sources(folder), key=lambda r: (r["texture"], r["file"].lower())):
        texture = RENAME.get(row["texture"], row["texture"])
        bgr = cv2.imread(str(folder / row["texture"] / row["file"]), cv2.IMREAD_COLOR)
        if bgr is None:
            raise ValueError(f"cannot decode {folder / row['texture'] / row['file']}")
        rgb = fit_side(bgr[:, :, ::-1], side)
        relative = f"{texture}/{Path(row['file']).stem.split('.')[0]}.jpg"
        path = out / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(encode_jpeg(rgb))
        entry = {"file": relative, "kind": "photo", "source": photo_source(row, side)}
        entry["license"] = CC0
        imported.setdefault(texture, []).append(entry)
    return imported


def listed_photos(manifest: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """The photo entries (kind: photo) of an existing manifest, by texture, without splits."""
    kept: dict[str, list[dict[str, Any]]] = {}
    for name, entry in (manifest.get("textures") or {}).items():
        for style in entry.get("styles", []):
            if style.get("kind") == "photo":
                kept.setdefault(name, []).append({k: v for k, v in style.items() if k != "split"})
    return kept
