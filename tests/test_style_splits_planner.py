"""Error cases over the declared training styles, and the style-transfer matrix.

Given a texture whose styles declare a train / held-out split, an error plan with
`exemplar_styles: train` spreads its exemplars over the training styles and tests as held-out
only the declared held-out styles; the per-style breakdown of an evaluation and the matrix over
cases count exactly what the results table counts.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError
from test_cases import write_build as write_manifest_build
from test_editing_eval import _hex, edit_config, photo, tiny_classifier
from test_editing_eval import write_build as write_photo_build

from pipeline.cases import (
    TEST_GROUPS,
    ErrorPlan,
    parse_plan,
    plan_cases,
    plan_error_cases,
    plan_manifest,
    read_style_splits,
)
from pipeline.cases.styles import spread_exemplars
from pipeline.edit_styles import SEVERAL, pool_by_style, style_transfer_matrix
from pipeline.editing.methods import Candidate
from pipeline.records import StyleImage
from pipeline.store import BuildStore
from pipeline.store.manifest import records_to_table, write_table

SPLITS = {"snow/0": "train", "snow/1": "train", "snow/2": "heldout", "snow/3": "heldout"}
TRAIN = {s for s, side in SPLITS.items() if side == "train"}
HELDOUT = {s for s, side in SPLITS.items() if side == "heldout"}


def style_manifest(labels: bool, n_photos: int = 40) -> tuple[pd.DataFrame, list[str]]:
    """`n_photos` photos with road in four snow styles (two training, two held-out); a photo's
    counterfactuals are wrong when i % 3 != 0; ten images without road."""
    rows, images = [], []
    for i in range(n_photos):
        image_id = _hex("image", i)
        images.append(image_id)
        label = (i % 2) + 1 if labels else None
        clean_pred = label if labels else 10 + i % 4
        for style in SPLITS:
            rows.append(
                {
                    "cf_id": _hex("cf", i, style),
                    "image_id": image_id,
                    "mask_id": _hex("mask", i),
                    "stylized_id": _hex("stylized", i, style),
                    "concept": "road",
                    "texture": "snow",
                    "style_image": style,
                    "blend": 0.8,
                    "area_frac": 0.5,
                    "label": label,
                    "path": "counterfactuals/00/00.png",
                    "clean_pred": clean_pred,
                    "cf_pred": clean_pred if i % 3 == 0 else 99,
                    "kept": True,
                }
            )
    images += [_hex("image", f"empty-{i}") for i in range(10)]
    return pd.DataFrame(rows), sorted(images)


def write_styles(store: BuildStore, splits: dict[str, str]) -> None:
    records = [
        StyleImage(style, "snow", int(style[-1]), "0" * 64, f"/t/{style}.jpg", "CC0", "", split)
        for style, split in splits.items()
    ]
    write_table(store.manifest_path("styles"), records_to_table("styles", records))


TRAIN_PLAN = ErrorPlan(seed=0, n_train=4, val_frac=0.3, min_validation=0, exemplar_styles="train")


# -- the planner -------------------------------------------------------------------------------
@pytest.mark.parametrize("labels", [True, False])
def test_exemplars_spread_over_training_styles_and_heldout_means_declared(labels: bool):
    manifest, images = style_manifest(labels)
    (case,) = plan_error_cases(manifest, images, TRAIN_PLAN, SPLITS)
    rows = manifest.set_index("cf_id")
    train = rows.loc[case.train]
    # exemplars: wrong, one per photo, across both training styles and only those
    assert (train["cf_pred"] == 99).all() and train["image_id"].nunique() == 4
    assert set(train["style_image"]) == TRAIN and (train["style_image"].value_counts() == 2).all()
    assert case.train_style == "snow/0+snow/1"
    assert case.params["exemplar_styles"] == "train"
    assert case.params["heldout_styles"] == ["snow/2", "snow/3"]
    photos = lambda ids: set(rows.loc[list(ids), "image_id"])  # noqa: E731
    exemplar_photos, validation_photos = photos(case.train), photos(case.validation_cf)
    for group in TEST_GROUPS:
        styles = set(rows.loc[case.test_groups[group], "style_image"])
        assert styles <= (HELDOUT if group.endswith("_heldout_style") else TRAIN), group
        assert not photos(case.test_groups[group]) & (exemplar_photos | validation_photos)
    # every test photo's held-out counterfactuals are tested as held-out, and only those
    tested = photos(i for ids in case.test_groups.values() for i in ids)
    heldout_ids = case.test_groups["target_heldout_style"] + case.test_groups["other_heldout_style"]
    expected = rows[rows["image_id"].isin(tested) & rows["style_image"].isin(HELDOUT)]
    assert sorted(heldout_ids) == sorted(expected.index)
    assert case.test_groups["target_heldout_style"]
    # nothing the edit's choices see is in a held-out style
    assert validation_photos and set(rows.loc[case.validation_cf, "style_image"]) <= TRAIN
    assert len(exemplar_photos | validation_photos | tested) == 40


def test_the_train_plan_is_deterministic_and_leaves_the_one_plan_as_it_was():
    manifest, images = style_manifest(labels=True)
    first = plan_error_cases(manifest, images, TRAIN_PLAN, SPLITS)
    assert plan_error_cases(manifest, images, TRAIN_PLAN, SPLITS) == first
    other = plan_error_cases(manifest, images, TRAIN_PLAN.model_copy(update={"seed": 1}), SPLITS)
    assert other[0].train != first[0].train
    # `one` (the default) ignores the splits: the same cases with or without them
    one = ErrorPlan(seed=0, n_train=4, val_frac=0.3, min_validation=0)
    assert one.exemplar_styles == "one"
    (plain,) = plan_error_cases(manifest, images, one)
    assert plan_error_cases(manifest, images, one, SPLITS) == [plain]
    assert "+" not in plain.train_style and "exemplar_styles" not in plain.params


@pytest.mark.parametrize("seed", range(8))
def test_spread_uses_as_many_styles_as_the_photos_allow(seed: int):
    rng = np.random.default_rng(seed)
    # p1 is wrong in A and B, p2 only in B: a greedy B-first draw of p1 would leave A empty
    wrong = pd.DataFrame(
        {
            "cf_id": ["a1", "b1", "b2"],
            "image_id": ["p1", "p1", "p2"],
            "style_image": ["A", "B", "B"],
        }
    )
    picked = spread_exemplars(wrong, ["A", "B"], 2, rng)
    assert picked is not None and sorted(picked["cf_id"]) == ["a1", "b2"]
    assert spread_exemplars(wrong, ["A", "B"], 3, rng) is None  # two photos only
    # three styles with many photos each: six exemplars, two per style, six photos
    many = pd.DataFrame(
        [
            {"cf_id": f"{s}{p}", "image_id": f"p{p}", "style_image": s}
            for s in "XYZ"
            for p in range(10)
        ]
    )
    six = spread_exemplars(many, ["X", "Y", "Z"], 6, rng)
    assert six is not None and six["image_id"].nunique() == 6
    assert six["style_image"].value_counts().to_dict() == {"X": 2, "Y": 2, "Z": 2}


# -- refusals ----------------------------------------------------------------------------------
def test_each_style_with_train_styles_plans_the_style_transfer_matrix():
    manifest, images = style_manifest(labels=False)
    plan = ErrorPlan(n_train=4, each_style=True, exemplar_styles="train")
    cases = plan_error_cases(manifest, images, plan, SPLITS)
    train_styles = sorted(s for s, side in SPLITS.items() if side == "train")
    heldout = {s for s, side in SPLITS.items() if side == "heldout"}
    # the case across the training styles, then one per training style
    assert [c.train_style for c in cases] == ["+".join(train_styles), *train_styles]
    styles = manifest.set_index("cf_id")["style_image"]
    for case in cases:
        used = set(case.train_style.split("+"))
        assert {styles[i] for i in case.train} == used
        # every case is tested on the declared held-out styles only, and validated off them
        for group in ("target_heldout_style", "other_heldout_style"):
            assert {styles[i] for i in case.test_groups[group]} <= heldout
        tested = case.test_groups["target_heldout_style"] + case.test_groups["other_heldout_style"]
        assert {styles[i] for i in tested} == heldout
        for group in ("target_train_style", "other_train_style"):
            assert {styles[i] for i in case.test_groups[group]} <= used
        assert not {styles[i] for i in case.validation_cf} & heldout
    with pytest.raises(ValueError, match="is not a training style"):
        from pipeline.cases.errors import make_error_case

        rows = manifest.assign(target=manifest["clean_pred"])
        make_error_case(rows, images, "road", "snow", plan, sorted(heldout)[0], SPLITS)


def test_an_unknown_exemplar_styles_value_is_refused():
    with pytest.raises(ValidationError, match="exemplar_styles"):
        parse_plan({"kind": "errors", "exemplar_styles": "heldout"})
    assert parse_plan({"kind": "errors", "exemplar_styles": "train"}) == ErrorPlan(
        exemplar_styles="train"
    )


def test_a_build_without_declared_splits_is_asked_to_rebuild(tmp_path):
    manifest, images = style_manifest(labels=True, n_photos=12)
    with pytest.raises(ValueError, match=r"no declared train/heldout split.*snow/0"):
        plan_error_cases(manifest, images, TRAIN_PLAN)
    with pytest.raises(ValueError, match="snow/3"):
        plan_error_cases(manifest, images, TRAIN_PLAN, {**SPLITS, "snow/3": ""})
    store = write_manifest_build(tmp_path / "old", manifest, images)
    for splits in (None, dict.fromkeys(SPLITS, "")):  # no styles manifest; made before splits
        if splits is not None:
            write_styles(store, splits)
        with pytest.raises(ValueError, match=rf"build {re.escape(str(store.root))}.*rebuild"):
            plan_cases(store, TRAIN_PLAN)
    # a styles manifest written before the split column existed reads as undeclared
    write_styles(store, SPLITS)
    older = pq.read_table(store.manifest_path("styles")).drop(["split"])
    pq.write_table(older, store.manifest_path("styles"))
    assert read_style_splits(store) == dict.fromkeys(SPLITS, "")
    with pytest.raises(ValueError, match="rebuild"):
        plan_cases(store, TRAIN_PLAN)
    assert plan_cases(store, ErrorPlan(n_train=3))  # the `one` plan needs no splits


def test_plan_cases_reads_the_builds_declared_splits(tmp_path):
    manifest, images = style_manifest(labels=False)
    store = write_manifest_build(tmp_path / "build", manifest, images)
    write_styles(store, SPLITS)
    assert read_style_splits(store) == SPLITS
    cases = plan_cases(store, TRAIN_PLAN.model_dump())
    assert cases == plan_manifest(manifest, images, TRAIN_PLAN, SPLITS)
    assert [c.train_style for c in cases] == ["snow/0+snow/1"]


# -- per-style pooling -------------------------------------------------------------------------
def test_pooling_by_style_counts_exactly():
    def outcome(group, style, clean, pre, post):
        names = ("group", "style_image", "clean_correct", "correct_pre", "correct_post")
        return dict(zip(names, (group, style, clean, pre, post), strict=True))

    held, trained = "target_heldout_style", "target_train_style"
    outcomes = pd.DataFrame(
        [
            outcome(held, "snow/2", True, False, True),  # error, corrected
            outcome(held, "snow/2", True, False, False),  # error, not corrected
            outcome(held, "snow/2", False, False, True),  # clean image wrong: not counted
            outcome(held, "snow/2", True, True, True),
            outcome(held, "snow/3", True, False, False),  # error, not corrected
            outcome(held, "snow/3", True, True, False),  # a new error
            outcome(held, "snow/3", True, True, False),  # another: clipped at -100
            outcome(trained, "snow/0", True, True, True),  # nothing to correct
            outcome("other_heldout_style", "snow/2", True, False, True),  # not a target group
        ]
    )
    pooled = pool_by_style(outcomes).set_index(["group", "style_image"])
    assert list(pooled.index) == [(held, "snow/2"), (held, "snow/3"), (trained, "snow/0")]
    snow2, snow3, snow0 = (pooled.loc[k] for k in pooled.index)
    assert (snow2["n"], snow2["n_clean_correct"], snow2["e_pre"], snow2["e_post"]) == (4, 3, 2, 1)
    assert snow2["errors_corrected"] == pytest.approx(50.0)
    assert (snow3["e_pre"], snow3["e_post"], snow3["errors_corrected"]) == (1, 3, -100.0)
    assert (snow0["e_pre"], snow0["e_post"]) == (0, 0) and math.isnan(snow0["errors_corrected"])


def test_the_matrix_pools_cases_per_exemplar_style():
    def row(case, train_style, style, e_pre, e_post, selected=True, method="m"):
        return {
            **{"case_id": case, "concept": "road", "texture": "snow", "method": method},
            **{"train_style": train_style, "group": "target_heldout_style"},
            **{"style_image": style, "selected": selected, "e_pre": e_pre, "e_post": e_post},
        }

    frame = pd.DataFrame(
        [
            row("c0", "snow/0", "snow/2", 4, 1),
            row("c0", "snow/0", "snow/10", 2, 2),
            row("c0", "snow/0", "snow/2", 9, 0, selected=False),  # another candidate
            row("c1", "snow/0+snow/1", "snow/2", 3, 3),
            row("c2", "snow/0+snow/1", "snow/2", 1, 0),  # a second case of the same row
            row("c3", "snow/1", "snow/2", 5, 0, method="other"),
        ]
    )
    matrix = style_transfer_matrix(frame, "m")
    assert list(matrix.index) == ["snow/0", SEVERAL] and list(matrix.columns) == [
        "snow/2",
        "snow/10",
    ]
    assert matrix.loc["snow/0", "snow/2"] == pytest.approx(75.0)
    assert matrix.loc["snow/0", "snow/10"] == 0.0
    assert matrix.loc[SEVERAL, "snow/2"] == pytest.approx(25.0)  # (4 - 3) / 4 pooled
    assert math.isnan(matrix.loc[SEVERAL, "snow/10"])
    counts = style_transfer_matrix(frame, "m", values="e_pre")
    assert counts.loc[SEVERAL, "snow/2"] == 4 and counts.loc["snow/0", "snow/2"] == 4
    cases = style_transfer_matrix(frame, "m", values="n_cases")
    assert cases.loc[SEVERAL, "snow/2"] == 2
    with pytest.raises(ValueError, match="name one"):
        style_transfer_matrix(frame.assign(texture=["snow", "rain"] * 3), "m")


# -- the matrix of a tiny run ------------------------------------------------------------------
def write_three_style_build(root) -> BuildStore:
    """15 unlabelled photos in three snow styles (0 and 1 training, 2 held-out) painted over
    most of the photo, so that the tiny model's top-1 changes on some; the manifest says every
    counterfactual is wrong."""
    rng = np.random.default_rng(0)
    mask = np.zeros((14, 20), bool)
    mask[:, :12] = True
    colours = {"snow/0": (235, 235, 245), "snow/1": (20, 210, 255), "snow/2": (250, 20, 20)}
    photos = []
    for index in range(15):
        clean = photo(rng, index % 3 + 1)
        cfs = {}
        for style, colour in colours.items():
            cfs[style] = clean.copy()
            cfs[style][mask] = colour
        photos.append(
            {
                **{"name": f"p{index}", "label": None, "clean": clean, "mask": mask, "cfs": cfs},
                **{"clean_pred": 1, "cf_preds": dict.fromkeys(colours, 9)},
            }
        )
    store = write_photo_build(root, photos)
    write_styles(store, {"snow/0": "train", "snow/1": "train", "snow/2": "heldout"})
    return store


def test_a_tiny_run_writes_per_style_outcomes_and_the_matrix(tmp_path):
    from pipeline.editing import runner
    from pipeline.report.edits import write_comparison
    from pipeline.report.style_matrix import write_style_matrix
    from pipeline.store.edit_results import read_results
    from pipeline.store.style_outcomes import read_style_outcomes

    store = write_three_style_build(tmp_path / "build")
    manifest = store.frame("counterfactuals")
    images = sorted(store.frame("images", ["image_id"])["image_id"])
    splits = read_style_splits(store)
    one = plan_manifest(manifest, images, ErrorPlan(n_train=3, each_style=True), splits)
    (spread,) = plan_manifest(
        manifest, images, ErrorPlan(n_train=3, exemplar_styles="train"), splits
    )
    assert [c.train_style for c in one] == ["snow/0", "snow/1", "snow/2"]
    assert spread.train_style == "snow/0+snow/1"
    grids = {"rewrite-closed": [Candidate({"rank": 1}, s) for s in (0.5, 1.0)]}
    config = edit_config(["rewrite-closed"], grids, layer="mid")
    out = runner.run_edits(store.root, config, cases=[*one, spread], classifier=tiny_classifier())
    results = read_results(out / "results.parquet")
    styles = read_style_outcomes(out / "style_outcomes.parquet")
    # the per-style counts add up to the results' counts of each target group
    key = ["case_id", "candidate_index", "group"]
    summed = styles.groupby(key)[["n", "e_pre", "e_post"]].sum()
    target = results[results["group"].isin(summed.index.get_level_values("group"))]
    target = target[target["n"] > 0].set_index(key)[["n", "e_pre", "e_post"]]
    pd.testing.assert_frame_equal(summed.sort_index(), target.sort_index(), check_dtype=False)
    assert set(styles["run_key"]) == set(results["run_key"])

    matrix = style_transfer_matrix(styles, "rewrite-closed")
    e_pre = style_transfer_matrix(styles, "rewrite-closed", values="e_pre")
    assert list(matrix.index) == ["snow/0", "snow/1", "snow/2", SEVERAL]
    assert list(matrix.columns) == ["snow/0", "snow/1", "snow/2"]
    assert all(math.isnan(e_pre.loc[s, s]) for s in ("snow/0", "snow/1", "snow/2"))
    assert e_pre.loc[SEVERAL, ["snow/0", "snow/1"]].isna().all()  # never held out there
    selected = results[results["selected"] & (results["group"] == "target_heldout_style")]
    held = selected.set_index("case_id")
    spread_row = held.loc[spread.case_id]
    assert e_pre.loc[SEVERAL, "snow/2"] == spread_row["e_pre"] > 0
    np.testing.assert_equal(matrix.loc[SEVERAL, "snow/2"], spread_row["errors_corrected"])
    for case in one:  # each row's held-out cells add up to its case's held-out group
        assert e_pre.loc[case.train_style].sum() == held.loc[case.case_id, "e_pre"]
    assert e_pre.stack().sum() > 10  # the tiny model does err on these styles

    write_comparison(store.root)
    assert (out / "style_matrix.png").is_file()
    assert (
        "Style transfer: background → snow, rewrite-closed" in (out / "comparison.md").read_text()
    )
    # cases of one exemplar style only: no matrix, and no figure left behind
    only_spread = results[results["case_id"] == spread.case_id]
    assert write_style_matrix(out, only_spread) == ""
    assert not (out / "style_matrix.png").exists()
