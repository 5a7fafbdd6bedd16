"""Classifier backends, created by name: `timm:<model>`, and more behind the same protocol."""

from __future__ import annotations

import copy
import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from pipeline.classify.base import Classifier, resolve_device, topk
from pipeline.classify.engines import ENGINES, EngineInfo
from pipeline.config import ClassifierConfig
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


# what runs the no-gradient passes when a caller names no engine: the build config's default
# (`auto`), so the Python API, the CLI and the flows run the same engine
DEFAULT_ENGINE: str = ClassifierConfig.model_fields["engine"].default
EAGER = "eager"  # plain torch eager at the configured batch size, no probe


def create_classifier(name: str, engine: str | None = DEFAULT_ENGINE, **options: Any) -> Classifier:
    """The loaded classifier `backend:model` (`timm:tf_efficientnet_lite0`,
    `torchvision:resnet50`, `open_clip:ViT-B-32`, `checkpoint:/path/to/model.pt`).

    The one way to load a classifier: one instance per (name, options, engine) per process, so
    the build, the `cam` segmenter, the audit and the editing engine share a loaded model.
    `engine` chooses what runs its no-gradient passes (`predict_proba`), at load: by default
    `DEFAULT_ENGINE` (`auto`: the fastest engine measured once per machine and reused; see
    `pipeline.classify.engines`), or `torch`, `onnxruntime`, or `eager` (None too): torch eager
    at the configured `batch_size` with no probe, for callers that only need the torch `model`
    (Grad-CAM, editing). Every engine shares the one torch `model`; the choice is on
    `classifier.engine_info`.
    """
    return _cached(name, json.dumps(options, sort_keys=True), engine or EAGER)


@lru_cache(maxsize=8)
def _cached(name: str, options_json: str, engine: str = EAGER) -> Classifier:
    if engine == EAGER:
        backend, _, model = name.partition(":")
        if not model:
            raise ValueError(f"classifier name {name!r} must look like 'backend:model'")
        return classifiers.create(backend, model=model, **json.loads(options_json))
    if engine not in ENGINES:
        known = ", ".join((EAGER, *ENGINES))
        raise ValueError(f"classifier engine {engine!r} is not one of {known}")
    # a shallow copy of the plain instance: one torch model in memory whatever the engines
    classifier = copy.copy(_cached(name, options_json, EAGER))
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
    "DEFAULT_ENGINE",
    "EAGER",
    "Classifier",
    "classifiers",
    "create_classifier",
    "engine_info",
    "loaded_engine_infos",
    "resolve_device",
    "topk",
]
