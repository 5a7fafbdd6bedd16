"""Classifier backends, created by name: `timm:<model>`, and more behind the same protocol."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from pipeline.classify.base import Classifier, resolve_device, topk
from pipeline.registry import Registry

classifiers: Registry[Classifier] = Registry("classifier")


def _packaged_weights(model: str) -> Path | None:
    from pipeline.classify.weights import packaged_weights_path

    return packaged_weights_path(model)


@classifiers.register("timm", weights=_packaged_weights)
def _timm(model: str, **options: Any) -> Classifier:
    from pipeline.classify.timm_backend import TimmClassifier

    return TimmClassifier(model, **options)


@classifiers.register("torchvision")
def _torchvision(model: str, **options: Any) -> Classifier:
    from pipeline.classify.torchvision_backend import TorchvisionClassifier

    return TorchvisionClassifier(model, **options)


@classifiers.register("checkpoint")
def _checkpoint(model: str, **options: Any) -> Classifier:
    from pipeline.classify.checkpoint_backend import CheckpointClassifier

    return CheckpointClassifier(model, **options)


@classifiers.register("open_clip")
def _open_clip(model: str, **options: Any) -> Classifier:
    from pipeline.classify.open_clip_backend import OpenClipClassifier

    return OpenClipClassifier(model, **options)


def create_classifier(name: str, **options: Any) -> Classifier:
    """The loaded classifier `backend:model` (`timm:tf_efficientnet_lite0`,
    `torchvision:resnet50`, `open_clip:ViT-B-32`, `checkpoint:/path/to/model.pt`).

    The one way to load a classifier: one instance per (name, options) per process, so the
    build, the `cam` segmenter, the audit and the editing engine share a loaded model.
    """
    return _cached(name, json.dumps(options, sort_keys=True))


@lru_cache(maxsize=4)
def _cached(name: str, options_json: str) -> Classifier:
    backend, _, model = name.partition(":")
    if not model:
        raise ValueError(f"classifier name {name!r} must look like 'backend:model'")
    return classifiers.create(backend, model=model, **json.loads(options_json))


__all__ = [
    "Classifier",
    "classifiers",
    "create_classifier",
    "resolve_device",
    "topk",
]
