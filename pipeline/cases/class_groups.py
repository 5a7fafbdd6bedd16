"""ImageNet class groups by WordNet: the classes that are a vocabulary concept (`dog` → the
130 canine classes), read from the committed concept-class validity table
(:mod:`pipeline.segment.validity`). Group plans name their groups this way."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

GROUP_RULES = ("class-is-concept",)


@lru_cache(maxsize=1)
def _validity_rows() -> tuple[tuple[str, int, str], ...]:
    from pipeline.segment.validity import TABLE_PATH

    with Path(TABLE_PATH).open(encoding="utf-8", newline="") as handle:
        lines = [line for line in handle if not line.startswith("#")]
    return tuple(
        (row["concept"], int(row["class_index"]), row["rule"])
        for row in csv.DictReader(lines, delimiter="\t")
    )


def class_group(concept: str, rules: Sequence[str] = GROUP_RULES) -> list[int]:
    """ImageNet class indices that are `concept` by WordNet (e.g. `dog`, `bird`, `cat`).

    Args:
        concept: a vocabulary concept.
        rules: which validity-table rules count (`class-is-concept`: the class is a kind of
            the concept; add `concept-part-of-class` for e.g. `wheel` → wheeled vehicles).
    """
    classes = sorted(
        {index for name, index, rule in _validity_rows() if name == concept and rule in rules}
    )
    if not classes:
        raise KeyError(f"no ImageNet classes for concept {concept!r} with rules {list(rules)}")
    return classes
