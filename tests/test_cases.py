"""Edit test cases: eligibility, group structure, disjointness and determinism."""

from __future__ import annotations

import pandas as pd
import pytest

from pipeline.cases import (
    TEST_GROUPS,
    ClassPlan,
    EditCase,
    eligible_counterfactuals,
    load_case,
    load_cases,
    plan_cases,
    plan_class_cases,
)
from pipeline.hashing import stable_key
from pipeline.records import Counterfactual, SourceImage
from pipeline.store import BuildStore
from pipeline.store.manifest import records_to_table, write_table

STYLES = ("snow/0", "snow/1", "snow/2")


def counterfactual(image_id: str, label: int | None, style: str, **changes) -> Counterfactual:
    values = {
        "cf_id": stable_key(image_id, style, changes.get("concept", "background"), length=32),
        "image_id": image_id,
        "mask_id": stable_key(image_id, "mask", length=32),
        "stylized_id": stable_key(image_id, style, length=32),
        "concept": "background",
        "texture": style.split("/")[0],
        "style_image": style,
        "blend": 0.8,
        "area_frac": 0.4,
        "label": label,
        "path": "counterfactuals/00/00.png",
        "clean_pred": label if label is not None else 7,
        "cf_pred": 9,
        "kept": True,
    }
    values.update(changes)
    return Counterfactual(**values)


def image_id(name: str) -> str:
    return stable_key("image", name, length=64)


def make_manifest() -> tuple[pd.DataFrame, list[str]]:
    """Class 1: 6 photos; class 2: 4; class 3: 3 (too few for a case with tests); unlabelled: 2
    (clean prediction 7); plus rows that must never be used: not kept, clean misclassified."""
    records, images = [], []
    for label, count in ((1, 6), (2, 4), (3, 3), (None, 2)):
        for index in range(count):
            image = image_id(f"{label}-{index}")
            images.append(image)
            records += [counterfactual(image, label, style) for style in STYLES]
    for name, changes in (("dropped", {"kept": False}), ("wrong", {"clean_pred": 5})):
        image = image_id(name)
        images.append(image)
        records += [counterfactual(image, 1, style, **changes) for style in STYLES]
    images += [image_id(f"no-concept-{i}") for i in range(6)]  # images without counterfactuals
    frame = pd.DataFrame([record.to_row() for record in records])
    return frame, sorted(images)


@pytest.fixture
def manifest() -> pd.DataFrame:
    return make_manifest()[0]


@pytest.fixture
def images() -> list[str]:
    return make_manifest()[1]


def test_eligible_rows_are_kept_and_clean_correct(manifest: pd.DataFrame):
    eligible = eligible_counterfactuals(manifest)
    assert eligible["kept"].all()
    labelled = eligible[eligible["label"].notna()]
    assert (labelled["clean_pred"] == labelled["label"]).all()
    assert set(eligible["target"]) == {1, 2, 3, 7}  # unlabelled: the clean prediction
    assert image_id("dropped") not in set(eligible["image_id"])
    assert image_id("wrong") not in set(eligible["image_id"])


def test_cases_have_the_designed_structure(manifest: pd.DataFrame, images: list[str]):
    cases = plan_class_cases(manifest, images, ClassPlan(seed=0, n_train=3, min_test=1))
    by_target = {case.target_class: case for case in cases}
    # class 3 has exactly n_train photos: nothing left to test on; class 7 has only 2
    assert sorted(by_target) == [1, 2]
    rows = manifest.set_index("cf_id")
    eligible = set(eligible_counterfactuals(manifest)["cf_id"])
    for case in cases:
        assert set(case.test_groups) == set(TEST_GROUPS)
        assert len(case.train) == 3
        train = rows.loc[case.train]
        assert (train["label"] == case.target_class).all()
        assert (train["style_image"] == case.train_style).all()
        assert train["image_id"].nunique() == 3  # exemplars from different photos
        train_images = set(train["image_id"])
        used_images = set(train_images)
        for name, cf_ids in case.test_groups.items():
            assert cf_ids, name
            group = rows.loc[cf_ids]
            assert set(cf_ids) <= eligible  # kept and clean-correct only
            # never an image both in train and in a test group
            assert not train_images & set(group["image_id"]), name
            target = (group["label"] == case.target_class).fillna(False)
            assert target.all() if name.startswith("target") else not target.any(), name
            if name.endswith("train_style"):
                assert (group["style_image"] == case.train_style).all(), name
            else:
                styles = set(group["style_image"])
                assert case.train_style not in styles and styles <= set(STYLES), name
            used_images |= set(group["image_id"])
        # clean splits: images used nowhere else in the case, disjoint from each other
        assert case.validation and case.heldout
        assert not set(case.validation) & set(case.heldout)
        assert not (set(case.validation) | set(case.heldout)) & used_images
        assert case.concept == "background" and case.texture == "snow" and case.seed == 0


def test_cases_are_deterministic_from_the_seed(manifest: pd.DataFrame, images: list[str]):
    first = plan_class_cases(manifest, images, ClassPlan(seed=0))
    shuffled = manifest.sample(frac=1.0, random_state=3)
    assert plan_class_cases(shuffled, images[::-1], ClassPlan(seed=0)) == first
    others = [plan_class_cases(manifest, images, ClassPlan(seed=seed)) for seed in range(1, 6)]
    assert any(cases != first for cases in others)  # the seed matters
    assert {c.case_id for c in first}.isdisjoint({c.case_id for c in others[0]})


def test_min_test_and_n_train_gate_cases(manifest: pd.DataFrame, images: list[str]):
    two = plan_class_cases(manifest, images, ClassPlan(n_train=2))
    assert {c.target_class for c in two} == {1, 2, 3}
    assert plan_class_cases(manifest, images, ClassPlan(n_train=3, min_test=50)) == []
    with pytest.raises(ValueError, match="n_train"):
        ClassPlan(n_train=0)


def write_build(root, manifest: pd.DataFrame, images: list[str]) -> BuildStore:
    store = BuildStore(root)
    records = [
        SourceImage(i, f"test://{i[:6]}", 8, 8, None, None, f"images/{i[:2]}/{i}.png")
        for i in images
    ]
    write_table(store.manifest_path("images"), records_to_table("images", records))
    plain = manifest.astype(object).where(manifest.notna(), None)  # NaN labels as None
    rows = [Counterfactual.from_row(row) for row in plain.to_dict("records")]
    write_table(store.manifest_path("counterfactuals"), records_to_table("counterfactuals", rows))
    return store


def test_plan_cases_writes_one_json_per_case(tmp_path, manifest: pd.DataFrame, images: list[str]):
    store = write_build(tmp_path / "build", manifest, images)
    cases = plan_cases(store.root, ClassPlan(seed=0))
    files = sorted((store.root / "cases").glob("*.json"))
    assert [f.stem for f in files] == sorted(c.case_id for c in cases)
    for case in cases:
        loaded = load_case(store.root / "cases" / f"{case.case_id}.json")
        assert isinstance(loaded, EditCase) and loaded == case
    assert load_cases(store.root) == sorted(cases, key=lambda c: c.case_id)
    # a re-run with the same seed rewrites nothing; another seed replaces the set
    stamps = {f.name: f.stat().st_mtime_ns for f in files}
    plan_cases(store.root, ClassPlan(seed=0))
    assert {f.name: f.stat().st_mtime_ns for f in files} == stamps
    other = plan_cases(store.root, ClassPlan(seed=1))
    assert sorted(f.stem for f in (store.root / "cases").glob("*.json")) == sorted(
        c.case_id for c in other
    )
