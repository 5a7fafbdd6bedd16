"""Label-map PNG folders: one PNG per image with a class id per pixel, and an id → name map.

The layout of CamVid (SegNet), ADE20K, Cityscapes and Pascal VOC: a folder of label PNGs, each
named like its image (`<stem>.png`, optionally with a suffix such as Cityscapes'
`_gtFine_labelIds`), whose pixels are class ids: 8-bit or 16-bit grey, or palette PNGs (VOC:
the palette index is the class). RGB PNGs colour-coded with a class-colour table (the original
CamVid, Cityscapes' `_color.png`) are read through `label_colors` instead.

Names go through the vocabulary (CamVid `Road` → `road`, ADE20K `person;individual;...` → the
first synonym the vocabulary knows). Ids named `void`, `unlabelled`, `unlabeled` or `ignore`,
ids in `label_ignore` (255 by default) and ids a preset marks void give no concept; a pixel
whose id the map does not name is an error (a wrong map or a broken file).
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from PIL import Image

from pipeline.hashing import stable_key
from pipeline.segment.annotation_formats import (
    AnnotatedImage,
    AnnotationError,
    ImageReader,
    LastDecoded,
    MaskSource,
    find_images,
)
from pipeline.segment.vocabulary import canonical, load_vocabulary

VOID_NAMES = frozenset({"void", "unlabelled", "unlabeled", "ignore", "ignored"})
_CAMVID = ["Sky", "Building", "Pole", "Road", "Pavement", "Tree", "SignSymbol", "Fence", "Car"]
_CAMVID += ["Pedestrian", "Bicyclist"]
_VOC = ["background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat"]
_VOC += ["chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant"]
_VOC += ["sheep", "sofa", "train", "tvmonitor"]
_CITYSCAPES = ["road", "sidewalk", "parking", "rail track", "building", "wall", "fence"]
_CITYSCAPES += ["guard rail", "bridge", "tunnel", "pole", "polegroup", "traffic light"]
_CITYSCAPES += ["traffic sign", "vegetation", "terrain", "sky", "person", "rider", "car", "truck"]
_CITYSCAPES += ["bus", "caravan", "trailer", "train", "motorcycle", "bicycle"]
# Published id → name tables, so that a config can say `label_names: camvid`. None: void.
PRESETS: dict[str, dict[int, str | None]] = {
    # SegNet's CamVid: 11 classes and Unlabelled
    "camvid": {**dict(enumerate(_CAMVID)), 11: None},
    # Pascal VOC SegmentationClass palette indices; 255 (the object borders) is void
    "voc": {**dict(enumerate(_VOC)), 255: None},
    # Cityscapes `labelIds`: 0-6 are its category `void` (unlabeled, ego vehicle, ...)
    "cityscapes": {**dict.fromkeys(range(7)), **dict(enumerate(_CITYSCAPES, start=7))},
}


def _fail(path: Path | str, problem: str) -> AnnotationError:
    return AnnotationError(f"label map {path}: {problem}")


def concept_of(name: str | None) -> str | None:
    """The concept a class name gives, None for void. `a;b;c` (ADE20K) lists synonyms: the
    first one the vocabulary knows wins, else the first."""
    if name is None:
        return None
    spellings = [s for s in (part.strip() for part in str(name).split(";")) if s]
    if not spellings or canonical(spellings[0], strict=False) in VOID_NAMES:
        return None
    known = load_vocabulary().concepts
    concepts = [canonical(s, strict=False) for s in spellings]
    return next((c for c in concepts if c in known), concepts[0])


def _read_table(path: Path) -> tuple[Any, bool]:
    """A name or colour table file: (its content, whether it is lines or rows of text).

    JSON and YAML give their document; CSV its rows as dicts; any other file its lines.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise AnnotationError(f"cannot read label table {path}: {error}") from None
    try:
        if path.suffix.lower() == ".json":
            return json.loads(text), False
        if path.suffix.lower() in (".yaml", ".yml"):
            return yaml.safe_load(text), False
    except (json.JSONDecodeError, yaml.YAMLError) as error:
        raise AnnotationError(f"cannot parse label table {path}: {error}") from None
    if path.suffix.lower() == ".csv":
        return list(csv.DictReader(text.splitlines())), True
    return [line.strip() for line in text.splitlines() if line.strip() and line[0] != "#"], True


def _names_from_text(path: Path, rows: list[Any]) -> dict[int, str | None]:
    """CSV rows with an id and a name column (ADE20K's `objectInfo150.csv`: Idx, Name), text
    lines `id name` / `id: name`, or text lines of names alone (line number = id)."""
    if rows and isinstance(rows[0], dict):
        columns = {key.strip().lower(): key for key in rows[0] if key}
        ident = next((columns[c] for c in ("idx", "id", "label", "index") if c in columns), None)
        name = columns.get("name")
        if ident is None or name is None:
            raise AnnotationError(f"label table {path}: needs an id (Idx) and a Name column")
        try:
            return {int(row[ident]): row[name] for row in rows}
        except (TypeError, ValueError):
            raise AnnotationError(f"label table {path}: an id is not an integer") from None
    pairs = [re.match(r"^(\d+)\s*[:,=\s]\s*(.+)$", line) for line in rows]
    if rows and all(pairs):
        return {int(m.group(1)): m.group(2).strip() for m in pairs if m}
    return dict(enumerate(rows))


def load_label_names(spec: Mapping[Any, Any] | Sequence[Any] | str) -> dict[int, str | None]:
    """The id → class name map from a dict, a list (index = id), a preset (`camvid`, `voc`,
    `cityscapes`) or a file (JSON/YAML dict or list, CSV with Idx and Name, text lines).
    A null name is void."""
    if isinstance(spec, str) and spec.lower() in PRESETS and not Path(spec).is_file():
        return dict(PRESETS[spec.lower()])
    source = "label_names"
    if isinstance(spec, str | Path):
        if not Path(spec).is_file():
            raise AnnotationError(
                f"label_names {str(spec)!r} is neither a file nor a preset ({', '.join(PRESETS)})"
            )
        source = str(spec)
        spec, is_text = _read_table(Path(spec))
        if is_text:
            spec = _names_from_text(Path(source), spec)
    if isinstance(spec, Mapping):
        items = list(spec.items())
    elif isinstance(spec, list):
        items = list(enumerate(spec))
    else:
        raise AnnotationError(f"{source}: expected an {{id: name}} map or a list of names")
    try:
        return {int(k): (None if v is None else str(v)) for k, v in items}
    except (TypeError, ValueError):
        raise AnnotationError(f"{source}: class ids must be integers") from None


def load_label_colors(spec: Mapping[str, Any] | str) -> dict[tuple[int, int, int], str]:
    """The colour → class name table of RGB label PNGs: `{name: [r, g, b]}` (a dict, or a JSON
    or YAML file of one), or a text file of `R G B Name` lines (CamVid's `label_colors.txt`)."""
    source = "label_colors"
    if isinstance(spec, str | Path):
        source = str(spec)
        spec, _ = _read_table(Path(spec))
    table: dict[tuple[int, int, int], str] = {}
    if isinstance(spec, list):  # text lines
        for line in spec:
            parts = str(line).split()
            if len(parts) < 4 or not all(p.isdigit() for p in parts[:3]):
                raise AnnotationError(f"{source}: expected 'R G B Name' lines, got {line!r}")
            table[(int(parts[0]), int(parts[1]), int(parts[2]))] = " ".join(parts[3:])
        return table
    if not isinstance(spec, Mapping):
        raise AnnotationError(f"{source}: expected a {{name: [r, g, b]}} map")
    for name, colour in spec.items():
        values = list(colour) if isinstance(colour, list | tuple) else []
        if len(values) != 3 or not all(isinstance(v, int) and 0 <= v < 256 for v in values):
            raise AnnotationError(f"{source}: colour of {name!r} must be [r, g, b], got {colour!r}")
        table[(values[0], values[1], values[2])] = str(name)
    return table


def read_label_map(path: Path, colors: Mapping[int, int] | None = None) -> np.ndarray:
    """A label PNG as an H x W int64 array of class ids.

    Grey (8/16-bit) and palette PNGs give their values; `colors` (packed `r<<16|g<<8|b` →
    class id) decodes RGB PNGs; an RGB PNG without it must be grey (R = G = B).
    """
    try:
        with Image.open(path) as image:
            mode = image.mode
            if colors is not None or mode in ("RGB", "RGBA"):
                rgb = np.asarray(image.convert("RGB"), dtype=np.int64)
            elif mode in ("1", "L", "P", "I", "I;16", "I;16B", "I;16L"):
                return np.asarray(image).astype(np.int64)
            else:
                raise _fail(path, f"mode {mode} is not a label map (grey, palette or RGB)")
    except OSError as error:
        raise _fail(path, f"cannot read ({error})") from None
    if colors is None:
        if not ((rgb[..., 0] == rgb[..., 1]) & (rgb[..., 1] == rgb[..., 2])).all():
            raise _fail(path, "an RGB label map with colours needs label_colors (colour → class)")
        return rgb[..., 0]
    packed = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    values, inverse = np.unique(packed, return_inverse=True)
    unknown = [
        tuple(int(v) >> shift & 255 for shift in (16, 8, 0)) for v in values if int(v) not in colors
    ]
    if unknown:
        raise _fail(path, f"colours {unknown[:5]} are not in label_colors")
    return np.array([colors[int(v)] for v in values], dtype=np.int64)[inverse].reshape(packed.shape)


class _LabelMaps:
    """Decodes each label PNG once and refuses ids that the name map does not have."""

    def __init__(self, names: dict[int, str | None], ignore: set[int], colors: dict[int, int]):
        self.names, self.ignore, self.colors = names, ignore, colors or None
        self.read = LastDecoded(self._decode)

    def _decode(self, path: Path) -> np.ndarray:
        labels = read_label_map(path, self.colors)
        unknown = [
            int(v)
            for v in np.unique(labels)
            if int(v) not in self.names and int(v) not in self.ignore
        ]
        if unknown:
            raise _fail(
                path,
                f"values {unknown[:8]} are not in label_names (it has {len(self.names)} ids, "
                f"{min(self.names)}..{max(self.names)}); add them or list them in label_ignore",
            )
        return labels

    def loader(self, path: Path, label: int) -> Callable[[], np.ndarray]:
        return lambda: self.read(path) == label


def _label_files(dirs: Sequence[Path], suffix: str) -> dict[str, Path]:
    """Label PNGs under `dirs` by image stem (the file stem without `suffix`)."""
    files: dict[str, Path] = {}
    for folder in dirs:
        if not folder.is_dir():
            raise AnnotationError(f"label map folder {folder} does not exist")
        for path in sorted(folder.rglob("*.png")):
            if not path.stem.endswith(suffix):
                continue
            key = path.stem[: len(path.stem) - len(suffix)]
            if key in files:
                raise _fail(path, f"{files[key]} is the label map of the same image {key!r}")
            files[key] = path
    return files


def label_map_annotations(
    dirs: Sequence[Path],
    image_root: Path,
    reader: ImageReader,
    names: Any = None,
    colors: Any = None,
    ignore: Sequence[int] = (255,),
    label_suffix: str = "",
    image_suffix: str = "",
) -> tuple[list[AnnotatedImage], list[tuple[str, str]], Any]:
    """The images under `image_root` that have a label PNG in `dirs` (images inside `dirs`
    excluded), the label files without an image (file, why), and a fingerprint."""
    if (names is None) == (colors is None):
        raise ValueError("annotations: label_maps needs label_names or label_colors (one)")
    colour_index: dict[int, int] = {}
    if colors is not None:
        table = load_label_colors(colors)
        id_names: dict[int, str | None] = dict(enumerate(table.values()))
        colour_index = {r << 16 | g << 8 | b: i for i, (r, g, b) in enumerate(table)}
    else:
        id_names = load_label_names(names)
    if not id_names:
        raise AnnotationError("label_names is empty")
    void = set(ignore)
    classes = {
        label: concept
        for label, concept in ((k, concept_of(v)) for k, v in sorted(id_names.items()))
        if concept is not None and label not in void
    }
    maps = _LabelMaps(id_names, void, colour_index)
    labels = _label_files(dirs, label_suffix)
    folders = [d.resolve() for d in dirs]
    by_stem: dict[str, list[Path]] = {}
    for path in find_images(image_root).values():
        if any(path.resolve().is_relative_to(d) for d in folders):
            continue
        stem = path.stem
        if image_suffix and stem.endswith(image_suffix):
            stem = stem[: len(stem) - len(image_suffix)]
        by_stem.setdefault(stem, []).append(path)
    images: list[AnnotatedImage] = []
    skipped: list[tuple[str, str]] = []
    listing = []
    for key, label_path in sorted(labels.items()):
        found = by_stem.get(key, [])
        if not found:
            skipped.append((str(label_path), f"no image named {key}.* under {image_root}"))
            continue
        if len(found) > 1:
            raise _fail(label_path, f"several images fit it: {', '.join(map(str, found[:3]))}")
        image = AnnotatedImage(str(found[0]), reader(found[0]), None)
        image.sources.extend(
            MaskSource(concept, 1.0, maps.loader(label_path, label), f"{label_path} (id {label})")
            for label, concept in classes.items()
        )
        images.append(image)
        stat = label_path.stat()
        listing.append((key, stat.st_size, stat.st_mtime_ns))
    fingerprint = ("labels", stable_key(listing, sorted(classes.items()), sorted(ignore)))
    return images, skipped, fingerprint
