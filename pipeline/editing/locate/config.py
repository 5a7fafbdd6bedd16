"""The meta-training config: what `conceptswap train-locator -c locator.yaml` runs.

Unknown keys are errors, values are range-checked, and `${VAR}` in paths is expanded (an unset
variable is an error), as in the edit config. `configs/locator-*.yaml` hold the measured setups.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from pipeline.config import load_yaml_mapping
from pipeline.editing.config import DEFAULT_MODEL, ImageSet


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _pair(value: Any) -> tuple[str, str]:
    """`[concept, texture]` or `"concept/texture"` as a pair."""
    if isinstance(value, str) and value.count("/") == 1:
        value = value.split("/")
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise ValueError(f"a pair is [concept, texture] or 'concept/texture', got {value!r}")
    return (str(value[0]), str(value[1]))


class LossWeights(_Section):
    """Weights of the outer loss's terms."""

    generalisation: float = Field(default=1.0, ge=0.0)
    locality: float = Field(default=1.0, ge=0.0)
    sparsity: float = Field(default=0.1, ge=0.0)


class LocatorConfig(_Section):
    """Everything meta-training needs: model, builds and pairs, episodes, the two loops."""

    model: str = DEFAULT_MODEL
    model_options: dict[str, Any] = Field(default_factory=dict)
    device: str = "cpu"
    builds: list[ImageSet] = Field(min_length=1)
    out: ImageSet  # the artifact's folder
    pairs: list[tuple[str, str]] | None = None  # default: every pair but the test pairs
    test_pairs: list[tuple[str, str]] = Field(default_factory=list)
    architecture: str | None = None  # default: the first registered one that matches
    blocks: int = Field(default=2, ge=1)  # the last K blocks hold the groups
    # episodes
    n_exemplars: int = Field(default=3, ge=1)
    n_pseudo: int = Field(default=8, ge=1)
    n_locality: int = Field(default=16, ge=1)
    max_per_pair: int = Field(default=64, ge=2)
    max_locality: int = Field(default=256, ge=1)
    # the inner loop (SGD on the masked groups) and the outer loop (Adam on the locator)
    inner_steps: int = Field(default=1, ge=1)
    inner_lr: float = Field(default=1e-2, gt=0.0)
    sparsity: float = Field(default=0.95, ge=0.0, lt=1.0)  # of the masks during training
    temperature: float = Field(default=1.0, gt=0.0)  # of the straight-through relaxation
    steps: int = Field(default=300, ge=1)
    episodes_per_step: int = Field(default=2, ge=1)
    lr: float = Field(default=1e-3, gt=0.0)
    hidden: int = Field(default=256, ge=1)
    weights: LossWeights = Field(default_factory=LossWeights)
    seed: int = Field(default=0, ge=0)
    batch_size: int = Field(default=32, ge=1)

    @field_validator("pairs", "test_pairs", mode="before")
    @classmethod
    def _pairs(cls, value: Any) -> Any:
        return None if value is None else [_pair(item) for item in value]

    @classmethod
    def from_yaml(cls, path: str | Path) -> LocatorConfig:
        """Read and validate a locator config; errors are `ConfigError`s naming the file."""
        return load_yaml_mapping(path, cls)
