"""The edit experiment's config: one declaration of what `conceptswap edit -c edit.yaml` runs.

The plan of the cases (with their seed), the model and its layer, the methods with their
grids, the budget, the key statistics' image sets and the locality sets, like `BuildConfig`
for a build: unknown keys are errors, values are range-checked, and the whole file is
validated before any work starts. `configs/edit-*.yaml` hold the benchmarks' setups.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from pipeline.cases.plans import Plan
from pipeline.config import ConfigError, expand_path, load_yaml_mapping

DEFAULT_MODEL = "timm:tf_efficientnet_lite0"
DEFAULT_METHOD_NAMES = ("rewrite", "rewrite-closed", "finetune-local", "finetune-global")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


ImageSet = Annotated[str, AfterValidator(expand_path)]


class MethodConfig(_Section):
    """One method: its registry name, fixed settings, and optionally its own grid (a list of
    candidate settings, each may carry a `scale`; default: the method's grid)."""

    name: str
    settings: dict[str, Any] = Field(default_factory=dict)
    grid: list[dict[str, Any]] | None = Field(default=None, min_length=1)

    @field_validator("name")
    @classmethod
    def _known(cls, name: str) -> str:
        from pipeline.editing.methods import available_methods

        if name not in available_methods():
            raise ValueError(f"unknown edit method {name!r}; known: {available_methods()}")
        return name


class CovarianceConfig(_Section):
    """The image sets of the key statistics `C`: builds, image folders or `hf:` datasets,
    mixed with equal weights (empty: the build's images no case uses); `views`: `windows`
    adds each non-square image's two end squares."""

    images: list[ImageSet] = Field(default_factory=list)
    views: Literal["center", "windows"] = "center"


class LocalityConfig(_Section):
    """Where locality is measured besides the cases' held-out clean images: labelled general
    sets (a folder with class-name or synset sub-folders, or `hf:NAME[@SPLIT][#IMAGE]`),
    accuracy and top-1 unchanged per candidate; `limit` images of each at most."""

    general: list[ImageSet] = Field(default_factory=list)
    label_column: str = "label"
    limit: int | None = Field(default=None, ge=1)


class EditConfig(_Section):
    """Everything an edit experiment needs besides the build it runs on."""

    model: str = DEFAULT_MODEL
    model_options: dict[str, Any] = Field(default_factory=dict)
    layer: str | None = None  # default: a late dense layer of the model
    device: str = "auto"
    # a plan with its settings (the cases are planned with it), or a kind with its defaults
    # used when BUILD/cases holds no cases of that kind (`auto`: classes, else errors)
    plan: Plan | Literal["auto", "classes", "errors"] = "auto"
    cases: list[str] | None = None  # only these case ids
    methods: list[MethodConfig] = Field(
        default_factory=lambda: [MethodConfig(name=n) for n in DEFAULT_METHOD_NAMES],
        min_length=1,
    )
    budget_pp: float = Field(default=1.0, ge=0.0, allow_inf_nan=False)
    covariance: CovarianceConfig = Field(default_factory=CovarianceConfig)
    locality: LocalityConfig = Field(default_factory=LocalityConfig)
    min_e_pre: int = Field(default=5, ge=0)  # fewer errors before: the group is unmeasurable
    # every grid candidate on the test groups (each method's curve); false: the selected one
    # only (a single point per method, what a quick check needs)
    curves: bool = True
    batch_size: int = Field(default=32, ge=1)
    feature_cache_mb: int = Field(default=2048, ge=0)

    @model_validator(mode="before")
    @classmethod
    def _shorthand_methods(cls, data: Any) -> Any:
        """`methods: [rewrite-closed, finetune-local]` is short for `[{name: ...}, ...]`."""
        if isinstance(data, Mapping) and isinstance(data.get("methods"), list):
            methods = [{"name": m} if isinstance(m, str) else m for m in data["methods"]]
            data = {**data, "methods": methods}
        return data

    @model_validator(mode="after")
    def _unique_methods(self) -> EditConfig:
        names = [m.name for m in self.methods]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"methods listed twice: {repeated}")
        return self

    @property
    def method_names(self) -> list[str]:
        return [m.name for m in self.methods]

    @classmethod
    def from_yaml(cls, path: str | Path) -> EditConfig:
        """Read and validate an edit config; errors are `ConfigError`s naming the file."""
        return load_yaml_mapping(path, cls)

    def overridden(self, **changes: Any) -> EditConfig:
        """This config with CLI overrides (`None` values ignored), validated again."""
        data = self.model_dump()
        data.update({k: v for k, v in changes.items() if v is not None})
        try:
            return EditConfig.model_validate(data)
        except ValidationError as error:
            raise ConfigError(f"edit config is invalid:\n{error}", error) from None
