"""Which counterfactuals a case may use, and the generator every draw of a case comes from."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from pipeline.cases.records import CASES_VERSION
from pipeline.hashing import stable_key


def eligible_counterfactuals(manifest: pd.DataFrame) -> pd.DataFrame:
    """Kept counterfactuals whose clean image is right, with their `target` (reference) class:
    the label, or for an unlabelled image the clean prediction."""
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


def only_pairs(
    eligible: pd.DataFrame,
    concepts: Sequence[str] | None = None,
    textures: Sequence[str] | None = None,
) -> pd.DataFrame:
    """The rows of the named concepts and textures (None: all)."""
    if concepts is not None:
        eligible = eligible[eligible["concept"].isin(list(concepts))]
    if textures is not None:
        eligible = eligible[eligible["texture"].isin(list(textures))]
    return eligible


def case_rng(seed: int, *parts: Any) -> np.random.Generator:
    """A generator seeded from (seed, what the case is), so one case does not change when
    another appears."""
    return np.random.default_rng(int(stable_key(CASES_VERSION, seed, *parts, length=16), 16))
