"""Edit test cases: one planner behind :func:`plan_cases`, three ways of planning.

    from pipeline.cases import plan_cases
    cases = plan_cases("data/builds/demo", {"kind": "errors", "n_train": 3, "val_frac": 0.3})

A plan (:mod:`pipeline.cases.plans`) is `classes` (random exemplars of one class), `errors`
(exemplars the classifier gets wrong) or `groups` (a group of classes as the target). The
planners are pure functions of a counterfactual manifest, the build's image ids and, for an
error plan over the declared training styles, the styles' splits (:func:`plan_manifest`;
:mod:`pipeline.cases.styles`); :func:`plan_cases` reads a build, plans and writes `BUILD/cases/`.
The photo sets a benchmark builds from (a covariance set disjoint from every case) are
:mod:`pipeline.cases.splits`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline.cases.class_groups import class_group
from pipeline.cases.classes import make_case, plan_class_cases
from pipeline.cases.eligible import eligible_counterfactuals
from pipeline.cases.errors import induced_errors, make_error_case, plan_error_cases, rank_pairs
from pipeline.cases.groups import plan_group_cases
from pipeline.cases.plans import (
    DEFAULT_MIN_VALIDATION,
    PLAN_KINDS,
    ClassPlan,
    ErrorPlan,
    GroupPlan,
    Plan,
    parse_plan,
)
from pipeline.cases.records import (
    ANY_CLASS,
    CASES_DIR,
    CLEAN,
    EXEMPLARS,
    RESULT_GROUPS,
    TEST_GROUPS,
    EditCase,
    case_slug,
    load_case,
    load_cases,
    new_case,
    write_cases,
)
from pipeline.cases.styles import read_style_splits, require_splits
from pipeline.store import BuildStore

__all__ = [
    "ANY_CLASS",
    "CASES_DIR",
    "CLEAN",
    "DEFAULT_MIN_VALIDATION",
    "EXEMPLARS",
    "PLAN_KINDS",
    "RESULT_GROUPS",
    "TEST_GROUPS",
    "ClassPlan",
    "EditCase",
    "ErrorPlan",
    "GroupPlan",
    "Plan",
    "case_slug",
    "class_group",
    "eligible_counterfactuals",
    "induced_errors",
    "load_case",
    "load_cases",
    "make_case",
    "make_error_case",
    "new_case",
    "parse_plan",
    "plan_cases",
    "plan_class_cases",
    "plan_error_cases",
    "plan_group_cases",
    "plan_manifest",
    "rank_pairs",
    "read_style_splits",
    "write_cases",
]


def plan_manifest(
    manifest: pd.DataFrame,
    image_ids: Sequence[str],
    plan: Plan | Mapping[str, Any],
    style_splits: Mapping[str, str] | None = None,
) -> list[EditCase]:
    """The cases of a counterfactual manifest under `plan`, without reading or writing a build.

    Args:
        manifest: the build's counterfactual manifest (one row per counterfactual).
        image_ids: every image of the build (the pool of the clean splits).
        plan: a plan object or its mapping form (`{"kind": "classes", ...}`).
        style_splits: the declared split of each style image (:func:`read_style_splits`),
            needed by an error plan with `exemplar_styles: train`.
    """
    plan = parse_plan(plan)
    if isinstance(plan, ErrorPlan):
        return plan_error_cases(manifest, image_ids, plan, style_splits)
    if isinstance(plan, GroupPlan):
        return plan_group_cases(manifest, image_ids, plan)
    return plan_class_cases(manifest, image_ids, plan)


def plan_cases(
    build: str | Path | BuildStore, plan: Plan | Mapping[str, Any] | None = None
) -> list[EditCase]:
    """Plan the cases of a build and write each to `BUILD/cases/<case_id>.json` atomically.

    Case files of an earlier plan that this one does not produce (another seed, setting or
    kind) are removed, so `BUILD/cases/` always holds one consistent set; a re-run with the
    same plan rewrites nothing.

    Args:
        build: a build directory or its store.
        plan: a plan object or its mapping form (default: `ClassPlan()`).

    Returns:
        The cases, in the planner's order.

    Raises:
        ValueError: an error plan with `exemplar_styles: train` on a build whose styles
            manifest declares no split (made before splits were declared: rebuild it).
    """
    store = build if isinstance(build, BuildStore) else BuildStore(build)
    plan = parse_plan(plan or ClassPlan())
    manifest = store.frame("counterfactuals")
    images = store.frame("images", columns=["image_id"])
    splits = read_style_splits(store)
    if isinstance(plan, ErrorPlan) and plan.exemplar_styles == "train":
        kept = manifest.loc[manifest["kept"].astype(bool), "style_image"]
        require_splits(splits, kept, f"build {store.root}")
    cases = plan_manifest(manifest, sorted(images["image_id"]), plan, splits)
    return write_cases(store.root, cases)
