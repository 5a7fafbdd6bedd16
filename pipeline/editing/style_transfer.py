"""Errors corrected per style image of a case's target test counterfactuals, for the runner.

The results table counts errors per test group; a case tests its target class in every style
image of the texture, so the same predictions also say how far an edit learnt in the exemplars'
style(s) carries to each other style. :func:`style_outcome_rows` pools one evaluation's
per-item outcomes (:attr:`pipeline.editing.evaluate.CaseEvaluation.outcomes`) by style image
(:func:`pipeline.edit_styles.pool_by_style`) into rows of
:class:`~pipeline.store.style_outcomes.StyleOutcomeRow`; no image is classified again. The
matrix over cases is :func:`pipeline.edit_styles.style_transfer_matrix`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from pipeline.cases import EditCase
from pipeline.edit_styles import pool_by_style, style_transfer_matrix
from pipeline.store.style_outcomes import StyleOutcomeRow

__all__ = ["pool_by_style", "style_outcome_rows", "style_transfer_matrix"]


def style_outcome_rows(
    case: EditCase, outcomes: pd.DataFrame, run: Mapping[str, Any]
) -> list[StyleOutcomeRow]:
    """The per-style rows of one evaluation of `case`.

    Args:
        case: the evaluated case.
        outcomes: its per-test-counterfactual outcomes
            (:func:`pipeline.editing.evaluate.item_outcomes`).
        run: ``method``, ``model_id``, ``layer``, ``run_key``, ``candidate_index`` and
            ``selected`` of the evaluation.
    """
    case_fields = {
        "case_id": case.case_id,
        "concept": case.concept,
        "texture": case.texture,
        "train_style": case.train_style,
        "exemplar_styles": str(case.params.get("exemplar_styles", "one")),
    }
    run_fields = {
        name: run[name]
        for name in ("method", "model_id", "layer", "run_key", "candidate_index", "selected")
    }
    return [
        StyleOutcomeRow(
            **case_fields,
            **run_fields,
            group=str(row.group),
            style_image=str(row.style_image),
            n=int(row.n),
            n_clean_correct=int(row.n_clean_correct),
            e_pre=int(row.e_pre),
            e_post=int(row.e_post),
            errors_corrected=float(row.errors_corrected),
        )
        for row in pool_by_style(outcomes).itertuples(index=False)
    ]
