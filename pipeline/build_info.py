"""The resolved build record (`build.yaml`): config, versions, model ids, weight hashes, seed."""

from __future__ import annotations

import platform
from importlib import metadata
from typing import Any

import yaml

from pipeline import __version__
from pipeline.config import BuildConfig
from pipeline.records import StyleImage
from pipeline.stages.models import (
    classifier_fingerprint,
    segmenter_fingerprint,
    stylizer_fingerprint,
)
from pipeline.store import BuildStore
from pipeline.store.atomic import atomic_write_text

PACKAGES = (
    "torch",
    "torchvision",
    "timm",
    "numpy",
    "pillow",
    "scikit-image",
    "opencv-python-headless",
    "prefect",
    "datasets",
)


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version(), "conceptswap": __version__}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def resolved(config: BuildConfig, styles: list[StyleImage]) -> dict[str, Any]:
    """Everything needed to reproduce the build, without timestamps (same config, same file)."""
    return {
        **config.model_dump(mode="json"),
        "resolved": {
            "versions": package_versions(),
            "classifier": classifier_fingerprint(config.classifier),
            "segmenter": segmenter_fingerprint(config.segment, config.classifier),
            "stylizer": stylizer_fingerprint(config.stylize),
            "styles": [
                {
                    "style_id": s.style_id,
                    "sha256": s.sha256,
                    "license": s.license,
                    "source": s.source,
                }
                for s in styles
            ],
        },
    }


def write_build_yaml(store: BuildStore, config: BuildConfig, styles: list[StyleImage]) -> None:
    text = yaml.safe_dump(resolved(config, styles), sort_keys=False, allow_unicode=True)
    atomic_write_text(store.root / "build.yaml", text, skip_if_same=True)


def write_concept_stats(store: BuildStore) -> None:
    """Per-concept statistics of the masks (images, kept, rejected by rule, areas, scores)."""
    import json

    from pipeline.segment.stats import concept_stats

    rows = concept_stats(store.manifest_path("masks"))
    text = json.dumps(rows, indent=2, sort_keys=True, default=float) + "\n"
    atomic_write_text(store.root / "concept_stats.json", text, skip_if_same=True)
