"""The up-to-date stamp of a finished build: re-running an unchanged build does nothing at all.

Every stage already skips its finished shards, but checking them means starting the orchestrator
and reading every source image. A build that finished writes `BUILD/.complete.json` with a
signature of everything its outputs depend on:

* the resolved config and the stages' code versions;
* the models: names and weight-file digests (the fingerprints of `pipeline.stages.Backends`);
* the source: the built-in sample names, or every file of a folder with its size and mtime;
* the style images: path, size and mtime of each.

`is_up_to_date` recomputes the signature (stat calls, no decoding, no model) and checks that
every file the manifests name is still there. The stamp is removed when a build starts, so a
build that stopped half-way never looks finished. Sources whose contents cannot be signed
cheaply (Hugging Face datasets) have no signature: those builds always run the stages, which
skip their finished work as usual.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from pipeline.config import BuildConfig, SourceConfig
from pipeline.hashing import stable_key
from pipeline.records import StyleImage
from pipeline.store.atomic import atomic_write_text
from pipeline.store.build_store import BuildStore

STAMP_FILE = ".complete.json"
# files a finished build has besides those its manifests name
BUILD_FILES = ("build.yaml", "quarantine.jsonl", "concept_stats.json", "manifest.parquet")
PATH_KINDS = ("counterfactuals", "images", "masks", "stylized")  # manifests that name files


def _file_stat(path: Path) -> list[int]:
    stat = path.stat()
    return [stat.st_size, stat.st_mtime_ns]


def _folder_files(root: Path) -> Iterator[tuple[str, list[int]]]:
    for directory, subdirs, files in os.walk(root, followlinks=False):
        subdirs.sort()
        for name in sorted(files):
            path = Path(directory) / name
            try:
                yield str(path.relative_to(root)), _file_stat(path)
            except OSError:
                yield str(path.relative_to(root)), [-1, -1]  # unreadable: part of the state too


def source_signature(source: SourceConfig) -> str | None:
    """What the source holds, from names and file stats; None when it cannot be told cheaply."""
    if source.kind == "samples":
        import skimage

        return stable_key("samples", source.model_dump(mode="json"), skimage.__version__)
    if source.kind == "folder" and source.path:
        root = Path(source.path)
        return stable_key("folder", source.model_dump(mode="json"), list(_folder_files(root)))
    return None


def build_signature(
    config: BuildConfig,
    styles: Sequence[StyleImage],
    model_fingerprints: Sequence[str],
    code_versions: Sequence[str],
) -> str | None:
    """The signature of everything a build's outputs depend on; None when there is none."""
    source = source_signature(config.source)
    if source is None:
        return None
    style_files = [
        (s.style_id, s.sha256, s.split, s.path, _file_stat(Path(s.path))) for s in styles
    ]
    return stable_key(
        config.model_dump(mode="json"),
        list(code_versions),
        list(model_fingerprints),
        source,
        style_files,
    )


def stamp_path(build_dir: str | Path) -> Path:
    return Path(build_dir) / STAMP_FILE


def clear_stamp(build_dir: str | Path) -> None:
    """Called when a build starts: until it finishes, it is not up to date."""
    stamp_path(build_dir).unlink(missing_ok=True)


def write_stamp(build_dir: str | Path, signature: str | None) -> None:
    if signature is not None:
        text = json.dumps({"signature": signature}, sort_keys=True) + "\n"
        atomic_write_text(stamp_path(build_dir), text)


def missing_outputs(build_dir: str | Path) -> list[str]:
    """Files a finished build must have (its manifests' paths included) that are not there."""
    root = Path(build_dir)
    missing = [name for name in BUILD_FILES if not (root / name).is_file()]
    if missing:
        return missing
    store = BuildStore(root)
    for kind in PATH_KINDS:
        columns = ["path", "area_frac"] if kind == "masks" else ["path"]
        table = store.table(kind, columns)
        paths = table.column("path").to_pylist()
        if kind == "masks":  # an empty mask is recorded but has no file
            areas = table.column("area_frac").to_pylist()
            paths = [path for path, area in zip(paths, areas, strict=True) if area > 0]
        missing += [path for path in paths if not (root / path).is_file()]
    return missing


def is_up_to_date(build_dir: str | Path, signature: str | None) -> bool:
    """Whether the build finished with this signature and still has all its files."""
    path = stamp_path(build_dir)
    if signature is None or not path.is_file():
        return False
    try:
        stamped = json.loads(path.read_text(encoding="utf-8")).get("signature")
    except (OSError, ValueError, AttributeError):
        return False
    if stamped != signature:
        return False
    try:
        return not missing_outputs(build_dir)
    except (OSError, ValueError, KeyError):  # an unreadable manifest: let the build repair it
        return False
