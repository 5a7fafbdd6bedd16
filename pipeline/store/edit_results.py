"""The edit results table, declared once: one row per case x method x grid candidate x part.

:class:`EditResultRow` is a :class:`~pipeline.records.Record`: its fields give the Arrow schema
of ``BUILD/edits/results.parquet`` (:meth:`EditResultRow.arrow_schema`), the runner writes
instances of it and the comparison reads the table back typed (:func:`read_results`). Every
candidate of every method's grid is evaluated on the held-out parts, so the curves of errors
corrected against locality come from the same table as the budget-selected point
(``selected``).
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
class EditResultRow(Record):
    """One part (exemplars, a test group, the clean heldout) of one case, evaluated after one
    grid candidate of one method.

    Case: ``case_id``, ``concept``, ``texture``, ``target`` (class or group name),
    ``target_class``, ``n_train``, ``plan``, ``label_free``. Run: ``method``, ``model_id``,
    ``layer``, ``run_key``, ``settings`` (the method's fixed settings, JSON),
    ``covariance_set`` / ``covariance_overlap`` (the image set of ``C`` and the images of it
    the cases use). Candidate: ``candidate_index`` (grid order), ``candidate`` (its settings
    and scale, JSON), ``selected`` (the budget-selected candidate), its selection scores
    ``val_drop_pp`` / ``val_ec`` / ``train_acc`` / ``strength``, and timings ``edit_s`` (its own
    edit), ``select_s`` (the whole selection), ``eval_s`` (its evaluation).

    Budget: ``budget_pp``; ``n_validation`` / ``n_validation_cf``; ``pp_per_image`` (= 100 /
    ``n_validation``, what one changed validation image weighs); ``budget_resolved`` (at least
    ``min_validation`` clean validation images); ``within_budget`` (the selection met the
    budget; ``None`` where the budget is unresolved, so "within budget" is never claimed on a
    split too small to tell). ``grid_defect``: no candidate of the grid keeps locality ≥ 99 %
    on this case (the grid does not reach "no change"). ``reused_delta``: loaded from disk.

    Part metrics (:func:`pipeline.editing.metrics.case_metrics`): ``group``, ``n``,
    ``n_clean_correct``, ``e_pre``, ``e_post``, ``errors_corrected``, ``new_errors``,
    ``acc_pre``, ``acc_post``, ``gr``, ``gr_n``, ``changed``, ``measurable``, ``dlogp``,
    ``err_bits`` (per clean-correct counterfactual "error before"+"error after"),
    ``same_bits`` (clean part: per heldout image "1" when its top-1 is unchanged); and the
    case-level ``sr``, ``sr_n``, ``lr``, ``lr_n``, ``clean_acc_pre``, ``clean_acc_post``,
    ``clean_drop_pp``. General locality (the config's labelled general set, per candidate):
    ``general_set`` (its id), ``general_n``, ``general_unchanged`` (top-1 unchanged, a
    fraction), ``general_acc_pre`` / ``general_acc_post`` and ``general_drop_pp``; empty and NaN
    without one.
    """

    kind: ClassVar[str] = "edit_results"

    case_id: str
    concept: str
    texture: str
    target: str
    target_class: int
    n_train: int
    plan: str
    label_free: bool
    method: str
    model_id: str
    layer: str
    run_key: str
    settings: str
    covariance_set: str
    covariance_overlap: int
    candidate_index: int
    candidate: str
    selected: bool
    val_drop_pp: float
    val_ec: float
    train_acc: float
    strength: float
    budget_pp: float
    n_validation: int
    n_validation_cf: int
    pp_per_image: float
    budget_resolved: bool
    within_budget: bool | None
    grid_defect: bool
    edit_s: float
    select_s: float
    eval_s: float
    reused_delta: bool
    group: str
    n: int
    n_clean_correct: int
    e_pre: int
    e_post: int
    errors_corrected: float
    new_errors: int
    acc_pre: float
    acc_post: float
    gr: float
    gr_n: int
    changed: float
    measurable: bool
    dlogp: float
    err_bits: str
    same_bits: str
    sr: float
    sr_n: int
    lr: float
    lr_n: int
    clean_acc_pre: float
    clean_acc_post: float
    clean_drop_pp: float
    general_set: str = ""
    general_n: int = 0
    general_unchanged: float = float("nan")
    general_acc_pre: float = float("nan")
    general_acc_post: float = float("nan")
    general_drop_pp: float = float("nan")


def results_table(rows: Iterable[EditResultRow | dict]) -> pa.Table:
    """Rows (records or their ``to_row`` dicts) as an Arrow table of the declared schema."""
    return declared_table(EditResultRow, rows)


def write_results(rows: Iterable[EditResultRow | dict], path: str | Path) -> Path:
    """Write the results table atomically, in the declared schema."""
    return write_table(Path(path), results_table(rows))


def read_results(path: str | Path) -> pd.DataFrame:
    """The results table as a frame of the declared columns and types; empty (with the declared
    columns) when absent. A file written by an older version without some declared column has
    its rows dropped (their run keys are stale, so the runner recomputes them) and says so."""
    return read_declared(EditResultRow, path, "results")


def read_rows(path: str | Path) -> list[EditResultRow]:
    """The results table as records."""
    return [EditResultRow.from_row(row) for row in read_results(path).to_dict("records")]


def latest_runs(results: pd.DataFrame) -> pd.DataFrame:
    """Only the rows of each (case, method)'s last run (the run key written last; the runner
    appends a run's rows after the others), so that a report pools one run per case and method
    even when the table keeps earlier runs of other settings for reuse."""
    if results.empty:
        return results
    last = results.drop_duplicates(["case_id", "method"], keep="last").set_index(
        ["case_id", "method"]
    )["run_key"]
    keys = pd.MultiIndex.from_frame(results[["case_id", "method"]])
    return results[results["run_key"].to_numpy() == last.reindex(keys).to_numpy()]
