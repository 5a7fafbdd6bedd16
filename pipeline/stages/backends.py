"""`Backends`: what a build runs with, resolved once per process from its `BuildConfig`.

For each stage it holds the backend's fingerprint (name, settings and the digests of the files
its options name, weights included; computed without loading a model, so a re-run of a
finished build loads nothing) and a loader that builds the model on first use and keeps it for
every later shard. The fingerprint is the id every record of that stage names its producer by,
and part of the stage's cache key.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache, lru_cache, partial
from pathlib import Path
from typing import Any, Generic, TypeVar

import numpy as np

from pipeline.classify import Classifier, classifiers, create_classifier
from pipeline.config import BuildConfig, ClassifierConfig
from pipeline.hashing import sha256_file, stable_key
from pipeline.records import StyleImage
from pipeline.registry import Backend
from pipeline.segment import Segmenter, segmenters
from pipeline.sources import Source, create_source
from pipeline.stylize import Stylizer, stylizers
from pipeline.stylize.library import load_style, load_texture_library

T = TypeVar("T")


@lru_cache(maxsize=64)
def _file_digest(path: str, size: int, mtime_ns: int) -> str:
    return sha256_file(path)[:16]


def file_digest(path: str | Path) -> str:
    """sha256 (16 hex digits) of a file, hashed once per process while its size and mtime hold."""
    stat = os.stat(path)
    return _file_digest(str(path), stat.st_size, stat.st_mtime_ns)


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
            digests.append(file_digest(path))
        else:
            files = sorted(p for p in path.rglob("*") if p.is_file())
            listing = [(str(p.relative_to(path)), file_digest(p)) for p in files]
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


def classifier_fingerprint(config: ClassifierConfig) -> str:
    """`name@weights-digest` for the classifier a config names, without building the model."""
    backend, _, model = config.name.partition(":")
    weights = config.options.get("weights")
    spec = classifiers.spec(backend) if backend in classifiers else None
    if weights:
        path: Path | None = Path(weights)
    else:
        path = spec.weights(model) if spec is not None and spec.weights is not None else None
    digest = file_digest(path) if path else "default"
    options = {k: v for k, v in config.options.items() if k != "weights"}
    return f"{config.name}@{digest}" + (f"({stable_key(options, length=8)})" if options else "")


def _options_json(options: dict[str, Any]) -> str:
    return json.dumps(options, sort_keys=True)


@dataclass(frozen=True)
class StageBackend(Generic[T]):
    """One stage's backend in a build: its id (the fingerprint) and its loader.

    `load()` builds the backend on first use in a process and returns the same instance
    afterwards (models load once per process, also on each Dask worker).
    """

    id: str
    load: Callable[[], T]


@cache
def _create(spec: Backend[Any], options_json: str) -> Any:
    # keyed by the registration itself: a backend registered anew is built anew
    return spec.factory(**json.loads(options_json))


@cache
def _create_with_classifier(spec: Backend[Any], options_json: str, classifier: str) -> Any:
    loaded = load_classifier(ClassifierConfig.model_validate_json(classifier))
    return spec.factory(classifier=loaded, **json.loads(options_json))


def load_classifier(config: ClassifierConfig) -> Classifier:
    """The classifier a config names, loaded once per process (`create_classifier`)."""
    return create_classifier(
        config.name,
        engine=None if config.engine == "eager" else config.engine,
        **config.options,
        device=config.device,
        batch_size=config.batch_size,
    )


def _settings(
    spec: Backend[Any], values: dict[str, Any], options: dict[str, Any], section: str
) -> dict[str, Any]:
    """The build settings a backend's registration asks for. One knob per setting: an option
    that repeats one (`options.batch_size` next to `batch_size`) is refused."""
    repeated = sorted(set(spec.settings) & set(options) - {"max_side"})
    if repeated:
        raise ValueError(
            f"{section}.options.{repeated[0]} is set by the build: use {section}.{repeated[0]}"
        )
    return {name: values[name] for name in spec.settings if name in values and name not in options}


def _segmenter(config: BuildConfig) -> StageBackend[Segmenter]:
    segment = config.segment
    spec = segmenters.spec(segment.backend)
    options: dict[str, Any] = {"concepts": list(segment.concepts), **segment.options}
    settings = {"max_side": config.image.max_side, "batch_size": segment.batch_size}
    options.update(_settings(spec, settings, segment.options, "segment"))
    fingerprint_options = with_file_digests(dict(segment.options))
    if not spec.needs_classifier:
        fingerprint = stable_key(sorted(segment.concepts), fingerprint_options, length=12)
        load = partial(_create, spec, _options_json(options))
        return StageBackend(f"{segment.backend}:{fingerprint}", load)
    from pipeline.segment.cam_concepts import mask_classifier_name

    # `cam` masks come from a model other than the audited one unless the config names one
    name = mask_classifier_name(segment.backend, options, config.classifier.name)
    options.pop("classifier", None)
    # the build's own classifier when it is the one named (one model in memory); another one
    # runs only Grad-CAM and crops on its torch model, so no engine is measured for it
    classifier = (
        config.classifier
        if name == config.classifier.name
        else ClassifierConfig(name=name, device=config.classifier.device, engine="eager")
    )
    fingerprint_options["classifier"] = classifier_fingerprint(ClassifierConfig(name=name))
    fingerprint = stable_key(sorted(segment.concepts), fingerprint_options, length=12)
    load = partial(
        _create_with_classifier, spec, _options_json(options), classifier.model_dump_json()
    )
    return StageBackend(f"{segment.backend}:{fingerprint}", load)


def _stylizer(config: BuildConfig) -> StageBackend[Stylizer]:
    stylize = config.stylize
    spec = stylizers.spec(stylize.backend)  # an unknown backend fails here, before any work
    fingerprint = stable_key(with_file_digests(dict(stylize.options)), length=12)
    options = {**stylize.options}
    options.update(_settings(spec, {"batch_size": stylize.batch_size}, stylize.options, "stylize"))
    load = partial(_create, spec, _options_json(options))
    return StageBackend(f"{stylize.backend}:{fingerprint}", load)


def build_styles(config: BuildConfig) -> list[StyleImage]:
    """The style images a build uses: its textures, at most `styles_per_texture` of each."""
    per_texture = config.stylize.styles_per_texture
    return [
        style
        for style in load_texture_library().styles(config.stylize.textures)
        if per_texture is None or style.index < per_texture
    ]


class Backends:
    """Everything a build's stages run with, resolved once from the parsed config.

    `Backends.of(config)` returns the same object for the same config in a process, so the
    flow, every shard task and the up-to-date check share fingerprints, styles and models.
    """

    def __init__(self, config: BuildConfig) -> None:
        self.config = config
        self.source: Source = create_source(config.source)
        self.classifier = StageBackend[Classifier](
            classifier_fingerprint(config.classifier), partial(load_classifier, config.classifier)
        )
        self.segmenter = _segmenter(config)
        self.stylizer = _stylizer(config)
        self.styles: list[StyleImage] = build_styles(config)
        # per-image inputs the stylizer takes besides the images (e.g. concept heights)
        self.stylizer_inputs = stylizers.spec(config.stylize.backend).inputs_for(
            config.stylize.options
        )
        self._style_pixels: dict[str, np.ndarray] = {}

    @classmethod
    def of(cls, config: BuildConfig) -> Backends:
        return _backends(config.model_dump_json())

    def fingerprints(self) -> list[str]:
        """The models' fingerprints: classifier, segmenter, stylizer."""
        return [self.classifier.id, self.segmenter.id, self.stylizer.id]

    def style_pixels(self, style: StyleImage) -> np.ndarray:
        """A style image's pixels, decoded (and checked against its sha256) once per process."""
        if style.style_id not in self._style_pixels:
            self._style_pixels[style.style_id] = load_style(style)
        return self._style_pixels[style.style_id]

    def __reduce__(self) -> tuple[Callable[[BuildConfig], Backends], tuple[BuildConfig]]:
        # a Dask worker rebuilds (and caches) its own from the config: models are never pickled
        return (Backends.of, (self.config,))


@lru_cache(maxsize=4)
def _backends(config_json: str) -> Backends:
    return Backends(BuildConfig.model_validate_json(config_json))
