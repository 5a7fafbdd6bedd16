"""The start and the end of a build, around its shards: what a flow calls before and after.

`start_build` sweeps what a crashed run left, removes the up-to-date stamp (until this run
finishes the build is not up to date), writes the resolved `build.yaml` and returns the shards;
`finish_build` consolidates the shards' manifest parts, writes the statistics and the build
overview, and stamps the build as up to date.
"""

from __future__ import annotations

import json
import platform
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

from pipeline import __version__
from pipeline.classify import loaded_engine_infos
from pipeline.config import BuildConfig, ClassifierConfig
from pipeline.failpoints import failpoint
from pipeline.report.build_overview import write_build_overview
from pipeline.segment import segmenters
from pipeline.segment.stats import concept_stats
from pipeline.sources import SourceRef
from pipeline.stages import counterfactual, ingest, segment, stylize
from pipeline.stages.backends import Backends, classifier_fingerprint
from pipeline.store import BuildStore
from pipeline.store.atomic import atomic_write_text
from pipeline.store.stamp import build_signature, clear_stamp, is_up_to_date, write_stamp

CODE_VERSIONS = tuple(m.CODE_VERSION for m in (ingest, segment, stylize, counterfactual))
PACKAGES = (
    "torch",
    "torchvision",
    "timm",
    "numpy",
    "pillow",
    "scikit-image",
    "opencv-python-headless",
    "datasets",
)


def package_versions(extra: Sequence[str] = ()) -> dict[str, str]:
    """Versions of the packages a build's outputs depend on (`extra`: the orchestrator's)."""
    versions = {"python": platform.python_version(), "conceptswap": __version__}
    for name in (*PACKAGES, *extra):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def resolved(backends: Backends, packages: Sequence[str] = ()) -> dict[str, Any]:
    """Everything needed to reproduce the build, without timestamps (same config, same file)."""
    return {
        **backends.config.model_dump(mode="json"),
        "resolved": {
            "versions": package_versions(packages),
            "classifier": backends.classifier.id,
            "segmenter": backends.segmenter.id,
            "mask_model": mask_model(backends.config),
            "stylizer": backends.stylizer.id,
            "styles": [
                {
                    "style_id": s.style_id,
                    "sha256": s.sha256,
                    "license": s.license,
                    "source": s.source,
                    "split": s.split,
                }
                for s in backends.styles
            ],
        },
    }


def mask_model(config: BuildConfig) -> dict[str, str]:
    """What made the masks: the segmenter, and for a classifier-guided one (`cam`) the
    classifier it used (by default never the audited one) and what its registration says the
    masks are worth (`finder`, `iou`), so the report can say so."""
    backend = config.segment.backend
    spec = segmenters.spec(backend)
    if not spec.needs_classifier:
        return {"backend": backend}
    options = dict(config.segment.options)
    name = spec.classifier_name(options, config.classifier.name)
    record = {
        "backend": backend,
        "classifier": name,
        "id": classifier_fingerprint(ClassifierConfig(name=name)),
    }
    if spec.facts is not None:
        record.update(spec.facts(options))
    return record


def signature(backends: Backends) -> str | None:
    """The up-to-date signature of a build of this config (stat calls only, no model)."""
    return build_signature(backends.config, backends.styles, backends.fingerprints(), CODE_VERSIONS)


def up_to_date(build_dir: str | Path, backends: Backends) -> bool:
    """Whether the build at `build_dir` finished with this config and still has its files."""
    return is_up_to_date(build_dir, signature(backends))


@dataclass(frozen=True)
class BuildStart:
    """What `start_build` found: temp files swept, the shards, and the signature of the inputs
    as they were when the build started (stamped when it finishes)."""

    swept: int
    shards: list[list[SourceRef]]
    signature: str | None


def start_build(store: BuildStore, backends: Backends, packages: Sequence[str] = ()) -> BuildStart:
    """Prepare the build directory and list the source in shards of `shard_size` refs.

    `packages`: more packages whose versions `build.yaml` records (the orchestrator's).
    """
    swept = store.sweep()
    clear_stamp(store.root)
    started = signature(backends)
    text = yaml.safe_dump(resolved(backends, packages), sort_keys=False, allow_unicode=True)
    atomic_write_text(store.build_yaml, text, skip_if_same=True)
    refs = list(backends.source.refs())
    size = backends.config.shard_size
    shards = [refs[start : start + size] for start in range(0, len(refs), size)]
    return BuildStart(swept, shards, started)


def finish_build(
    store: BuildStore,
    backends: Backends,
    parts: dict[str, Sequence[str]],
    started: str | None,
    packages: Sequence[str] = (),
) -> None:
    """Consolidate the parts (kind → this run's shard keys), write the statistics, the build
    overview and the up-to-date stamp (`started`: the signature `start_build` took). A
    classifier run on a measured engine (`classifier.engine` other than `eager`) has its choice
    and rate added to build.yaml (which then varies with the machine's load)."""
    failpoint("consolidate.before")
    store.quarantine([])  # quarantine.jsonl exists, empty when all inputs were good
    for kind, keys in parts.items():
        store.consolidate(kind, keys)
        failpoint(f"consolidate.after_{kind}")
    store.write_part("styles", "library", backends.styles)
    store.consolidate("styles", ["library"])
    failpoint("consolidate.after_styles")
    rows = concept_stats(store.read("masks"))
    text = json.dumps(rows, indent=2, sort_keys=True, default=float) + "\n"
    atomic_write_text(store.root / "concept_stats.json", text, skip_if_same=True)
    failpoint("consolidate.after_stats")
    write_build_overview(store.root)
    engines = loaded_engine_infos()
    if backends.classifier.id in engines:  # the engine chosen at load, and its measured rate
        record = resolved(backends, packages)
        record["resolved"]["classifier_engine"] = engines[backends.classifier.id]
        text = yaml.safe_dump(record, sort_keys=False, allow_unicode=True)
        atomic_write_text(store.build_yaml, text, skip_if_same=True)
    failpoint("build.before_stamp")
    write_stamp(store.root, started)
