"""Classifier backends, created by name: `timm:<model>`, and more behind the same protocol."""

from __future__ import annotations

import copy
import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from pipeline.classify.base import Classifier, resolve_device, topk
from pipeline.classify.engines import ENGINES, EngineInfo
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


def create_classifier(name: str, engine: str | None = None, **options: Any) -> Classifier:
    """The loaded classifier `backend:model` (`timm:tf_efficientnet_lite0`,
    `torchvision:resnet50`, `open_clip:ViT-B-32`, `checkpoint:/path/to/model.pt`).

    The one way to load a classifier: one instance per (name, options, engine) per process, so
    the build, the `cam` segmenter, the audit and the editing engine share a loaded model.
    `engine` (`auto`, `torch`, `onnxruntime`; see `pipeline.classify.engines`) chooses what runs
    its no-gradient passes, at load; None keeps torch eager at the configured batch size with no
    probe. The choice is on `classifier.engine_info`.
    """
    return _cached(name, json.dumps(options, sort_keys=True), engine)


@lru_cache(maxsize=8)
def _cached(name: str, options_json: str, engine: str | None = None) -> Classifier:
    if engine is None:
        backend, _, model = name.partition(":")
        if not model:
            raise ValueError(f"classifier name {name!r} must look like 'backend:model'")
        return classifiers.create(backend, model=model, **json.loads(options_json))
    if engine not in ENGINES:
        raise ValueError(f"classifier engine {engine!r} is not one of {', '.join(ENGINES)}")
    # a shallow copy of the plain instance: one torch model in memory whatever the engines
    classifier = copy.copy(_cached(name, options_json, None))
    _CONFIGURED.append(classifier)
    configure = getattr(classifier, "configure_engine", None)
    if configure is not None:
        configure(engine)
    else:  # a plugin backend with its own predict_proba: it runs as it is
        classifier.engine_info = EngineInfo(  # type: ignore[attr-defined]
            requested=engine, engine="own", reason=f"{name} runs its own predict_proba"
        )
    return classifier


_CONFIGURED: list[Classifier] = []  # engine-configured classifiers loaded in this process


def loaded_engine_infos() -> dict[str, dict[str, Any]]:
    """classifier id → `engine_info` of each engine-configured classifier this process loaded,
    without loading anything (for build.yaml at the end of a build)."""
    return {c.id: info for c in _CONFIGURED if (info := engine_info(c)) is not None}


def engine_info(classifier: Classifier) -> dict[str, Any] | None:
    """What a loaded classifier's no-grad passes run on (for build.yaml), or None."""
    info = getattr(classifier, "engine_info", None)
    return info.as_dict() if isinstance(info, EngineInfo) else None


__all__ = [
    "Classifier",
    "classifiers",
    "create_classifier",
    "engine_info",
    "loaded_engine_infos",
    "resolve_device",
    "topk",
]
