"""Backend fingerprints (computed without loading a model) and per-process model caches."""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

from pipeline.classify import Classifier, cached_classifier
from pipeline.classify.weights import packaged_weights_path
from pipeline.config import ClassifierConfig, SegmentConfig, StylizeConfig
from pipeline.hashing import sha256_file, stable_key
from pipeline.segment import Segmenter, create_segmenter
from pipeline.stylize import Stylizer, create_stylizer


@lru_cache(maxsize=64)
def _file_digest(path: str, size: int, mtime_ns: int) -> str:
    return sha256_file(path)[:16]


def weights_digest(path: str | Path) -> str:
    stat = os.stat(path)
    return _file_digest(str(path), stat.st_size, stat.st_mtime_ns)


def classifier_fingerprint(config: ClassifierConfig) -> str:
    """`name@weights-hash` for the classifier a config names, without building the model."""
    backend, _, model = config.name.partition(":")
    weights = config.options.get("weights")
    path = (
        Path(weights) if weights else (packaged_weights_path(model) if backend == "timm" else None)
    )
    digest = weights_digest(path) if path else "default"
    options = {k: v for k, v in config.options.items() if k != "weights"}
    return f"{config.name}@{digest}" + (f"({stable_key(options, length=8)})" if options else "")


def _input_files_digest(value: Any) -> str | None:
    """Digest of the files an option names (a path, a folder or a list of paths), else None.

    Backend options that point at files (weights, annotation JSON, mask folders) are part of a
    backend's fingerprint by content, so replacing a file under the same name invalidates the
    stages that used it.
    """
    raw = [value] if isinstance(value, str) else value if isinstance(value, list) else []
    paths = [Path(str(item)).expanduser() for item in raw if isinstance(item, str)]
    if not paths or not all(path.exists() for path in paths):
        return None
    digests = []
    for path in paths:
        if path.is_file():
            digests.append(weights_digest(path))
        else:
            files = sorted(p for p in path.rglob("*") if p.is_file())
            listing = [(str(p.relative_to(path)), weights_digest(p)) for p in files]
            digests.append(stable_key(listing))
    return stable_key(digests, length=16)


def with_file_digests(options: dict[str, Any]) -> dict[str, Any]:
    """Options plus `<name>_digest` for every option that names existing files."""
    digested = dict(options)
    for name, value in options.items():
        digest = _input_files_digest(value)
        if digest is not None:
            digested[f"{name}_digest"] = digest
    return digested


def segmenter_fingerprint(config: SegmentConfig, classifier: ClassifierConfig) -> str:
    options = with_file_digests(dict(config.options))
    if config.backend == "cam":
        name = options.pop("classifier", classifier.name)
        options["classifier"] = classifier_fingerprint(ClassifierConfig(name=name))
    return f"{config.backend}:{stable_key(sorted(config.concepts), options, length=12)}"


def stylizer_fingerprint(config: StylizeConfig) -> str:
    return f"{config.backend}:{stable_key(with_file_digests(config.options), length=12)}"


def _json(options: dict[str, Any]) -> str:
    return json.dumps(options, sort_keys=True)


def load_classifier(config: ClassifierConfig) -> Classifier:
    options = {**config.options, "device": config.device, "batch_size": config.batch_size}
    return cached_classifier(config.name, _json(options))


@lru_cache(maxsize=4)
def _segmenter(backend: str, options_json: str, classifier_obj: Classifier | None) -> Segmenter:
    options = json.loads(options_json)
    if classifier_obj is not None:
        options["classifier_obj"] = classifier_obj
    return create_segmenter(backend, **options)


def load_segmenter(
    config: SegmentConfig, classifier: ClassifierConfig, max_side: int = 384
) -> Segmenter:
    """One segmenter per config per process; `cam` shares the build's loaded classifier."""
    options: dict[str, Any] = {"concepts": list(config.concepts), **config.options}
    if config.backend == "annotations":
        options.setdefault("max_side", max_side)  # it matches images resized as the build does
    shared: Classifier | None = None
    if config.backend == "cam":
        options.setdefault("classifier", classifier.name)
        options.setdefault("device", classifier.device)
        if options["classifier"] == classifier.name:
            shared = load_classifier(classifier)
    return _segmenter(config.backend, _json(options), shared)


@lru_cache(maxsize=4)
def _stylizer(backend: str, options_json: str) -> Stylizer:
    return create_stylizer(backend, **json.loads(options_json))


def load_stylizer(config: StylizeConfig) -> Stylizer:
    return _stylizer(config.backend, _json(dict(config.options)))
