"""Case plans: one pydantic model per way of planning edit cases, told apart by `kind`.

- `classes` (:class:`ClassPlan`): one case per (concept, texture, class), random exemplars of
  the class;
- `errors` (:class:`ErrorPlan`): one case per (concept, texture) — or per style image — with
  exemplars the build's classifier gets wrong and every other photo tested; with
  `exemplar_styles: train` the exemplars come from the texture's declared training styles and
  only its declared held-out styles are tested as "held-out";
- `groups` (:class:`GroupPlan`): one case per (concept, texture, class group), for data with
  too few photos of one class (one photo per ImageNet class).

Unknown keys and out-of-range values are errors naming the field, like the build config. Every
plan asks for `min_validation` clean validation images (default 200, so that one image is at
most 0.5 pp and a 1 pp budget can be resolved); where the data cannot give that many, the case
records how many it got (`params["n_validation"]`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_validator

from pipeline.cases.class_groups import GROUP_RULES, class_group

DEFAULT_MIN_VALIDATION = 200


class PlanBase(BaseModel):
    """Settings every plan shares."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    seed: int = Field(default=0, ge=0)
    n_train: int = Field(default=3, ge=1)  # exemplars per case
    min_test: int = Field(default=1, ge=0)  # counterfactuals a test group needs
    concepts: list[str] | None = None  # plan only these concepts (default: all)
    textures: list[str] | None = None  # plan only these textures (default: all)
    # clean validation images asked for; the split grows to this where the data allow
    min_validation: int = Field(default=DEFAULT_MIN_VALIDATION, ge=0)


class ClassPlan(PlanBase):
    """One case per (concept, texture, class) with `n_train` random exemplars of the class;
    `clean_frac` of the images outside the target class are clean (half validation, half
    heldout), the rest other-class tests."""

    kind: Literal["classes"] = "classes"
    clean_frac: float = Field(default=0.5, ge=0.0, le=1.0)


class GroupPlan(PlanBase):
    """Like :class:`ClassPlan` with a group of classes as the target: `groups` maps a name to
    its ImageNet class indices, or lists concept names resolved through the WordNet validity
    table with `rules` (`dog` → the 130 canine classes)."""

    kind: Literal["groups"] = "groups"
    clean_frac: float = Field(default=0.5, ge=0.0, le=1.0)
    groups: dict[str, list[int]] = Field(min_length=1)
    rules: list[str] = Field(default_factory=lambda: list(GROUP_RULES), min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _resolve_group_names(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and isinstance(data.get("groups"), (list, tuple)):
            rules = data.get("rules") or GROUP_RULES
            try:
                groups = {name: class_group(name, rules) for name in data["groups"]}
            except KeyError as error:
                raise ValueError(f"groups: {error.args[0]}") from None
            data = {**data, "groups": groups}
        return data

    @model_validator(mode="after")
    def _check_groups(self) -> GroupPlan:
        owner: dict[int, str] = {}
        for name, classes in self.groups.items():
            if not classes:
                raise ValueError(f"groups.{name} has no classes")
            for cls in classes:
                if cls in owner:
                    raise ValueError(f"groups: class {cls} is in {owner[cls]!r} and {name!r}")
                owner[cls] = name
        return self


class ErrorPlan(PlanBase):
    """One case per (concept, texture) — per style image with `each_style` — whose exemplars
    the classifier gets wrong; `val_frac` of the other photos validate (transformed), the rest
    are tested; pairs ranked by induced errors, `max_pairs` first ones kept.

    `exemplar_styles`: `one` draws the exemplars from one style image and holds out the
    texture's other style images; `train` draws them round-robin across the texture's declared
    training styles (:mod:`pipeline.stylize.library`) and holds out only its declared held-out
    styles, so "held-out style" means a style that no exemplar and no validation image used;
    with `each_style` too, also one case per training style (the style-transfer matrix)."""

    kind: Literal["errors"] = "errors"
    val_frac: float = Field(default=0.3, ge=0.0, lt=1.0)
    max_pairs: int | None = Field(default=None, ge=1)
    # accept as few exemplars when no style image has n_train wrong photos (None: n_train)
    min_train: int | None = Field(default=None, ge=1)
    each_style: bool = False
    exemplar_styles: Literal["one", "train"] = "one"

    @model_validator(mode="after")
    def _check_min_train(self) -> ErrorPlan:
        if self.min_train is not None and self.min_train > self.n_train:
            raise ValueError(
                f"min_train ({self.min_train}) must not exceed n_train ({self.n_train})"
            )
        return self


Plan = Annotated[Union[ClassPlan, ErrorPlan, GroupPlan], Field(discriminator="kind")]  # noqa: UP007
PLAN_KINDS = ("classes", "errors", "groups")
_PLAN = TypeAdapter(Plan)


def parse_plan(plan: Plan | Mapping[str, Any]) -> ClassPlan | ErrorPlan | GroupPlan:
    """A plan from its YAML/JSON form (`{"kind": "errors", "n_train": 10, ...}`); a plan
    object is returned as it is.

    Args:
        plan: a plan, or a mapping with a `kind` of `classes`, `errors` or `groups` and that
            plan's settings.

    Raises:
        pydantic.ValidationError: an unknown kind or key, or a value out of range (the error
            names the field).
    """
    if isinstance(plan, (ClassPlan, ErrorPlan, GroupPlan)):
        return plan
    return _PLAN.validate_python(dict(plan))
