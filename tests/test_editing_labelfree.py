"""Label-free cases, clipped and pooled errors corrected, selection toward the stronger edit,
and the error-case plan's disjoint splits (tiny synthetic builds, known answers)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from test_editing_eval import (
    CodeModel,
    StubClassifier,
    _hex,
    _to_tensor,
    coded,
    edit_config,
    remap_5_to_1,
)
from test_editing_eval import write_build as write_photo_build

from pipeline.cases import ANY_CLASS, EditCase, ErrorPlan, plan_error_cases, rank_pairs
from pipeline.edit_stats import parse_bits, pooled_errors_corrected
from pipeline.editing import select as select_module
from pipeline.editing.build_images import BuildImages, cf, image
from pipeline.editing.evaluate import case_exemplars, evaluate_case, references
from pipeline.editing.masks import mask_transform
from pipeline.editing.methods import Candidate, RewriteClosed
from pipeline.editing.metrics import errors_corrected
from pipeline.editing.predict import Predictor
from pipeline.editing.runner import (
    NoCasesError,
    case_image_ids,
    covariance_image_ids,
    resolve_cases,
)
from pipeline.report.edits import compare

SQUARE = np.zeros((8, 8), bool)
SQUARE[4:, :] = True


@pytest.fixture
def label_free_build(tmp_path):
    """Unlabelled photos: (clean code, counterfactual code); the stub predicts the code."""
    specs = {
        "t1": (1, 5),  # exemplar: wrong (5 vs its clean 1), fixed by remapping 5 -> 1
        "a": (1, 5),  # error, fixed
        "b": (2, 5),  # error, not fixed (5 -> 1, clean says 2)
        "c": (3, 3),  # right before and after
        "g": (5, 5),  # right before (5 = clean 5), broken: the edit sends 5 to 1
        "k1": (5, 5),  # heldout clean image whose top-1 the edit changes
        "k2": (3, 3),
        "u": (4, 4),  # in no split of the case: the only image for C
    }
    photos = [
        {
            "name": name,
            "label": None,
            "clean": coded(clean),
            "mask": SQUARE,
            "cfs": {"snow/0": coded(code)},
            "cf_preds": {"snow/0": code},
        }
        for name, (clean, code) in specs.items()
    ]
    store = write_photo_build(tmp_path / "build", photos)
    ids = {name: _hex("cf", name, "snow/0") for name in specs}
    case = EditCase(
        case_id="road-snow-any-test",
        concept="background",
        texture="snow",
        target_class=ANY_CLASS,
        train_style="snow/0",
        train=[ids["t1"]],
        test_groups={
            "target_train_style": [ids[n] for n in ("a", "b", "c")],
            "target_heldout_style": [],
            "other_train_style": [ids["g"]],
            "other_heldout_style": [],
        },
        validation=[],
        heldout=[_hex("image", "k1"), _hex("image", "k2")],
        seed=0,
        params={"label_free": True},
    )
    return store, case


def test_label_free_reference_is_the_clean_prediction(label_free_build):
    store, case = label_free_build
    data = BuildImages(store.root)
    model = CodeModel()
    predictor = Predictor(model, StubClassifier(model, _to_tensor()).preprocess, data)
    b = cf(_hex("cf", "b", "snow/0"))
    pre = predictor.predict([b, data.clean_of(b)])
    assert references(data, [b], pre) == {b: 2}  # its clean image's top-1, not the manifest's

    rows = {r["group"]: r for r in evaluate_case(predictor, case, remap_5_to_1()).rows}
    target = rows["target_train_style"]
    assert (target["n"], target["n_clean_correct"]) == (3, 3)  # label-free: every clean is right
    assert (target["e_pre"], target["e_post"]) == (2, 1)
    assert target["errors_corrected"] == pytest.approx(50.0)
    assert target["err_bits"] == "10 11 00"  # per image (a, b, c): error before, after
    assert target["dlogp"] > 0  # a moved to its reference with certainty
    other = rows["other_train_style"]
    assert (other["e_pre"], other["e_post"], other["new_errors"]) == (0, 1, 1)
    assert math.isnan(other["errors_corrected"]) and not other["measurable"]
    clean = rows["clean"]
    assert clean["acc_pre"] == pytest.approx(100.0) and clean["acc_post"] == pytest.approx(50.0)
    assert clean["lr"] == pytest.approx(50.0) and clean["clean_drop_pp"] == pytest.approx(50.0)
    assert rows["exemplars"]["sr"] == pytest.approx(100.0) and rows["exemplars"]["sr_n"] == 1
    # exemplar labels in a label-free case: the clean prediction, passed by the runner
    classifier = StubClassifier(model, _to_tensor())
    ex = case_exemplars(case, data, classifier.preprocess, mask_transform(classifier), labels=[1])
    assert ex.labels.tolist() == [1]


def test_errors_corrected_is_clipped_and_pooled():
    # E_pre = 1, E_post = 3: -200 % unclipped, reported as -100 %
    assert errors_corrected([1, 1, 1], [0, 1, 1], [0, 0, 0]) == pytest.approx(-100.0)
    # pooled over images: 4 errors before, 1 after -> 75 %, interval around it
    pre = [1, 1, 1, 1, 0, 0, 0, 0]
    post = [0, 0, 0, 1, 0, 0, 0, 0]
    value, low, high = pooled_errors_corrected(pre, post, n_boot=500)
    assert value == pytest.approx(75.0) and low <= value <= high and low < high
    assert all(math.isnan(v) for v in pooled_errors_corrected([0, 0], [1, 0]))
    a, b = parse_bits("10 11 01")
    assert a.tolist() == [True, True, False] and b.tolist() == [False, True, True]


def _row(case: str, group: str, e_pre: int, e_post: int, bits: str, measurable: bool) -> dict:
    return {
        "model_id": "m",
        "layer": "l",
        "method": "rewrite",
        "group": group,
        "case_id": case,
        "n": len(bits.split()),
        "e_pre": e_pre,
        "e_post": e_post,
        "errors_corrected": 100.0 * (e_pre - e_post) / e_pre if e_pre else math.nan,
        "gr": math.nan,
        "changed": 0.0,
        "dlogp": 0.5,
        "clean_drop_pp": 0.0,
        "sr": 100.0,
        "lr": 100.0,
        "val_drop_pp": 0.0,
        "select_s": 1.0,
        "edit_s": 1.0,
        "within_budget": True,
        "measurable": measurable,
        "err_bits": bits,
    }


def test_comparison_pools_counts_and_leaves_unmeasurable_cases_out_of_means():
    results = pd.DataFrame(
        [
            _row("c1", "other_train_style", 4, 1, "10 10 10 11 00", True),  # 75 %
            _row("c2", "other_train_style", 1, 1, "11 00", False),  # E_pre below the minimum
        ]
    )
    row = compare(results).iloc[0]
    assert (row["e_pre"], row["e_post"], row["n_pooled"]) == (5, 2, 7)
    assert row["ec_pooled"] == pytest.approx(60.0)  # (5 - 2) / 5, pooled over images
    assert row["errors_corrected"] == pytest.approx(75.0)  # c2 is not averaged
    assert row["errors_corrected_n"] == 1 and row["unmeasurable"] == 1
    assert row["ec_pooled_low"] <= 60.0 <= row["ec_pooled_high"]


def test_selection_prefers_the_stronger_of_two_tied_candidates():
    weak = select_module.Trial(Candidate({"s": 1}), 0.0, 100.0, -0.1, 0.1, 40.0, 1.0)
    strong = select_module.Trial(Candidate({"s": 2}), 0.0, 100.0, -0.9, 0.1, 40.0, 3.0)
    best, within = select_module.choose([weak, strong], 1.0)
    assert within and best is strong  # same errors corrected and exemplars: the stronger wins
    better = select_module.Trial(Candidate({"s": 3}), 0.5, 100.0, -0.1, 0.1, 60.0, 2.0)
    assert select_module.choose([weak, strong, better], 1.0)[0] is better  # more corrected
    too_costly = select_module.Trial(Candidate({"s": 4}), 2.0, 100.0, -0.1, 0.1, 90.0, 9.0)
    assert select_module.choose([weak, too_costly], 1.0)[0] is weak  # over the budget


def _manifest(labels: bool) -> tuple[pd.DataFrame, list[str]]:
    """40 photos with road in 2 snow styles; a photo's counterfactual is wrong when i % 3 != 0."""
    rows, images = [], []
    for i in range(40):
        image_id = _hex("image", i)
        images.append(image_id)
        label = (i % 2) + 1 if labels else None
        clean_pred = label if labels else 10 + i % 4
        for style in ("snow/0", "snow/1"):
            ref = clean_pred
            rows.append(
                {
                    "cf_id": _hex("cf", i, style),
                    "image_id": image_id,
                    "mask_id": _hex("mask", i),
                    "concept": "road",
                    "texture": "snow",
                    "style_image": style,
                    "label": label,
                    "clean_pred": clean_pred,
                    "cf_pred": ref if i % 3 == 0 else 99,
                    "kept": True,
                }
            )
    images += [_hex("image", f"empty-{i}") for i in range(10)]
    return pd.DataFrame(rows), sorted(images)


@pytest.mark.parametrize("labels", [True, False])
def test_error_cases_pick_wrong_exemplars_and_disjoint_splits(labels: bool):
    manifest, images = _manifest(labels)
    assert rank_pairs(manifest.assign(target=manifest["clean_pred"])) == [("road", "snow", 52)]
    (case,) = plan_error_cases(manifest, images, ErrorPlan(seed=0, n_train=3, val_frac=0.3))
    rows = manifest.set_index("cf_id")
    train = rows.loc[case.train]
    assert (train["cf_pred"] == 99).all() and train["image_id"].nunique() == 3
    assert (train["style_image"] == case.train_style).all()
    if labels:  # one class where labels allow
        assert train["label"].nunique() == 1 and case.target_class == train["label"].iloc[0]
    else:
        assert case.target_class == ANY_CLASS and case.params["label_free"]
    tested = {i for ids in case.test_groups.values() for i in ids}
    photos = lambda ids: set(rows.loc[list(ids), "image_id"])  # noqa: E731
    train_p, val_p, test_p = photos(case.train), photos(case.validation_cf), photos(tested)
    assert val_p and test_p and not (train_p & val_p or train_p & test_p or val_p & test_p)
    assert len(train_p | val_p | test_p) == 40  # every photo with the concept is used
    assert not set(case.validation) & set(case.heldout)
    assert not set(case.validation) & (test_p | train_p)  # clean selection images never tested
    assert not set(case.heldout) & (val_p | train_p)


def test_each_style_plans_one_case_per_style_image_with_the_others_held_out():
    manifest, images = _manifest(labels=False)
    (default,) = plan_error_cases(manifest, images, ErrorPlan(seed=0, n_train=3, val_frac=0.3))
    cases = plan_error_cases(
        manifest, images, ErrorPlan(seed=0, n_train=3, val_frac=0.3, each_style=True)
    )
    assert [c.train_style for c in cases] == ["snow/0", "snow/1"]
    assert len({c.case_id for c in cases}) == 2
    rows = manifest.set_index("cf_id")
    for case in cases:
        assert (rows.loc[case.train, "style_image"] == case.train_style).all()
        assert (rows.loc[case.train, "cf_pred"] == 99).all()
        for group, ids in case.test_groups.items():
            in_style = rows.loc[ids, "style_image"] == case.train_style
            assert in_style.all() if group.endswith("_train_style") else not in_style.any()
        tested = {i for ids in case.test_groups.values() for i in ids}
        assert not set(rows.loc[list(tested), "image_id"]) & set(rows.loc[case.train, "image_id"])
        assert not set(case.heldout) & set(case.validation)
    # the default plan is unchanged by the option's existence; max_pairs counts pairs
    assert plan_error_cases(manifest, images, ErrorPlan(seed=0, n_train=3, val_frac=0.3)) == [
        default
    ]
    assert len(plan_error_cases(manifest, images, ErrorPlan(each_style=True, max_pairs=1))) == 2


def test_covariance_images_avoid_every_case_image(tmp_path, label_free_build):
    store, case = label_free_build
    data = BuildImages(store.root)
    used = case_image_ids(data, [case])
    assert _hex("image", "k1") in used and _hex("image", "a") in used
    ids = covariance_image_ids(data, None, exclude=used)
    assert ids == [_hex("image", "u")]  # only the image no case uses
    assert covariance_image_ids(data, None, exclude=set(data.images["image_id"]))  # fallback


def test_a_build_without_cases_says_why(tmp_path):
    photos = [
        {
            "name": f"p{i}",
            "label": None,
            "clean": coded(1),
            "mask": SQUARE,
            "cfs": {"snow/0": coded(1)},
            "cf_preds": {"snow/0": 1},
            "clean_pred": 1,
        }
        for i in range(3)
    ]
    store = write_photo_build(tmp_path / "b", photos)
    with pytest.raises(NoCasesError, match="0 of them misclassified"):
        resolve_cases(store.root, plan="errors")
    assert issubclass(NoCasesError, ValueError)
    assert image("x").kind == "image" and torch.tensor([1]).item() == 1


def snowy_road_photos(rng: np.random.Generator) -> list[dict]:
    """12 unlabelled photos with a snowy left part; the build saw every odd one go wrong."""
    from test_editing_eval import photo

    mask = np.zeros((14, 20), bool)
    mask[:, :9] = True
    photos = []
    for index in range(12):
        clean = photo(rng, index % 3 + 1)
        snowy = clean.copy()
        snowy[mask] = (235, 235, 245)
        photos.append(
            {
                "name": f"p{index}",
                "label": None,
                "clean": clean,
                "mask": mask,
                "cfs": {"snow/0": snowy},
                "clean_pred": 1,
                "cf_preds": {"snow/0": 9 if index % 2 else 1},  # the build saw 6 errors
            }
        )
    return photos


def test_run_edits_plans_label_free_error_cases_end_to_end(tmp_path):
    from test_editing_eval import tiny_classifier

    from pipeline.editing import runner

    rng = np.random.default_rng(1)
    classifier = tiny_classifier()
    photos = snowy_road_photos(rng)
    store = write_photo_build(tmp_path / "build", photos)
    grids = {"finetune-local": [Candidate({"lr": 1e-2, "steps": 3})]}
    methods = ["rewrite-closed", "finetune-local"]
    config = edit_config(methods, grids, layer="mid", plan="errors")
    out = runner.run_edits(store.root, config, classifier=classifier)
    (case,) = runner.load_cases(store.root)
    assert case.params["plan"] == "errors" and case.params["label_free"]
    assert case.target_class == ANY_CLASS and len(case.train) == 3 and case.validation_cf
    results = pd.read_parquet(out / "results.parquet")
    # every candidate is evaluated: one row per method x candidate x part
    n_candidates = len(RewriteClosed.grid) + len(grids["finetune-local"])
    assert len(results) == n_candidates * 6 and results["label_free"].all()
    assert (results["n_validation_cf"] == len(case.validation_cf)).all()
    clean = results[results["group"] == "clean"]
    # label-free: every clean image is right before the edit, the drop is the share changed
    assert (clean["acc_pre"] == 100.0).all()
    assert np.allclose(clean["clean_drop_pp"], 100.0 - clean["lr"])
    compare(results)  # the comparison reads label-free results like any others


def test_a_small_build_gets_error_cases_with_fewer_exemplars(tmp_path):
    """The demo's case: 6 photos, at most 2 wrong ones share a style image. Strict planning
    finds nothing; the runner's plan accepts 2 exemplars; full cases keep their ids."""
    manifest, images = _manifest(labels=False)
    six = sorted(set(manifest["image_id"]))[:6]
    small = manifest[manifest["image_id"].isin(six)].copy()
    wrong_in_0 = small["style_image"].eq("snow/0") & small["image_id"].isin(six[1:3])
    small["cf_pred"] = np.where(wrong_in_0, 99, small["clean_pred"])  # 2 wrong, in snow/0
    assert plan_error_cases(small, six, ErrorPlan(n_train=3)) == []
    (case,) = plan_error_cases(small, six, ErrorPlan(n_train=3, min_train=1))
    rows = small.set_index("cf_id")
    assert len(case.train) == 2 and case.params["n_train_found"] == 2
    assert (rows.loc[case.train, "cf_pred"] == 99).all() and case.train_style == "snow/0"
    tested = {i for ids in case.test_groups.values() for i in ids}
    assert tested and not set(rows.loc[list(tested), "image_id"]) & set(six[1:3])
    assert plan_error_cases(small, six, ErrorPlan(n_train=3, min_train=3)) == []
    full = [c.case_id for c in plan_error_cases(manifest, images, ErrorPlan(n_train=3))]
    assert [c.case_id for c in plan_error_cases(manifest, images, ErrorPlan(min_train=1))] == full

    photos = [
        {
            "name": f"p{i}",
            "label": None,
            "clean": coded(1),
            "mask": SQUARE,
            "cfs": {"snow/0": coded(5 if i < 2 else 1)},
            "cf_preds": {"snow/0": 5 if i < 2 else 1},
            "clean_pred": 1,
        }
        for i in range(5)
    ]
    store = write_photo_build(tmp_path / "b", photos)
    (planned,) = resolve_cases(store.root, plan="auto")  # what `conceptswap edit` plans
    assert planned.params["plan"] == "errors" and len(planned.train) == 2


def test_camvid_defaults_hold_out_the_photos_the_error_plan_holds_out():
    """The benchmark's held-out count is the error plan's: 233 CamVid frames with 10
    exemplars at val_frac 0.1 keep 201 >= 200 held out (0.12 would keep 196); the 22 validation
    frames cannot grow to 200 without the held-out frames dropping below 200, so they stay."""
    import os
    from pathlib import Path

    from pipeline.cases.splits import error_split_sizes
    from pipeline.editing.config import EditConfig
    from pipeline.editing.methods import RewriteClosed

    os.environ.setdefault("BUILDS", "/tmp")
    camvid_config = EditConfig.from_yaml(
        Path(__file__).resolve().parents[1] / "configs" / "edit-camvid.yaml"
    )

    manifest, images = _manifest(False)
    (case,) = plan_error_cases(manifest, images, ErrorPlan(seed=0, n_train=3, val_frac=0.3))
    validated = set(manifest.set_index("cf_id").loc[case.validation_cf, "image_id"])
    split = error_split_sizes(40 - 3, 10, 0.3, 200)
    assert split.test_photos == 26 == 40 - 3 - len(validated)
    assert len(set(case.heldout) & set(manifest["image_id"])) == 26  # photos with the concept
    assert split.validation == len(case.validation) == case.params["n_validation"] == 16
    n, frac = camvid_config.plan.n_train, camvid_config.plan.val_frac
    camvid = error_split_sizes(233 - n, 0, frac, 200)
    assert camvid.heldout == 201 >= 200 and camvid.validation == 22
    assert error_split_sizes(233 - n, 0, 0.12, 200).heldout == 196 < 200
    scales = [c.scale for c in RewriteClosed.grid]
    assert min(scales) <= 0.05 and max(scales) > 1.0  # no change up past the closed form
