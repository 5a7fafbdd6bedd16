"""Build configuration: one pydantic model per stage, read from YAML, written back resolved.

Unknown keys are errors (a typo must not silently fall back to a default). `BuildConfig.demo()`
is the offline default profile: built-in sample photos, `cam` segmentation, `texture`
stylization, `timm:tf_efficientnet_lite0`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

# where a build goes when no output directory is given: data/builds/<name>
DEFAULT_BUILDS_DIR = Path("data/builds")


class StageConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceConfig(StageConfig):
    """Where images come from. `kind` selects the source; the other fields apply to some kinds."""

    kind: Literal["samples", "folder", "huggingface"] = "samples"
    names: list[str] | None = None  # samples: which built-in photos (default: all)
    path: str | None = None  # folder: root (recursive); huggingface: local dataset path
    dataset: str | None = None  # huggingface: `load_dataset` name
    dataset_config: str | None = None
    split: str = "train"
    image_column: str = "image"
    label_column: str | None = None
    label_names: Literal["imagenet", "dataset"] = "imagenet"
    limit: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _check_kind(self) -> SourceConfig:
        if self.kind == "folder" and not self.path:
            raise ValueError("source.kind 'folder' needs source.path")
        if self.kind == "huggingface" and not (self.dataset or self.path):
            raise ValueError("source.kind 'huggingface' needs source.dataset or source.path")
        return self


class ImageConfig(StageConfig):
    max_side: int = Field(default=384, ge=32, le=4096)  # working resolution of the build
    max_pixels: int = Field(default=64_000_000, ge=1)  # decompression-bomb guard


class SegmentConfig(StageConfig):
    backend: str = "cam"
    concepts: list[str] = Field(default_factory=lambda: ["object", "background"])
    options: dict[str, Any] = Field(default_factory=dict)
    batch_size: int = Field(default=8, ge=1)
    min_score: float = Field(default=0.0, ge=0.0, le=1.0)
    min_area: float = Field(default=0.02, ge=0.0, le=1.0)
    max_area: float = Field(default=0.95, ge=0.0, le=1.0)
    dilation: int = Field(default=0, ge=0)  # grow every mask by this many pixels
    # instances of one concept in one image are always merged (union, max score): the build
    # keeps one mask per (image, concept)


class StylizeConfig(StageConfig):
    backend: str = "texture"
    textures: list[str] = Field(default_factory=lambda: ["snow", "wood", "brick", "grass"])
    styles_per_texture: int | None = Field(default=None, ge=1)  # None: every style image
    options: dict[str, Any] = Field(default_factory=dict)
    batch_size: int = Field(default=16, ge=1)


class TransformConfig(StageConfig):
    blend: float = Field(default=0.8, ge=0.0, le=1.0)  # share of stylized pixels in the mask
    feather: float = Field(default=0.0, ge=0.0)  # Gaussian sigma (px) of the mask edge; 0 = hard


class ClassifierConfig(StageConfig):
    name: str = "timm:tf_efficientnet_lite0"
    options: dict[str, Any] = Field(default_factory=dict)
    batch_size: int = Field(default=32, ge=1)
    topk: int = Field(default=5, ge=1)
    device: str = "auto"
    # what runs the no-gradient passes: `auto` (default) times ONNX Runtime and torch once per
    # machine and weights and keeps the faster, reused by every later load there
    # (pipeline.classify.engines, engine_choice); `torch` / `onnxruntime` choose one; `eager` is
    # plain torch at `batch_size`. Not part of any id: the engines agree to 1e-5 in the stored
    # probabilities (ids and verdicts equal)
    engine: Literal["eager", "auto", "torch", "onnxruntime"] = "auto"


class FilterConfig(StageConfig):
    require_clean_correct: bool = True  # labelled sources: the clean image must be right
    require_change: bool = False  # keep only counterfactuals whose prediction changed


class BuildConfig(StageConfig):
    name: str = "demo"
    seed: int = 0
    shard_size: int = Field(default=32, ge=1)
    source: SourceConfig = SourceConfig()
    image: ImageConfig = ImageConfig()
    segment: SegmentConfig = SegmentConfig()
    stylize: StylizeConfig = StylizeConfig()
    transform: TransformConfig = TransformConfig()
    classifier: ClassifierConfig = ClassifierConfig()
    filter: FilterConfig = FilterConfig()

    @field_validator("name")
    @classmethod
    def _safe_name(cls, value: str) -> str:
        if not value or "/" in value or value.startswith("."):
            raise ValueError(f"build name {value!r} must be a plain folder name")
        return value

    @classmethod
    def demo(cls) -> BuildConfig:
        """The offline demo: every built-in photo, whole-image concepts plus a few parts, and
        the first three styles of each default texture (a held-out one among them)."""
        concepts = ["background", "object", "wheel", "helmet", "cup"]
        return cls(
            segment=SegmentConfig(concepts=concepts), stylize=StylizeConfig(styles_per_texture=3)
        )

    @classmethod
    def from_yaml(cls, path: str | Path) -> BuildConfig:
        # a build.yaml can be used as a config: its `resolved` section is set aside
        return load_yaml_mapping(path, cls, ignore=("resolved",))

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


_VARIABLE = re.compile(r"\$(\w+)|\$\{(\w+)\}")


def expand_path(spec: str) -> str:
    """`~` and `$VAR` / `${VAR}` in a path of a config (an image set, a locator), so that one
    config serves every machine (`${BUILDS}/camvid-val`); an unset variable is an error, never
    an empty string."""
    unset = [a or b for a, b in _VARIABLE.findall(spec) if (a or b) not in os.environ]
    if unset:
        raise ValueError(f"{spec!r}: environment variable {unset[0]} is not set")
    return os.path.expanduser(os.path.expandvars(spec))


class ConfigError(ValueError):
    """A config that cannot be read or validated; the message names the file.

    `validation` keeps pydantic's error when the YAML parsed but did not validate, so that a
    front end can report one line per key (`pipeline.validate.load_build_config`)."""

    def __init__(self, message: str, validation: ValidationError | None = None) -> None:
        super().__init__(message)
        self.validation = validation


Model = TypeVar("Model", bound=BaseModel)


def load_yaml_mapping(path: str | Path, model: type[Model], ignore: Sequence[str] = ()) -> Model:
    """Read a YAML mapping from `path` and validate it as `model` (the one parser of every
    config file: build, edit, ...); every failure is a `ConfigError` naming the file."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as error:
        raise ConfigError(f"cannot read config {path}: {error.strerror or error}") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None)
        reason = f": {problem}" if problem else ""
        raise ConfigError(f"config {path} is not valid YAML{at}{reason}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config {path} must be a mapping, found {type(data).__name__}")
    for key in ignore:
        data.pop(key, None)
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise ConfigError(f"config {path} is invalid:\n{error}", validation=error) from None
