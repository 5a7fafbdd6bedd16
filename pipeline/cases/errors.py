"""Error cases: exemplars the model gets wrong, tests on every other image.

Class cases draw exemplars at random among kept counterfactuals, which the model mostly still
classifies right, so the edit has nothing to learn and the test groups few errors to correct.
Here a case is planned the way the paper's benchmark is:

- **exemplars** (`n_train`, default 3) are counterfactuals the build classifier gets *wrong*
  (`cf_pred` differs from the reference: the label, or for an unlabelled image its clean
  prediction), in one style image of the texture, each from a different photo, all of one
  class where labels allow (the class with most such errors); where no class has enough
  photos, or the images carry no labels, they come from one source of the whole build
  (`target_class = -1`, "any class");
- **test groups**: every other photo carrying the concept, except those drawn for validation,
  in the four groups of :data:`pipeline.cases.TEST_GROUPS` (target = the exemplars' classes);
- with `exemplar_styles: train` the exemplars are spread over the texture's declared training
  styles (:func:`pipeline.cases.styles.spread_exemplars`; `train_style` names those used, as
  "snow/0+snow/1"), the `*_train_style` groups hold the training styles, the `*_heldout_style`
  groups only the declared held-out ones, and the transformed validation images are in
  training styles only, so no choice of the edit ever sees a held-out style;
- `validation_cf`: the counterfactuals of a share (`val_frac`) of the remaining photos, for
  choosing hyper-parameters on *transformed* images (errors corrected);
- `validation` / `heldout` clean images: validation = the clean images of the validation
  photos plus half of the images without the concept; heldout = the clean images of the test
  photos plus the other half, so the clean accuracy is reported on every image the selection
  never saw (the test groups' clean images are never used for selection either). The
  validation grows to `min_validation` where the data allow (:func:`error_split_sizes`).

(concept, texture) pairs are ranked by the errors the texture induces (`max_pairs` keeps the
first ones). Everything is deterministic from the seed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from pipeline.cases.eligible import case_rng, eligible_counterfactuals, only_pairs
from pipeline.cases.plans import ErrorPlan
from pipeline.cases.records import ANY_CLASS, EditCase, new_case
from pipeline.cases.splits import error_split_sizes
from pipeline.cases.styles import require_splits, spread_exemplars


def induced_errors(rows: pd.DataFrame) -> pd.Series:
    """Boolean per eligible row: the counterfactual's top-1 differs from its reference."""
    pred = pd.to_numeric(rows["cf_pred"], errors="coerce")
    return pred.notna() & (pred != rows["target"].astype(float))


def rank_pairs(eligible: pd.DataFrame) -> list[tuple[str, str, int]]:
    """(concept, texture, induced errors), most errors first (ties by name)."""
    errors = eligible.assign(error=induced_errors(eligible))
    counts = errors.groupby(["concept", "texture"])["error"].sum()
    ranked = sorted(counts.items(), key=lambda kv: (-int(kv[1]), kv[0]))
    return [(str(c), str(t), int(n)) for (c, t), n in ranked]


def _pick_exemplars(
    rows: pd.DataFrame,
    n_train: int,
    rng: np.random.Generator,
    min_train: int | None = None,
    style: str | None = None,
) -> tuple[int, str, pd.DataFrame] | None:
    """(target, style, exemplar rows) among the wrong counterfactuals, or None.

    `n_train` exemplars if some style image (`style`, if given) has that many wrong photos,
    else (a small build, such as the offline demo's six photos) as many as the best style image
    has, down to `min_train` (default `n_train`: no fewer)."""
    if style is not None:
        rows = rows[rows["style_image"] == style]
    for n in range(n_train, min(n_train, max(1, min_train or n_train)) - 1, -1):
        found = _pick_n_exemplars(rows, n, rng)
        if found is not None:
            return found
    return None


def _pick_n_exemplars(
    rows: pd.DataFrame, n_train: int, rng: np.random.Generator
) -> tuple[int, str, pd.DataFrame] | None:
    wrong = rows[rows["error"]]
    labelled = rows["label"].notna().any()
    options: list[tuple[int, int, str]] = []  # (-error photos, target, style)
    if labelled:
        photos = wrong.groupby(["target", "style_image"])["image_id"].nunique()
        options = [(-int(n), int(t), str(s)) for (t, s), n in photos.items() if n >= n_train]
    if not options:  # one source: any class
        photos = wrong.groupby("style_image")["image_id"].nunique()
        options = [(-int(n), ANY_CLASS, str(s)) for s, n in photos.items() if n >= n_train]
    if not options:
        return None
    _, target, style = min(options)
    pool = wrong[wrong["style_image"] == style]
    if target != ANY_CLASS:
        pool = pool[pool["target"] == target]
    pool = pool.sort_values("cf_id", kind="stable").drop_duplicates("image_id")
    pool = pool.sort_values("image_id", kind="stable")
    picked = np.sort(rng.choice(len(pool), size=n_train, replace=False))
    return target, style, pool.iloc[picked]


def _pick_spread_exemplars(
    rows: pd.DataFrame,
    styles: Sequence[str],
    n_train: int,
    rng: np.random.Generator,
    min_train: int | None = None,
) -> tuple[int, pd.DataFrame] | None:
    """(target, exemplar rows) among the wrong counterfactuals in `styles`, spread over them,
    or None: the class with most wrong photos where labels allow, else any class; as many as
    `n_train`, down to `min_train` (default `n_train`)."""
    wrong = rows[rows["error"] & rows["style_image"].isin(list(styles))]
    labelled = rows["label"].notna().any()
    for n in range(n_train, min(n_train, max(1, min_train or n_train)) - 1, -1):
        options: list[tuple[int, int]] = []  # (-error photos, target)
        if labelled:
            photos = wrong.groupby("target")["image_id"].nunique()
            options = [(-int(k), int(t)) for t, k in photos.items() if k >= n]
        if not options and wrong["image_id"].nunique() >= n:  # one source: any class
            options = [(-int(wrong["image_id"].nunique()), ANY_CLASS)]
        if not options:
            continue
        _, target = min(options)
        pool = wrong if target == ANY_CLASS else wrong[wrong["target"] == target]
        picked = spread_exemplars(pool, styles, n, rng)
        if picked is not None:
            return target, picked
    return None


def make_error_case(
    rows: pd.DataFrame,
    image_ids: Sequence[str],
    concept: str,
    texture: str,
    plan: ErrorPlan | None = None,
    style: str | None = None,
    style_splits: Mapping[str, str] | None = None,
) -> EditCase | None:
    """The error case of one (concept, texture); None if impossible (fewer than `min_train`
    wrong photos — default `n_train` — in every style image, or in the training styles with
    `exemplar_styles: train`, or fewer than `min_test` test counterfactuals in all).

    Args:
        rows: eligible counterfactuals of (concept, texture), with their `target`.
        image_ids: every image of the build (the images without the concept are clean-only).
        concept: the case's concept.
        texture: the case's texture.
        plan: the settings (default: `ErrorPlan()`).
        style: exemplars in that style image (default: the one with most wrong photos), drawn
            with a generator of their own.
        style_splits: `style_id → "train" | "heldout"`, the build's declared splits
            (:func:`pipeline.cases.styles.read_style_splits`); needed by
            `exemplar_styles: train`.

    Raises:
        ValueError: `exemplar_styles: train` and a style image without a declared split.
    """
    plan = plan or ErrorPlan()
    rows = rows.assign(error=induced_errors(rows))
    declared = plan.exemplar_styles == "train"
    spread = declared and style is None
    side = pd.Series("", index=rows.index)
    if declared:
        splits = dict(style_splits or {})
        require_splits(splits, rows["style_image"], "the counterfactual manifest")
        side = rows["style_image"].astype(str).map(splits)
        if style is not None and splits.get(style) != "train":
            raise ValueError(f"exemplar_styles: train: {style} is not a training style")
    if spread:
        styles = sorted(set(rows.loc[side == "train", "style_image"].astype(str)))
        rng = case_rng(plan.seed, "errors", concept, texture, "train-styles")
        spread_found = _pick_spread_exemplars(rows, styles, plan.n_train, rng, plan.min_train)
        if spread_found is None:
            return None
        target, train_rows = spread_found
        style = "+".join(sorted(set(train_rows["style_image"].astype(str))))
        in_train_style, in_heldout_style = side == "train", side == "heldout"
    else:
        rng = case_rng(
            plan.seed, "errors", concept, texture, *([style] if style is not None else [])
        )
        found = _pick_exemplars(rows, plan.n_train, rng, plan.min_train, style)
        if found is None:
            return None
        target, style, train_rows = found
        in_train_style = rows["style_image"] == style
        # declared splits: the other training styles are in neither group
        in_heldout_style = side == "heldout" if declared else ~in_train_style
    train_images = set(train_rows["image_id"])
    classes = set(train_rows["target"].astype(int))
    photos = sorted(set(rows["image_id"]) - train_images)
    order = [photos[i] for i in rng.permutation(len(photos))]
    # images without the concept: clean-only, shared between the two clean splits
    others = sorted(set(image_ids) - set(rows["image_id"]))
    other_order = [others[i] for i in rng.permutation(len(others))]
    sizes = error_split_sizes(len(photos), len(others), plan.val_frac, plan.min_validation)
    val_photos = set(order[: sizes.validation_photos])
    test_photos = set(order[sizes.validation_photos :])
    validation = sorted(val_photos | set(other_order[: sizes.validation_others]))
    heldout = sorted(test_photos | set(other_order[sizes.validation_others :]))

    is_test = rows["image_id"].isin(test_photos)
    is_target = rows["target"].astype(int).isin(classes)
    masks = {
        "target_train_style": is_test & is_target & in_train_style,
        "target_heldout_style": is_test & is_target & in_heldout_style,
        "other_train_style": is_test & ~is_target & in_train_style,
        "other_heldout_style": is_test & ~is_target & in_heldout_style,
    }
    groups = {name: sorted(rows.loc[mask, "cf_id"]) for name, mask in masks.items()}
    if sum(len(ids) for ids in groups.values()) < max(1, plan.min_test):
        return None
    is_validation = rows["image_id"].isin(val_photos)
    if declared:  # the choices of the edit never see a held-out style either
        is_validation &= side == "train"
    validation_cf = sorted(rows.loc[is_validation, "cf_id"])
    train = sorted(train_rows["cf_id"])
    params = {
        "plan": "errors",
        "n_train": plan.n_train,
        "val_frac": plan.val_frac,
        "min_test": plan.min_test,
        "label_free": not bool(rows["label"].notna().any()),
        "exemplar_classes": sorted(classes),
        "induced_errors": int(rows["error"].sum()),
        "min_validation": plan.min_validation,
        "n_validation": len(validation),
    }
    if len(train) < plan.n_train:  # fewer wrong photos than asked for (ids of full cases same)
        params["n_train_found"] = len(train)
    if declared:  # only then: the ids of `one` cases stay what they were
        params["exemplar_styles"] = "train"
        params["heldout_styles"] = sorted(set(rows.loc[in_heldout_style, "style_image"]))
    return new_case(
        concept,
        texture,
        int(target),
        style,
        train,
        groups,
        validation,
        heldout,
        plan.seed,
        params,
        validation_cf=validation_cf,
    )


def plan_error_cases(
    manifest: pd.DataFrame,
    image_ids: Sequence[str],
    plan: ErrorPlan | None = None,
    style_splits: Mapping[str, str] | None = None,
) -> list[EditCase]:
    """One error case per (concept, texture) — per (concept, texture, style image) with
    `each_style`, each with its exemplars in that style and the other style images held out,
    so a result does not hang on which style image happened to induce most errors — pairs
    ranked by induced errors (most first). With `exemplar_styles: train`, `each_style` plans
    the style-transfer matrix: the case across the training styles, then one per training
    style, every one tested on the declared held-out styles.

    Args:
        manifest: the build's counterfactual manifest.
        image_ids: every image of the build.
        plan: the settings (default: `ErrorPlan()`).
        style_splits: the declared split of each style image (`style_id → "train" |
            "heldout"`), needed by `exemplar_styles: train`.

    Raises:
        ValueError: `exemplar_styles: train` and a style image without a declared split.
    """
    plan = plan or ErrorPlan()
    if manifest.empty:
        return []
    eligible = only_pairs(eligible_counterfactuals(manifest), plan.concepts, plan.textures)
    if plan.exemplar_styles == "train":
        require_splits(style_splits, eligible["style_image"], "the counterfactual manifest")
    cases: list[EditCase] = []
    pairs = 0
    for concept, texture, _ in rank_pairs(eligible):
        rows = eligible[(eligible["concept"] == concept) & (eligible["texture"] == texture)]
        styles: list[str | None] = [None]
        if plan.each_style:
            styles = sorted(set(rows["style_image"].astype(str)))
            if plan.exemplar_styles == "train":  # the matrix: across them, then each alone
                styles = [None, *(s for s in styles if (style_splits or {})[s] == "train")]
        found = 0
        for style in styles:
            case = make_error_case(rows, image_ids, concept, texture, plan, style, style_splits)
            if case is not None:
                cases.append(case)
                found += 1
        pairs += found > 0
        if plan.max_pairs is not None and pairs >= plan.max_pairs:
            break
    return cases
