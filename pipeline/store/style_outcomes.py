"""Errors corrected per style image, declared once: the table behind the style-transfer matrix.

:class:`StyleOutcomeRow` is a :class:`~pipeline.records.Record` like the edit results
(:mod:`pipeline.store.edit_results`) but in a table of its own,
``BUILD/edits/style_outcomes.parquet``: one row per case x method x grid candidate x target
test group x style image. Kept apart so that the results table, whose older versions are
recomputed when a declared column is missing, is not invalidated by the breakdown; the rows
carry the results' ``run_key``, so the runner replaces them together and the report reads the
same runs.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pandas as pd
import pyarrow as pa

from pipeline.records import Record
from pipeline.store.manifest import declared_table, read_declared, write_table


@dataclass(frozen=True)
class StyleOutcomeRow(Record):
    """The target test counterfactuals of one style image in one case, after one candidate.

    Case: ``case_id``, ``concept``, ``texture``, ``train_style`` (the exemplars' style image,
    or several joined by "+"), ``exemplar_styles`` (the plan's ``one`` or ``train``). Run:
    ``method``, ``model_id``, ``layer``, ``run_key`` (the results table's), ``candidate_index``,
    ``selected``. Part: ``group`` (``target_train_style`` or ``target_heldout_style``),
    ``style_image``, ``n``, ``n_clean_correct``, ``e_pre``, ``e_post`` and ``errors_corrected``
    (%, clipped at −100, NaN when ``e_pre = 0``), counted as in the results.
    """

    kind: ClassVar[str] = "style_outcomes"

    case_id: str
    concept: str
    texture: str
    train_style: str
    exemplar_styles: str
    method: str
    model_id: str
    layer: str
    run_key: str
    candidate_index: int
    selected: bool
    group: str
    style_image: str
    n: int
    n_clean_correct: int
    e_pre: int
    e_post: int
    errors_corrected: float


def style_outcomes_table(rows: Iterable[StyleOutcomeRow | dict]) -> pa.Table:
    """Rows (records or their ``to_row`` dicts) as an Arrow table of the declared schema."""
    return declared_table(StyleOutcomeRow, rows)


def write_style_outcomes(rows: Iterable[StyleOutcomeRow | dict], path: str | Path) -> Path:
    """Write the table atomically, in the declared schema."""
    return write_table(Path(path), style_outcomes_table(rows))


def read_style_outcomes(path: str | Path) -> pd.DataFrame:
    """The table as a frame of the declared columns and types; empty (with those columns) when
    absent or written by a version without some declared column (said in the log)."""
    return read_declared(StyleOutcomeRow, path, "style outcomes")
