"""The case planner: plan configs, dispatch by kind, the clean validation split's size, and the
photo splits that keep the key statistics' images out of every case."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from pydantic import ValidationError
from test_cases import make_manifest, write_build

from pipeline.cases import (
    ClassPlan,
    ErrorPlan,
    GroupPlan,
    load_cases,
    parse_plan,
    plan_cases,
    plan_class_cases,
    plan_error_cases,
    plan_manifest,
)
from pipeline.cases.splits import (
    choose_photos,
    class_split_sizes,
    covariance_split,
    error_split_sizes,
    grow_validation,
    split_for_covariance,
)
from pipeline.hashing import stable_key


def _id(*parts: object) -> str:
    return stable_key(*parts, length=32)


def photo_manifest(n_photos: int, n_others: int = 0, labels: bool = False) -> tuple:
    """`n_photos` photos with the concept in two style images, every counterfactual wrong
    (label or clean prediction `c`, prediction 99), plus `n_others` images without it."""
    rows, images = [], []
    for i in range(n_photos):
        image = _id("image", i)
        images.append(image)
        label = i % 4 if labels else None
        for style in ("snow/0", "snow/1"):
            rows.append(
                {
                    "cf_id": _id("cf", i, style),
                    "image_id": image,
                    "concept": "road",
                    "texture": "snow",
                    "style_image": style,
                    "label": label,
                    "clean_pred": i % 4,
                    "cf_pred": 99,
                    "kept": True,
                }
            )
    images += [_id("other", i) for i in range(n_others)]
    return pd.DataFrame(rows), sorted(images)


def photos_of(manifest: pd.DataFrame, cf_ids) -> set[str]:
    return set(manifest.set_index("cf_id").loc[list(cf_ids), "image_id"])


# -- plan configs ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"kind": "errors", "n_trian": 3}, "n_trian", "Extra inputs"),
        ({"kind": "classes", "clean_frac": 1.5}, "clean_frac", "less than or equal to 1"),
        ({"kind": "errors", "val_frac": 1.0}, "val_frac", "less than 1"),
        ({"kind": "errors", "n_train": 0}, "n_train", "greater than or equal to 1"),
        ({"kind": "classes", "min_validation": -1}, "min_validation", "greater than or equal"),
        ({"kind": "errors", "n_train": 3, "min_train": 5}, "min_train", "must not exceed"),
        ({"kind": "everything"}, "kind", "does not match"),
        ({"kind": "groups", "groups": {"a": [1, 2], "b": [2]}}, "groups", "class 2 is in"),
        ({"kind": "groups", "groups": {}}, "groups", "at least 1"),
    ],
)
def test_a_bad_plan_is_an_error_naming_the_field(data: dict, field: str, message: str):
    with pytest.raises(ValidationError) as error:
        parse_plan(data)
    text = str(error.value)
    assert field in text and message in text, text


def test_plans_read_from_their_mapping_form_with_defaults():
    plan = parse_plan({"kind": "errors", "n_train": 10, "val_frac": 0.1, "each_style": True})
    assert isinstance(plan, ErrorPlan) and plan.n_train == 10 and plan.min_validation == 200
    assert parse_plan(plan) is plan
    assert isinstance(parse_plan({"kind": "classes"}), ClassPlan)
    dogs = parse_plan({"kind": "groups", "groups": ["dog"]})  # names resolved through WordNet
    assert isinstance(dogs, GroupPlan) and len(dogs.groups["dog"]) == 130
    assert parse_plan(dogs.model_dump()) == dogs  # the resolved form reads back the same
    with pytest.raises(ValidationError, match="no ImageNet classes"):
        parse_plan({"kind": "groups", "groups": ["road"]})


# -- dispatch ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "plan",
    [ClassPlan(n_train=3), ErrorPlan(n_train=3), GroupPlan(groups={"low": [1, 2]}, n_train=3)],
    ids=lambda plan: plan.kind,
)
def test_plan_cases_dispatches_on_the_kind_and_writes_the_set(tmp_path: Path, plan):
    manifest, images = make_manifest()
    store = write_build(tmp_path / "build", manifest, images)
    cases = plan_cases(store.root, plan.model_dump())
    assert cases and {case.params["plan"] for case in cases} == {plan.kind}
    assert cases == plan_manifest(manifest, images, plan)  # the pure planner, same answer
    assert load_cases(store.root) == sorted(cases, key=lambda c: c.case_id)
    if plan.kind == "groups":
        assert [c.params["target_group"] for c in cases] == ["low"]
        assert all(c.target_class == -1 for c in cases)
    if plan.kind == "errors":
        assert all("validation_cf" in json.loads(c.to_json()) for c in cases)
    # another kind replaces the set: the folder never mixes plans
    other = plan_cases(store, ErrorPlan() if plan.kind != "errors" else ClassPlan())
    assert load_cases(store.root) == sorted(other, key=lambda c: c.case_id)


# -- the clean validation split ----------------------------------------------------------------
def test_validation_grows_only_where_every_donor_keeps_as_many():
    assert grow_validation(10, [87], 40) == [30]  # 87 - 30 = 57 >= 40
    assert grow_validation(10, [87], 60) is None  # 87 - 50 = 37 < 60: nothing moves
    assert grow_validation(10, [45, 80], 40) == [5, 25]  # heldout first, then the tests
    assert grow_validation(50, [10], 40) is None  # already enough
    assert class_split_sizes(100, 0.5, 200) == class_split_sizes(100, 0.5, 0)  # small: as ever
    assert error_split_sizes(37, 10, 0.3, 200) == error_split_sizes(37, 10, 0.3, 0)


@pytest.mark.parametrize("labels", [False, True])
def test_error_plan_honours_min_validation_and_records_the_count(labels: bool):
    manifest, images = photo_manifest(100, n_others=6, labels=labels)
    # 97 photos besides the 3 exemplars: 10 validate, 87 are tested; 3 + 3 others
    (small,) = plan_error_cases(manifest, images, ErrorPlan(val_frac=0.1, min_validation=70))
    assert len(small.validation) == small.params["n_validation"] == 10 + 3  # cannot grow
    assert small.params["min_validation"] == 70
    (grown,) = plan_error_cases(manifest, images, ErrorPlan(val_frac=0.1, min_validation=40))
    assert len(grown.validation) == grown.params["n_validation"] == 40
    assert len(grown.heldout) >= 40
    # the others go first (3 more), then test photos (40 - 16 = 24 more validation photos)
    assert len(photos_of(manifest, grown.validation_cf)) == 10 + 24
    assert not set(grown.validation) & set(grown.heldout)
    tested = photos_of(manifest, [i for ids in grown.test_groups.values() for i in ids])
    assert not tested & set(grown.validation) and len(tested) == 87 - 24
    assert not photos_of(manifest, grown.train) & (tested | set(grown.validation))
    again = plan_error_cases(manifest, images, ErrorPlan(val_frac=0.1, min_validation=40))
    assert again == [grown]  # deterministic for a seed


def test_class_plan_honours_min_validation_and_records_the_count():
    manifest, images = photo_manifest(12, labels=True)  # classes 0-3, 3 photos each
    images = sorted([*images, *(_id("plain", i) for i in range(100))])
    plan = ClassPlan(n_train=2, clean_frac=0.2, min_validation=0)
    # pool of a class case: 109 images; 22 clean (11 validation, 11 heldout), 87 tested
    by_default = plan_class_cases(manifest, images, plan)
    assert {len(c.validation) for c in by_default} == {11}
    grown = plan_class_cases(manifest, images, plan.model_copy(update={"min_validation": 30}))
    assert len(grown) == len(by_default) == 4
    for case in grown:
        assert len(case.validation) == case.params["n_validation"] == 30
        assert len(case.heldout) == 11  # heldout is too small to give: the tests give 19
        assert not set(case.validation) & set(case.heldout)
        tested = photos_of(manifest, [i for ids in case.test_groups.values() for i in ids])
        assert not tested & (set(case.validation) | set(case.heldout))


# -- the covariance split ----------------------------------------------------------------------
def label_of(path: Path) -> int:
    return int(path.stem.split("_")[0])


PHOTOS = [Path(f"{cls}_{i}.jpg") for cls in range(40) for i in range(3)]
GROUPS = {"low": list(range(5)), "mid": list(range(10, 13))}


def test_covariance_split_is_disjoint_complete_and_deterministic():
    cases, covariance = covariance_split(PHOTOS, 3)
    assert not set(cases) & set(covariance) and sorted(cases + covariance) == sorted(PHOTOS)
    assert len(covariance) == 40 and covariance == PHOTOS[2::3]
    assert covariance_split(PHOTOS, 3) == (cases, covariance)
    assert covariance_split(PHOTOS, 0) == (PHOTOS, [])
    with pytest.raises(ValueError, match="every"):
        covariance_split(PHOTOS, -1)


def test_group_photos_stay_with_the_cases_and_c_shares_no_image_with_a_case():
    chosen = choose_photos(PHOTOS, GROUPS, 60, label_of)
    assert len(chosen) == 60 and chosen == sorted(chosen)
    assert choose_photos(PHOTOS[::-1], GROUPS, 60, label_of) == chosen  # order-free
    grouped = [p for p in chosen if any(label_of(p) in c for c in GROUPS.values())]
    assert len(grouped) == 15 + 9  # every group photo: fewer than the 19 a group may take
    case_photos, covariance = split_for_covariance(chosen, GROUPS, 3, label_of)
    assert covariance and not set(case_photos) & set(covariance)
    assert set(grouped) <= set(case_photos)  # the groups' photos are never given to C
    assert sorted(case_photos + covariance) == chosen

    # plan group cases on the case photos: no split of any case holds a covariance photo
    rows, ids = [], {}
    for path in case_photos + covariance:
        ids[path] = _id("image", path.name)
    for path in case_photos:
        for style in ("snow/0", "snow/1"):
            rows.append(
                {
                    "cf_id": _id("cf", path.name, style),
                    "image_id": ids[path],
                    "concept": "background",
                    "texture": "snow",
                    "style_image": style,
                    "label": label_of(path),
                    "clean_pred": label_of(path),
                    "cf_pred": 99,
                    "kept": True,
                }
            )
    manifest = pd.DataFrame(rows)
    case_ids = sorted(ids[p] for p in case_photos)
    cases = plan_manifest(manifest, case_ids, GroupPlan(groups=GROUPS))
    assert [c.params["target_group"] for c in cases] == ["low", "mid"]
    covariance_ids = {ids[p] for p in covariance}
    for case in cases:
        tested = photos_of(manifest, [i for ids_ in case.test_groups.values() for i in ids_])
        train = photos_of(manifest, case.train)
        splits = [train, tested, set(case.validation), set(case.heldout)]
        for index, first in enumerate(splits):
            assert not first & covariance_ids
            for second in splits[index + 1 :]:
                assert not first & second
