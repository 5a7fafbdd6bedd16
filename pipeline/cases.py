"""Edit test cases: what an edit is trained on and where it is measured.

A case is one (concept, texture, target class). Its parts:

- `train`: `n_train` exemplars, counterfactuals of the target class re-textured with ONE style
  image of the texture (the *train style*), each from a different source image;
- `test_groups`: counterfactuals of the same concept and texture, in four groups —
  `target_train_style`, `target_heldout_style` (the target class, in the train style / in the
  texture's other style images), `other_train_style`, `other_heldout_style` (other classes);
- `validation` and `heldout`: ids of clean images used nowhere else in the case, for choosing
  hyper-parameters (validation) and reporting the clean accuracy drop (heldout).

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

import dataclasses
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.hashing import stable_key
from pipeline.store import BuildStore
from pipeline.store.atomic import atomic_write_text

CASES_VERSION = "cases-v1"
CASES_DIR = "cases"
TEST_GROUPS = (
    "target_train_style",
    "target_heldout_style",
    "other_train_style",
    "other_heldout_style",
)
# the parts of a case as rows of the edit results: the train exemplars, the test groups, and
# the heldout clean images
EXEMPLARS = "exemplars"
CLEAN = "clean"
RESULT_GROUPS = (EXEMPLARS, *TEST_GROUPS, CLEAN)


@dataclass(frozen=True)
class EditCase:
    """One edit test case; ids are counterfactual ids (`train`, test groups) or image ids."""

    case_id: str
    concept: str
    texture: str
    target_class: int
    train_style: str
    train: list[str]
    test_groups: dict[str, list[str]]
    validation: list[str]
    heldout: list[str]
    seed: int
    params: dict[str, Any] = field(default_factory=dict)  # n_train, min_test, clean_frac
    # counterfactuals for choosing hyper-parameters: photos in neither train nor a test group
    validation_cf: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=1, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> EditCase:
        return cls(**json.loads(text))


def load_case(path: str | Path) -> EditCase:
    return EditCase.from_json(Path(path).read_text(encoding="utf-8"))


def load_cases(build_dir: str | Path) -> list[EditCase]:
    """Every case of a build, sorted by case id."""
    folder = Path(build_dir) / CASES_DIR
    return [load_case(path) for path in sorted(folder.glob("*.json"))]


def eligible_counterfactuals(manifest: pd.DataFrame) -> pd.DataFrame:
    """Kept counterfactuals whose clean image is right, with their `target` (reference) class."""
    label = manifest["label"]
    labelled = label.notna()
    right = ~labelled | (manifest["clean_pred"].astype(float) == label.astype(float))
    # a row with neither a label nor a clean prediction has no reference: it cannot be used
    known = labelled | manifest["clean_pred"].notna()
    eligible = manifest[manifest["kept"].astype(bool) & right & known].copy()
    eligible["target"] = (
        eligible["label"].where(eligible["label"].notna(), eligible["clean_pred"]).astype(int)
    )
    return eligible.sort_values("cf_id", kind="stable").reset_index(drop=True)


def case_slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower() or "x"


def _rng(seed: int, *parts: Any) -> np.random.Generator:
    return np.random.default_rng(int(stable_key(CASES_VERSION, seed, *parts, length=16), 16))


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
) -> EditCase | None:
    """One case from the eligible counterfactuals of (concept, texture); None if impossible.

    `image_ids` are all images of the build (the pool for the clean splits). Impossible: fewer
    than `n_train` target-class photos in every style image, or a test group with fewer than
    `min_test` counterfactuals.
    """
    rng = _rng(seed, concept, texture, target)
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
    order = rng.permutation(len(pool))
    n_clean = round(clean_frac * len(pool))
    clean = [pool[i] for i in order[:n_clean]]
    validation, heldout = sorted(clean[: n_clean // 2]), sorted(clean[n_clean // 2 :])
    test_images = {pool[i] for i in order[n_clean:]}

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
    params = {"n_train": n_train, "min_test": min_test, "clean_frac": clean_frac}
    return new_case(
        concept, texture, int(target), train_style, train, groups, validation, heldout, seed, params
    )


def new_case(
    concept: str,
    texture: str,
    target: int,
    train_style: str,
    train: list[str],
    test_groups: dict[str, list[str]],
    validation: list[str],
    heldout: list[str],
    seed: int,
    params: dict[str, Any],
    validation_cf: list[str] | None = None,
) -> EditCase:
    """An `EditCase` named by its content: `<concept>-<texture>-<class or "any">-<digest>`."""
    digest = stable_key(CASES_VERSION, seed, params, concept, texture, target, train, length=10)
    label = "any" if target < 0 else str(target)
    extra = {} if validation_cf is None else {"validation_cf": validation_cf}
    return EditCase(
        case_id=f"{case_slug(concept)}-{case_slug(texture)}-{label}-{digest}",
        concept=concept,
        texture=texture,
        target_class=int(target),
        train_style=train_style,
        train=train,
        test_groups=test_groups,
        validation=validation,
        heldout=heldout,
        seed=seed,
        params=params,
        **extra,
    )


def plan_cases(
    manifest: pd.DataFrame,
    image_ids: Sequence[str],
    seed: int = 0,
    n_train: int = 3,
    min_test: int = 1,
    clean_frac: float = 0.5,
) -> list[EditCase]:
    """Every possible case of a counterfactual manifest, sorted by (concept, texture, class)."""
    if n_train < 1 or min_test < 0 or not 0.0 <= clean_frac <= 1.0:
        raise ValueError(
            f"need n_train >= 1, min_test >= 0 and 0 <= clean_frac <= 1; got {n_train}, "
            f"{min_test}, {clean_frac}"
        )
    if manifest.empty:
        return []
    eligible = eligible_counterfactuals(manifest)
    cases = []
    for (concept, texture), rows in eligible.groupby(["concept", "texture"], sort=True):
        for target in sorted(rows["target"].unique()):
            case = make_case(
                rows, image_ids, concept, texture, int(target), seed, n_train, min_test, clean_frac
            )
            if case is not None:
                cases.append(case)
    return cases


def build_cases(
    build_dir: str | Path,
    seed: int = 0,
    n_train: int = 3,
    min_test: int = 1,
    clean_frac: float = 0.5,
) -> list[EditCase]:
    """Plan every case of a build and write each to `BUILD/cases/<case_id>.json` atomically.

    Case files of an earlier run that this run does not produce (another seed or setting) are
    removed, so `BUILD/cases/` always holds one consistent set.
    """
    store = BuildStore(build_dir)
    manifest = store.frame("counterfactuals")
    images = store.frame("images", columns=["image_id"])
    cases = plan_cases(manifest, sorted(images["image_id"]), seed, n_train, min_test, clean_frac)
    return write_cases(store.root, cases)


def write_cases(build_dir: str | Path, cases: list[EditCase]) -> list[EditCase]:
    """Write `cases` to `BUILD/cases/` and remove the case files of earlier plans."""
    folder = Path(build_dir) / CASES_DIR
    for case in cases:
        atomic_write_text(folder / f"{case.case_id}.json", case.to_json(), skip_if_same=True)
    current = {f"{case.case_id}.json" for case in cases}
    for stale in folder.glob("*.json") if folder.is_dir() else []:
        if stale.name not in current:
            stale.unlink()
    return cases
