"""`export_build`: write a build as a Hugging Face dataset folder, replacing an earlier export.

The folder is written to a staging folder next to `out_dir` and renamed into place once it is
complete, so a reader (or an upload) sees the old export or the whole new one. The export is
deterministic: rows sorted by id, no timestamps in the Parquet files or the card, so the same
build gives the same bytes and a re-publish uploads nothing.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

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
    read_cases,
)
from pipeline.publish.schema import case_features, counterfactual_features
from pipeline.publish.shards import (
    DEFAULT_MAX_SHARD_SIZE,
    ConfigExport,
    parse_size,
    write_config,
)


@dataclass(frozen=True)
class ExportResult:
    root: Path
    configs: tuple[ConfigExport, ...]
    license: str
    unknown_license_images: int

    @property
    def files(self) -> tuple[str, ...]:
        """Every file of the export, relative to its root, sorted."""
        names = ["README.md", *(f for config in self.configs for f in config.files)]
        return tuple(sorted(names))


def export_build(
    build_dir: str | Path,
    out_dir: str | Path,
    *,
    max_shard_size: int | str = DEFAULT_MAX_SHARD_SIZE,
    allow_unknown_license: bool = False,
    repo_id: str | None = None,
) -> ExportResult:
    """Write the Hugging Face dataset folder of a build to `out_dir` (replacing an old export).

    Raises `UnknownLicenseError` when exported source images have no license, unless
    `allow_unknown_license`; `FileExistsError` when `out_dir` is a non-empty folder that is not
    an earlier export.
    """
    view = BuildView.load(build_dir)
    out = Path(out_dir).resolve()
    if out.exists() and any(out.iterdir()) and not is_export(out):
        raise FileExistsError(f"{out} is not empty and not a conceptswap export; choose another")
    images = view.used_images()
    rows = view.counterfactuals
    unknown = sum(image_license(i) is None for i in images)
    if unknown and not allow_unknown_license:
        raise UnknownLicenseError(
            f"{unknown} of {len(images)} source images have no license (no `license` key in "
            "manifests/images.parquet source_meta); folder and Hugging Face sources carry none. "
            "Check that you may redistribute them, then pass allow_unknown_license=True "
            "(--allow-unknown-license)."
        )
    # every row derives from a source image and a texture: both licenses count
    styles = [view.styles.get(r.style_image) for r in rows]
    style_licenses = [style_license(s.license if s else None) for s in styles]
    license_id = hub_license([image_license(i) for i in images] + style_licenses)
    max_bytes = parse_size(max_shard_size)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".tmp-export-", dir=out.parent))
    try:
        verdicts = view.verdict_names()
        features = counterfactual_features(verdicts)
        configs = [
            (
                write_config(
                    staging,
                    "counterfactuals",
                    features,
                    len(rows),
                    lambda i: counterfactual_row(view, rows[i], verdicts),
                    [counterfactual_size(view, r) for r in rows],
                    max_bytes,
                ),
                features,
            )
        ]
        cases = read_cases(view.store)
        if cases:
            groups = sorted({g for c in cases for g in (c.test_groups or {})})
            case_feats = case_features(groups)
            export = write_config(
                staging,
                "cases",
                case_feats,
                len(cases),
                lambda i: case_row(cases[i], groups),
                [case_size(c) for c in cases],
                max_bytes,
            )
            configs.append((export, case_feats))
        card = render_card(view, configs, license_id, images, repo_id)
        (staging / "README.md").write_text(card, encoding="utf-8")  # inside the staging folder
        staging.chmod(0o755)
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return ExportResult(out, tuple(c for c, _ in configs), license_id, unknown)


def read_export_bytes(root: str | Path) -> dict[str, bytes]:
    """Every file of an export folder by relative path (for tests and comparisons)."""
    base = Path(root)
    return {
        str(p.relative_to(base)): p.read_bytes() for p in sorted(base.rglob("*")) if p.is_file()
    }
