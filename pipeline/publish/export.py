"""`export_build`: write a build as a dataset folder in one of `FORMATS`, replacing an old export.

- `hub`: the Hub's layout, sharded Parquet under `data/<config>/` plus the card (what `publish`
  uploads; `load_dataset(folder_or_repo, config)` reads it);
- `hf`: the layout of `DatasetDict.save_to_disk` (`<config>/data-*.arrow`, `state.json`,
  `dataset_info.json`, `dataset_dict.json`) plus the card, whose configs point at the same Arrow
  files: `datasets.load_from_disk(folder)` and `datasets.load_dataset(folder, config)` both
  read it;
- `parquet`: one plain Parquet file per config (`<config>.parquet`, images as PNG bytes);
- `webdataset`: tar shards `<config>-XXXXXX.tar` (`<key>.mask.png`, `<key>.json`, ...).

Configs: `counterfactuals` (one row per counterfactual), `images` (each source image once; the
counterfactual rows join it by `image_id`, or carry it inline with `inline_images`), `cases`
(when the build has edit cases) and `concept_scores` (when an audit computed them).

The folder is written to a staging folder next to `out_dir` and renamed into place once it is
complete, so a reader (or an upload) sees the old export or the whole new one; a killed export
leaves no `out_dir` of its own, and the next export removes its staging folder. The export is
deterministic: rows sorted by id, no timestamps in the files or the card, so the same build
gives the same bytes and a re-publish uploads nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline import progress
from pipeline.failpoints import failpoint
from pipeline.publish.card import is_export, render_card
from pipeline.publish.licenses import (
    UnknownLicenseError,
    hub_license,
    image_license,
    style_license,
)
from pipeline.publish.rows import (
    BuildView,
    case_row,
    case_size,
    counterfactual_row,
    counterfactual_size,
    image_row,
    image_size,
    read_cases,
    read_concept_scores,
)
from pipeline.publish.schema import (
    IMAGE_COLUMNS,
    case_features,
    concept_score_features,
    counterfactual_features,
    image_features,
)
from pipeline.publish.shards import (
    DEFAULT_MAX_SHARD_SIZE,
    ConfigExport,
    parse_size,
    write_config,
)
from pipeline.publish.webdataset import write_tar_config
from pipeline.store.atomic import TEMP_PREFIX

FORMATS = ("hub", "hf", "parquet", "webdataset")
LAYOUT = {"hub": "hub", "hf": "arrow", "parquet": "parquet"}


@dataclass(frozen=True)
class ExportResult:
    root: Path
    configs: tuple[ConfigExport, ...]
    license: str
    unknown_license_images: int
    format: str = "hub"

    @property
    def files(self) -> tuple[str, ...]:
        """Every file of the export, relative to its root, sorted."""
        names = ["README.md", *(f for config in self.configs for f in config.files)]
        if self.format == "hf":
            names.append("dataset_dict.json")
            for config in self.configs:
                names += [f"{config.name}/dataset_info.json", f"{config.name}/state.json"]
        return tuple(sorted(names))

    @property
    def rows(self) -> dict[str, int]:
        return {config.name: config.rows for config in self.configs}


@dataclass(frozen=True)
class _Config:
    """What one config writes: its features, key column and rows (made one at a time)."""

    name: str
    features: Any
    key: str
    count: int
    make_row: Callable[[int], dict[str, Any]]
    sizes: Sequence[int]


def _plan(view: BuildView, inline_images: bool) -> list[_Config]:
    rows = view.counterfactuals
    images = view.used_images()
    verdicts = view.verdict_names()
    configs = [
        _Config(
            "counterfactuals",
            counterfactual_features(verdicts, inline_images),
            "cf_id",
            len(rows),
            lambda i: counterfactual_row(view, rows[i], verdicts, inline_images),
            [counterfactual_size(view, r, inline_images) for r in rows],
        ),
        _Config(
            "images",
            image_features(),
            "image_id",
            len(images),
            lambda i: image_row(view, images[i]),
            [image_size(view, i) for i in images],
        ),
    ]
    cases = read_cases(view.store)
    if cases:
        groups = sorted({g for c in cases for g in (c.test_groups or {})})
        configs.append(
            _Config(
                "cases",
                case_features(groups),
                "case_id",
                len(cases),
                lambda i: case_row(cases[i], groups),
                [case_size(c) for c in cases],
            )
        )
    scores = read_concept_scores(view.store)
    if scores:
        configs.append(
            _Config(
                "concept_scores",
                concept_score_features(scores),
                "score_id",
                len(scores),
                lambda i: scores[i],
                [len(json.dumps(r, default=str)) for r in scores],
            )
        )
    return configs


def _write_save_to_disk_metadata(root: Path, written: Sequence[tuple[ConfigExport, Any]]) -> None:
    """`state.json` / `dataset_info.json` per config and `dataset_dict.json`: what
    `load_from_disk` reads (the form `DatasetDict.save_to_disk` writes, minus timestamps)."""
    from datasets import DatasetInfo

    for config, features in written:
        folder = root / config.name
        digest = hashlib.sha256(json.dumps([config.name, *config.files]).encode())
        for relpath in config.files:
            digest.update((root / relpath).read_bytes())
        state = {
            "_data_files": [{"filename": Path(f).name} for f in config.files],
            "_fingerprint": digest.hexdigest()[:16],
            "_format_columns": None,
            "_format_kwargs": {},
            "_format_type": None,
            "_output_all_columns": False,
            "_split": None,
        }
        (folder / "state.json").write_text(json.dumps(state, indent=2, sort_keys=True) + "\n")
        info = DatasetInfo(features=features, config_name=config.name)
        info_dict = info._to_yaml_dict() | {"features": features.to_dict()}
        text = json.dumps(info_dict, indent=2, sort_keys=True) + "\n"
        (folder / "dataset_info.json").write_text(text)
    splits = {"splits": [config.name for config, _ in written]}
    (root / "dataset_dict.json").write_text(json.dumps(splits) + "\n")


def _umask() -> int:
    """The process's umask (read by setting and restoring it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def export_build(
    build_dir: str | Path,
    out_dir: str | Path,
    *,
    format: str = "hub",
    inline_images: bool = False,
    max_shard_size: int | str = DEFAULT_MAX_SHARD_SIZE,
    allow_unknown_license: bool = False,
    repo_id: str | None = None,
    progress_stage: str = "export",
) -> ExportResult:
    """Write the dataset folder of a build in `format` to `out_dir` (replacing an old export).

    Progress goes to `pipeline.progress.advance(progress_stage, rows)`. Raises
    `UnknownLicenseError` when exported source images have no license, unless
    `allow_unknown_license`; `FileExistsError` when `out_dir` is a non-empty folder that is not
    an earlier export; `ValueError` for an unknown format or size.
    """
    if format not in FORMATS:
        raise ValueError(f"unknown export format {format!r}; one of {', '.join(FORMATS)}")
    max_bytes = parse_size(max_shard_size)
    view = BuildView.load(build_dir)
    out = Path(out_dir).resolve()
    if out.is_file() or (out.exists() and any(out.iterdir()) and not is_export(out)):
        raise FileExistsError(f"{out} is not empty and not a conceptswap export; choose another")
    images = view.used_images()
    unknown = sum(image_license(i) is None for i in images)
    if unknown and not allow_unknown_license:
        raise UnknownLicenseError(
            f"{unknown} of {len(images)} source images have no license (no `license` key in "
            "manifests/images.parquet source_meta); folder and Hugging Face sources carry none. "
            "Check that you may redistribute them, then pass allow_unknown_license=True "
            "(--allow-unknown-license)."
        )
    # every row derives from a source image and a texture: both licenses count
    styles = [view.styles.get(r.style_image) for r in view.counterfactuals]
    style_licenses = [style_license(s.license if s else None) for s in styles]
    license_id = hub_license([image_license(i) for i in images] + style_licenses)
    plan = _plan(view, inline_images)
    progress.advance(progress_stage, 0, sum(c.count for c in plan))

    def advance(rows: int) -> None:
        progress.advance(progress_stage, rows)

    out.parent.mkdir(parents=True, exist_ok=True)
    _sweep_staging(out)
    staging = Path(tempfile.mkdtemp(prefix=_staging_prefix(out), dir=out.parent))
    staging.chmod(0o777 & ~_umask())  # mkdtemp makes it 0700; the export is for others too
    try:
        written: list[tuple[ConfigExport, Any]] = []
        for c in plan:
            if format == "webdataset":
                images_in = [k for k in IMAGE_COLUMNS if k in c.features]
                export = write_tar_config(
                    staging, c.name, c.key, images_in, c.count, c.make_row, c.sizes, max_bytes,
                    advance,
                )  # fmt: skip
            else:
                export = write_config(
                    staging, c.name, c.features, c.count, c.make_row, c.sizes, max_bytes,
                    LAYOUT[format], advance,
                )  # fmt: skip
            written.append((export, c.features))
        if format == "hf":
            _write_save_to_disk_metadata(staging, written)
        location = repo_id if format == "hub" else str(out)
        card = render_card(view, written, license_id, images, location, format, inline_images)
        failpoint("export.after_rows")
        (staging / "README.md").write_text(card, encoding="utf-8")  # inside the staging folder
        staging.chmod(0o755)
        _swap_into_place(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return ExportResult(out, tuple(c for c, _ in written), license_id, unknown, format)


OLD_SUFFIX = "-old"  # an old export set aside while the new one is renamed into place


def _staging_prefix(out: Path) -> str:
    """Staging folders of `out` are `.tmp-export-<name>-*` beside it: a re-run finds and
    removes those a killed export left (they never hold a finished export)."""
    return f"{TEMP_PREFIX}export-{out.name}-"


def _sweep_staging(out: Path) -> int:
    """Clean up after a killed export of `out`: an old export it had set aside goes back to
    `out` when nothing replaced it; staging folders are removed."""
    leftovers = sorted(p for p in out.parent.glob(f"{_staging_prefix(out)}*") if p.is_dir())
    for folder in leftovers:
        if folder.name.endswith(OLD_SUFFIX) and not out.exists():
            folder.rename(out)
        else:
            shutil.rmtree(folder, ignore_errors=True)
    return len(leftovers)


def _swap_into_place(staging: Path, out: Path) -> None:
    """Rename the finished `staging` to `out`. An old export is first renamed aside (so that a
    crash at any moment leaves the old export or the new one at `out`, or at worst neither
    with the old one aside under the staging prefix) and removed once the new one is in
    place."""
    old = None
    if out.exists():
        old = staging.with_name(staging.name + OLD_SUFFIX)
        out.rename(old)
        failpoint("export.old_set_aside")
    staging.rename(out)
    if old is not None:
        shutil.rmtree(old)


def read_export_bytes(root: str | Path) -> dict[str, bytes]:
    """Every file of an export folder by relative path (for tests and comparisons)."""
    base = Path(root)
    return {
        str(p.relative_to(base)): p.read_bytes() for p in sorted(base.rglob("*")) if p.is_file()
    }
