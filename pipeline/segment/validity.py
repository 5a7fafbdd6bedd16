"""Concept–class validity for ImageNet-1k: does transforming a concept change the ground truth?

Transforming `car` in a `sports_car` photo re-textures the labelled object itself, so the
counterfactual's label is no longer `sports_car`: the pair is *invalid* and such counterfactuals
must not count as classifier errors. Transforming `road` (or the `wheel`, a part) in the same
photo keeps the label: *valid*.

The verdicts come from `data/validity.tsv`, generated from WordNet 3.0 by
`python tools/make_validity.py` (the rule is documented there and in
docs/segmentation.md) and committed, so the runtime needs no WordNet. The file lists the pairs
a WordNet relation or a curated override decides; `object` is invalid and `background` valid
for every class; every other pair is valid (no relation).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from pipeline.segment.vocabulary import canonical

TABLE_PATH = Path(__file__).resolve().parent / "data" / "validity.tsv"
NUM_CLASSES = 1000


@dataclass(frozen=True)
class ValidityVerdict:
    valid: bool
    rule: str  # object, background, override, class-is-concept, ..., unrelated, unknown-concept
    reason: str


@dataclass(frozen=True)
class _Table:
    concepts: tuple[str, ...]
    verdicts: dict[tuple[str, int], ValidityVerdict]


@lru_cache(maxsize=1)
def _load(path: Path = TABLE_PATH) -> _Table:
    concepts: tuple[str, ...] = ()
    verdicts: dict[tuple[str, int], ValidityVerdict] = {}
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            lines = []
            for line in handle:
                if line.startswith("# concepts:"):
                    concepts = tuple(line.split(":", 1)[1].strip().split(","))
                elif not line.startswith("#"):
                    lines.append(line)
    except OSError as error:
        raise RuntimeError(
            f"cannot read the validity table {path}: {error.strerror or error}; "
            "regenerate it with `python tools/make_validity.py`"
        ) from None
    if not concepts:
        raise RuntimeError(f"{path} has no `# concepts:` header; regenerate it")
    for row in csv.DictReader(lines, delimiter="\t"):
        key = (row["concept"], int(row["class_index"]))
        verdicts[key] = ValidityVerdict(row["valid"] == "1", row["rule"], row["reason"])
    return _Table(concepts=concepts, verdicts=verdicts)


def table_concepts() -> tuple[str, ...]:
    """The canonical concepts the committed table was generated for."""
    return _load().concepts


def _class_name(class_index: int) -> str:
    from pipeline.classify.imagenet import class_names

    return class_names()[class_index]


def verdict(concept: str, class_index: int) -> ValidityVerdict:
    """The full verdict (valid, rule, reason) for a concept in an image of an ImageNet class."""
    index = int(class_index)
    if not 0 <= index < NUM_CLASSES:
        raise ValueError(f"class index {class_index} outside ImageNet-1k's 0..{NUM_CLASSES - 1}")
    name = canonical(concept, strict=False)
    if name == "object":
        return ValidityVerdict(False, "object", "`object` is the labelled object itself")
    if name == "background":
        return ValidityVerdict(True, "background", "`background` excludes the labelled object")
    table = _load()
    if name not in table.concepts:
        return ValidityVerdict(
            True,
            "unknown-concept",
            f"{concept!r} is not a vocabulary concept, so the table cannot judge it; assumed valid",
        )
    found = table.verdicts.get((name, index))
    if found is not None:
        return found
    return ValidityVerdict(
        True, "unrelated", f"no WordNet relation between {name} and {_class_name(index)}"
    )


def is_valid(concept: str, class_index: int) -> tuple[bool, str]:
    """(may the concept be transformed without changing class `class_index`'s label, reason)."""
    found = verdict(concept, class_index)
    return found.valid, found.reason


def validity_table() -> Any:
    """The dense table, one row per (concept, class): a pandas DataFrame with columns
    concept, class_index, class_name, synset, valid, rule, reason."""
    import pandas as pd

    from pipeline.classify.imagenet import class_names, synsets

    names, ids = class_names(), synsets()
    rows = []
    for concept in table_concepts():
        for index in range(NUM_CLASSES):
            found = verdict(concept, index)
            rows.append(
                {
                    "concept": concept,
                    "class_index": index,
                    "class_name": names[index],
                    "synset": ids[index],
                    "valid": found.valid,
                    "rule": found.rule,
                    "reason": found.reason,
                }
            )
    return pd.DataFrame(rows)


__all__ = ["ValidityVerdict", "is_valid", "table_concepts", "validity_table", "verdict"]
