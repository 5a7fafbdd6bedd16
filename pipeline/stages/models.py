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


ANNOTATION_FILE_OPTIONS = ("coco_json", "mask_dir", "hf_dataset")


def _input_files_digest(value: Any) -> str:
    """Digest of annotation inputs (files or folders), so edited annotations invalidate masks."""
    paths = [value] if isinstance(value, str) else list(value or [])
    digests = []
    for raw in paths:
        path = Path(str(raw))
        if path.is_file():
            digests.append(weights_digest(path))
        elif path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file())
            listing = [(str(p.relative_to(path)), weights_digest(p)) for p in files]
            digests.append(stable_key(listing))
        else:
            digests.append(str(raw))
    return stable_key(digests, length=16)


def segmenter_fingerprint(config: SegmentConfig, classifier: ClassifierConfig) -> str:
    options = dict(config.options)
    for name in ANNOTATION_FILE_OPTIONS:
        if config.backend == "annotations" and options.get(name):
            options[f"{name}_digest"] = _input_files_digest(options[name])
    if config.backend == "cam":
        name = options.pop("classifier", classifier.name)
        options["classifier"] = classifier_fingerprint(ClassifierConfig(name=name))
    return f"{config.backend}:{stable_key(sorted(config.concepts), options, length=12)}"


def stylizer_fingerprint(config: StylizeConfig) -> str:
    return f"{config.backend}:{stable_key(config.options, length=12)}"


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
