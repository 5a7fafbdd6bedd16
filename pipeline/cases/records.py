"""Edit test cases as records: what an edit is trained on and where it is measured.

A case is one (concept, texture, target class). Its parts:

- `train`: exemplars, counterfactuals of the target class re-textured with ONE style image of
  the texture (the *train style*), each from a different source image — or, planned with
  `exemplar_styles: train`, with several of its declared training styles (`train_style` joins
  them: "snow/0+snow/1");
- `test_groups`: counterfactuals of the same concept and texture, in four groups —
  `target_train_style`, `target_heldout_style` (the target class, in the train style / in the
  texture's other style images; with `exemplar_styles: train`, in its training styles / its
  declared held-out styles), `other_train_style`, `other_heldout_style` (other classes);
- `validation` and `heldout`: ids of clean images used nowhere else in the case, for choosing
  hyper-parameters (validation) and reporting the clean accuracy drop (heldout);
- `validation_cf`: counterfactuals for choosing hyper-parameters on transformed images.

A case file is `BUILD/cases/<case_id>.json`; the id is derived from the case's content, so a
re-plan with the same inputs and settings writes the same files.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.hashing import stable_key
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
ANY_CLASS = -1  # target_class of an error case whose exemplars may be of any class


@dataclass(frozen=True)
class EditCase:
    """One edit test case; ids are counterfactual ids (`train`, test groups) or image ids.

    `params` holds the plan's settings (`plan`, `n_train`, `min_test`, ...) and what the plan
    found: `n_validation`, the clean validation images it got (one image is `100 /
    n_validation` pp of the validation accuracy), against `min_validation`, what it asked for.
    """

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
    params: dict[str, Any] = field(default_factory=dict)
    # counterfactuals for choosing hyper-parameters: photos in neither train nor a test group
    validation_cf: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=1, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> EditCase:
        return cls(**json.loads(text))


def case_slug(text: str) -> str:
    """`text` as a file-name-safe lower-case slug (never empty)."""
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower() or "x"


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


def load_case(path: str | Path) -> EditCase:
    """The case stored in one `BUILD/cases/<case_id>.json` file."""
    return EditCase.from_json(Path(path).read_text(encoding="utf-8"))


def load_cases(build_dir: str | Path) -> list[EditCase]:
    """Every case of a build, sorted by case id."""
    folder = Path(build_dir) / CASES_DIR
    return [load_case(path) for path in sorted(folder.glob("*.json"))]


def write_cases(build_dir: str | Path, cases: list[EditCase]) -> list[EditCase]:
    """Write `cases` to `BUILD/cases/` atomically and remove the case files of earlier plans,
    so the folder always holds one consistent set (a re-run with the same plan rewrites
    nothing)."""
    folder = Path(build_dir) / CASES_DIR
    for case in cases:
        atomic_write_text(folder / f"{case.case_id}.json", case.to_json(), skip_if_same=True)
    current = {f"{case.case_id}.json" for case in cases}
    for stale in folder.glob("*.json") if folder.is_dir() else []:
        if stale.name not in current:
            stale.unlink()
    return cases
