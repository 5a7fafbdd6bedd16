"""Errors corrected per style image, and the style-transfer matrix built from them.

An edit learnt from exemplars in some style images should also correct the errors its texture
causes in style images it never saw. :func:`pool_by_style` counts, per target test group and
style image, the errors before and after an edit from per-counterfactual outcomes;
:func:`style_transfer_matrix` arranges the budget-selected candidates' counts of one (concept,
texture) and method as a matrix: rows the exemplars' style (one style image, or
:data:`SEVERAL` for a case drawn across the training styles), columns the held-out test
styles, cells errors corrected pooled over the row's cases.

Shared by the runner (:mod:`pipeline.editing.style_transfer`) and the comparison report
(:mod:`pipeline.report.style_matrix`, which must not import the editing package): pandas only.
"""

from __future__ import annotations

from collections.abc import Collection

import pandas as pd

from pipeline.edit_stats import clipped_percent

TARGET_GROUPS = ("target_train_style", "target_heldout_style")
HELDOUT_GROUP = "target_heldout_style"
SEVERAL = "several"  # the row of cases whose exemplars come from several style images
MATRIX_VALUES = ("errors_corrected", "e_pre", "e_post", "n_cases")
_COUNTS = ["n", "n_clean_correct", "e_pre", "e_post"]


def pool_by_style(outcomes: pd.DataFrame, groups: Collection[str] = TARGET_GROUPS) -> pd.DataFrame:
    """Per (group, style image) of the counterfactuals in `groups`: ``n``, ``n_clean_correct``,
    ``e_pre`` / ``e_post`` (wrong counterfactuals among those whose clean image the unedited
    model gets right) and ``errors_corrected`` (%, clipped at −100, NaN without errors) —
    the counts of :func:`pipeline.editing.metrics.case_metrics`, split by style.

    Args:
        outcomes: one row per test counterfactual with ``group``, ``style_image``,
            ``clean_correct``, ``correct_pre``, ``correct_post``
            (:func:`pipeline.editing.evaluate.item_outcomes`).
        groups: the test groups to break down (default: the two target groups).
    """
    part = outcomes[outcomes["group"].isin(list(groups))]
    clean = part["clean_correct"].astype(bool)
    counted = part.assign(
        n=1,
        n_clean_correct=clean.astype(int),
        e_pre=(clean & ~part["correct_pre"].astype(bool)).astype(int),
        e_post=(clean & ~part["correct_post"].astype(bool)).astype(int),
    )
    pooled = counted.groupby(["group", "style_image"], sort=True)[_COUNTS].sum().reset_index()
    pooled["errors_corrected"] = [
        clipped_percent(a, b) for a, b in zip(pooled["e_pre"], pooled["e_post"], strict=True)
    ]
    return pooled.astype({column: int for column in _COUNTS})


def style_order(style_id: str) -> tuple[str, int]:
    """Sort key of a style id: "snow/2" before "snow/10"."""
    texture, _, index = str(style_id).rpartition("/")
    return (texture, int(index)) if index.isdigit() else (str(style_id), -1)


def exemplar_label(train_style: str) -> str:
    """A case's row in the matrix: its exemplars' style image, or :data:`SEVERAL`."""
    return SEVERAL if "+" in train_style else train_style


def style_transfer_matrix(
    style_outcomes: pd.DataFrame,
    method: str,
    concept: str | None = None,
    texture: str | None = None,
    values: str = "errors_corrected",
) -> pd.DataFrame:
    """The style-transfer matrix of one method on one (concept, texture).

    Rows: the exemplars' style of each case (:func:`exemplar_label`; single styles sorted,
    :data:`SEVERAL` last); columns: every style image some case tests as held-out, sorted;
    cells: over the row's cases, the budget-selected candidate's errors corrected on the target
    counterfactuals of that style, pooled over images (``values="e_pre"`` / ``"e_post"``: the
    pooled counts; ``"n_cases"``: how many cases the cell pools). A cell no case tests is NaN.

    Args:
        style_outcomes: the per-style table (:func:`pipeline.store.style_outcomes.
            read_style_outcomes`), one run per case and method (the report passes the runs of
            the results it shows).
        method: the editing method.
        concept: the concept (None: the table's only one).
        texture: the texture (None: the table's only one).
        values: one of :data:`MATRIX_VALUES`.

    Raises:
        ValueError: an unknown `values`, or several (concept, texture) pairs left unnamed.
    """
    if values not in MATRIX_VALUES:
        raise ValueError(f"unknown values {values!r}; one of {', '.join(MATRIX_VALUES)}")
    part = style_outcomes[
        (style_outcomes["method"] == method)
        & style_outcomes["selected"].astype(bool)
        & (style_outcomes["group"] == HELDOUT_GROUP)
    ]
    if concept is not None:
        part = part[part["concept"] == concept]
    if texture is not None:
        part = part[part["texture"] == texture]
    pairs = sorted(set(zip(part["concept"], part["texture"], strict=True)))
    if len(pairs) > 1:
        named = ", ".join(f"{c}→{t}" for c, t in pairs)
        raise ValueError(f"{len(pairs)} (concept, texture) pairs ({named}): name one")
    if part.empty:
        empty = pd.DataFrame(dtype=float)
        empty.index.name, empty.columns.name = "exemplar style", "held-out style"
        return empty
    part = part.assign(exemplar_style=part["train_style"].astype(str).map(exemplar_label))
    pooled = part.groupby(["exemplar_style", "style_image"]).agg(
        e_pre=("e_pre", "sum"), e_post=("e_post", "sum"), n_cases=("case_id", "nunique")
    )
    pooled["errors_corrected"] = [
        clipped_percent(a, b) for a, b in zip(pooled["e_pre"], pooled["e_post"], strict=True)
    ]
    matrix = pooled[values].unstack("style_image")
    rows = sorted(matrix.index, key=lambda label: (label == SEVERAL, style_order(label)))
    matrix = matrix.reindex(index=rows, columns=sorted(matrix.columns, key=style_order))
    matrix.index.name, matrix.columns.name = "exemplar style", "held-out style"
    return matrix.astype(float)
