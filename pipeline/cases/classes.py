"""Class cases: one per (concept, texture, class), exemplars drawn at random.

Only counterfactuals the build kept and whose clean image is classified correctly are used (for
an unlabelled image the clean prediction is the reference class, so it counts as correct). No
source image appears both in `train` and in a test group: exclusion is by image id, not only by
counterfactual id, since the same photo re-textured with another style image is no test of
generalisation. Target-class test images therefore need `n_train + 1` or more photos of the class.

Everything is deterministic from the seed: candidates are sorted by id and drawn with a numpy
Generator seeded from (seed, concept, texture, target class), so one case does not change when
another appears.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from pipeline.cases.eligible import case_rng, eligible_counterfactuals, only_pairs
from pipeline.cases.plans import DEFAULT_MIN_VALIDATION, ClassPlan
from pipeline.cases.records import EditCase, new_case
from pipeline.cases.splits import class_split_sizes


def _one_per_image(rows: pd.DataFrame) -> pd.DataFrame:
    """The first counterfactual (by id) of each source image."""
    return rows.sort_values("cf_id", kind="stable").drop_duplicates("image_id")


def make_case(
    rows: pd.DataFrame,
    image_ids: Sequence[str],
    concept: str,
    texture: str,
    target: int,
    seed: int = 0,
    n_train: int = 3,
    min_test: int = 1,
    clean_frac: float = 0.5,
    min_validation: int = DEFAULT_MIN_VALIDATION,
    plan: str = "classes",
) -> EditCase | None:
    """One case from the eligible counterfactuals of (concept, texture); None if impossible.

    Args:
        rows: eligible counterfactuals of one (concept, texture), with their `target`.
        image_ids: all images of the build (the pool for the clean splits).
        concept: the case's concept.
        texture: the case's texture.
        target: the target class (a group's negative id for group cases).
        seed: seed of every draw.
        n_train: exemplars; impossible where no style image has that many target photos.
        min_test: counterfactuals each test group needs; impossible where one has fewer.
        clean_frac: share of the pool (images neither train nor target class) held clean.
        min_validation: clean validation images asked for (see :mod:`pipeline.cases.splits`).
        plan: the plan kind recorded in `params`.
    """
    rng = case_rng(seed, concept, texture, target)
    target_rows = rows[rows["target"] == target]
    photos_per_style = target_rows.groupby("style_image")["image_id"].nunique()
    styles = sorted(photos_per_style[photos_per_style >= n_train].index)
    if not styles:
        return None
    train_style = styles[int(rng.integers(len(styles)))]
    candidates = _one_per_image(target_rows[target_rows["style_image"] == train_style])
    candidates = candidates.sort_values("image_id", kind="stable")
    picked = np.sort(rng.choice(len(candidates), size=n_train, replace=False))
    train_rows = candidates.iloc[picked]
    train_images = set(train_rows["image_id"])

    # clean splits: a random share of the images that are neither train nor target-class tests
    target_images = set(target_rows["image_id"])
    pool = sorted(set(image_ids) - train_images - target_images)
    order = [pool[i] for i in rng.permutation(len(pool))]
    sizes = class_split_sizes(len(pool), clean_frac, min_validation)
    n_clean = sizes.validation + sizes.heldout
    validation = sorted(
        order[: sizes.validation] + order[n_clean : n_clean + sizes.extra_validation]
    )
    heldout = sorted(order[sizes.validation : n_clean])
    test_images = set(order[n_clean + sizes.extra_validation :])

    in_train_style = rows["style_image"] == train_style
    is_target = rows["target"] == target
    target_test = is_target & ~rows["image_id"].isin(train_images)
    other_test = ~is_target & rows["image_id"].isin(test_images)
    masks = {
        "target_train_style": target_test & in_train_style,
        "target_heldout_style": target_test & ~in_train_style,
        "other_train_style": other_test & in_train_style,
        "other_heldout_style": other_test & ~in_train_style,
    }
    groups = {name: sorted(rows.loc[mask, "cf_id"]) for name, mask in masks.items()}
    if min(len(ids) for ids in groups.values()) < min_test:
        return None
    train = sorted(train_rows["cf_id"])
    params = {
        "plan": plan,
        "n_train": n_train,
        "min_test": min_test,
        "clean_frac": clean_frac,
        "min_validation": min_validation,
        "n_validation": len(validation),
    }
    return new_case(
        concept, texture, int(target), train_style, train, groups, validation, heldout, seed, params
    )


def plan_class_cases(
    manifest: pd.DataFrame, image_ids: Sequence[str], plan: ClassPlan | None = None
) -> list[EditCase]:
    """Every possible class case of a counterfactual manifest, sorted by (concept, texture,
    class).

    Args:
        manifest: the build's counterfactual manifest.
        image_ids: every image of the build.
        plan: the settings (default: `ClassPlan()`).
    """
    plan = plan or ClassPlan()
    if manifest.empty:
        return []
    eligible = only_pairs(eligible_counterfactuals(manifest), plan.concepts, plan.textures)
    cases = []
    for (concept, texture), rows in eligible.groupby(["concept", "texture"], sort=True):
        for target in sorted(rows["target"].unique()):
            case = make_case(
                rows,
                image_ids,
                str(concept),
                str(texture),
                int(target),
                plan.seed,
                plan.n_train,
                plan.min_test,
                plan.clean_frac,
                plan.min_validation,
            )
            if case is not None:
                cases.append(case)
    return cases
