"""Group cases: the target is a *group* of ImageNet classes (all dogs, all birds, ...).

A case for one target class needs `n_train + 1` or more photos of that class. A dataset with
one photo per class (the ImageNet sample folder) has none, so the edit is asked of a group of
related classes instead: the exemplars are dog photos of three breeds, the target test groups
are photos of the other breeds, and "correct" still means that the prediction equals each
image's own label (a beagle must stay a beagle, not become "some dog").

Groups come from WordNet through the committed concept-class validity table
(:mod:`pipeline.segment.validity`): the ImageNet classes that *are* a vocabulary concept (rule
`class-is-concept`), e.g. `dog` → the 130 classes under canine.n.02 (151–280, dogs, wolves,
foxes), `bird` → 59 classes, `cat` → 13. :func:`plan_group_cases` relabels the manifest's
`target` column with a group id and calls the class planner's :func:`make_case`; everything
else (splits, disjointness by photo, determinism) is the single-class logic unchanged. A
grouped case's `target_class` is a negative id (`-1 - index` of the group), never a class
index; `params` records `target_group` and `target_classes`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import pandas as pd

from pipeline.cases.classes import make_case
from pipeline.cases.eligible import eligible_counterfactuals, only_pairs
from pipeline.cases.plans import GroupPlan
from pipeline.cases.records import EditCase, case_slug


def group_case(case: EditCase, name: str, classes: Sequence[int]) -> EditCase:
    """Name a case planned on a relabelled manifest after its group."""
    params = {**case.params, "target_group": name, "target_classes": sorted(map(int, classes))}
    digest = case.case_id.rsplit("-", 1)[-1]
    slug = case_slug(f"{case.concept}-{case.texture}-{name}")
    return dataclasses.replace(case, case_id=f"{slug}-{digest}", params=params)


def plan_group_cases(
    manifest: pd.DataFrame, image_ids: Sequence[str], plan: GroupPlan
) -> list[EditCase]:
    """One case per (concept, texture, group) where possible, sorted like the class plan.

    Rows of a group's classes get the group's id as `target`; the other rows keep their own
    class and serve as the "other classes" test groups and the clean pool.

    Args:
        manifest: the build's counterfactual manifest.
        image_ids: every image of the build.
        plan: the settings, with the groups (which never overlap).
    """
    if manifest.empty:
        return []
    eligible = only_pairs(eligible_counterfactuals(manifest), plan.concepts, plan.textures)
    names = list(plan.groups)
    group_of = {
        int(cls): -1 - index for index, name in enumerate(names) for cls in plan.groups[name]
    }
    eligible = eligible.copy()
    eligible["target"] = eligible["target"].map(lambda t: group_of.get(int(t), int(t)))
    cases = []
    for (concept, texture), rows in eligible.groupby(["concept", "texture"], sort=True):
        for index, name in enumerate(names):
            case = make_case(
                rows,
                image_ids,
                str(concept),
                str(texture),
                -1 - index,
                plan.seed,
                plan.n_train,
                plan.min_test,
                plan.clean_frac,
                plan.min_validation,
                plan="groups",
            )
            if case is not None:
                cases.append(group_case(case, name, plan.groups[name]))
    return cases
