"""The style-transfer matrix in the edit comparison: does an edit carry to unseen style images?

Where the compared cases of one (concept, texture) have exemplars in more than one style (one
case per style image, or a style image beside a case drawn across the training styles), the
comparison adds ``style_matrix.png`` — per method a heatmap, rows the exemplars' style, columns
the held-out test styles, cells the budget-selected candidate's errors corrected with
``E_pre`` — and the same matrices as Markdown tables
(:func:`pipeline.edit_styles.style_transfer_matrix` over ``style_outcomes.parquet``). Without
such cases nothing is written.
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from pipeline.edit_styles import exemplar_label, style_transfer_matrix
from pipeline.store.atomic import atomic_write_bytes
from pipeline.store.edits_layout import STYLE_MATRIX_PNG, STYLE_OUTCOMES_FILE
from pipeline.store.style_outcomes import read_style_outcomes


class StyleMatrix(NamedTuple):
    """One method's matrix on one (concept, texture): errors corrected and E_pre per cell."""

    concept: str
    texture: str
    method: str
    errors_corrected: pd.DataFrame
    e_pre: pd.DataFrame


def shown_runs(style_outcomes: pd.DataFrame, results: pd.DataFrame) -> pd.DataFrame:
    """The per-style rows of the runs the comparison shows (the results' run keys)."""
    return style_outcomes[style_outcomes["run_key"].isin(set(results["run_key"]))]


def matrix_pairs(style_outcomes: pd.DataFrame) -> list[tuple[str, str]]:
    """(concept, texture) pairs whose cases have exemplars in more than one style (a matrix of
    one row compares nothing)."""
    if style_outcomes.empty:
        return []
    labels = style_outcomes.assign(row=style_outcomes["train_style"].map(exemplar_label))
    counts = labels.groupby(["concept", "texture"])["row"].nunique()
    return [(str(c), str(t)) for (c, t), n in counts.items() if n > 1]


def style_matrices(style_outcomes: pd.DataFrame, methods: list[str]) -> list[StyleMatrix]:
    """Per pair of :func:`matrix_pairs` and method: the errors-corrected and E_pre matrices."""
    out = []
    for concept, texture in matrix_pairs(style_outcomes):
        for method in methods:
            values = style_transfer_matrix(style_outcomes, method, concept, texture)
            if values.empty:
                continue
            e_pre = style_transfer_matrix(style_outcomes, method, concept, texture, "e_pre")
            out.append(StyleMatrix(concept, texture, method, values, e_pre))
    return out


def _cell(value: float, e_pre: float) -> str:
    if math.isnan(e_pre):
        return "–"
    return ("–" if math.isnan(value) else f"{value:.0f}") + f" ({e_pre:.0f})"


def matrix_markdown(matrices: list[StyleMatrix]) -> str:
    """The matrices as Markdown tables ("" without any)."""
    out = []
    for concept, texture, method, values, e_pre in matrices:
        out.append(
            f"### Style transfer: {concept} → {texture}, {method}: errors corrected (%) per "
            "held-out style (E_pre)\n"
        )
        header = ["exemplar style", *map(str, values.columns)]
        out.append("| " + " | ".join(header) + " |")
        out.append("|" + "|".join("---" for _ in header) + "|")
        for row in values.index:
            cells = [_cell(values.at[row, c], e_pre.at[row, c]) for c in values.columns]
            out.append("| " + " | ".join([str(row), *cells]) + " |")
        out.append("")
    if not out:
        return ""
    out.append(
        "Style transfer: the target class's test counterfactuals of each held-out style "
        "image, budget-selected candidate, errors pooled over the row's cases; row "
        "`several`: exemplars drawn across the texture's declared training styles."
    )
    return "\n" + "\n".join(out) + "\n"


def plot_style_matrix(matrices: list[StyleMatrix], path: Path) -> Path:
    """One annotated heatmap per (concept, texture) and method: rows the exemplars' style,
    columns the held-out styles, errors corrected (%) and E_pre in each cell."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pairs = list(dict.fromkeys((m.concept, m.texture) for m in matrices))
    methods = list(dict.fromkeys(m.method for m in matrices))
    widest = max(m.errors_corrected.shape[1] for m in matrices)
    tallest = max(m.errors_corrected.shape[0] for m in matrices)
    fig, axes = plt.subplots(
        len(pairs),
        len(methods),
        figsize=(1.2 + 1.1 * widest * len(methods), 1.2 + 0.7 * tallest * len(pairs)),
        squeeze=False,
    )
    for ax in axes.flat:
        ax.set_axis_off()
    image = None
    for concept, texture, method, values, e_pre in matrices:
        ax = axes[pairs.index((concept, texture))][methods.index(method)]
        ax.set_axis_on()
        data = values.to_numpy(float)
        image = ax.imshow(np.ma.masked_invalid(data), cmap="RdYlGn", vmin=-100, vmax=100)
        for i, j in np.ndindex(data.shape):
            ax.text(j, i, _cell(data[i, j], e_pre.to_numpy(float)[i, j]), ha="center",
                    va="center", fontsize=7)  # fmt: skip
        ax.set_xticks(range(data.shape[1]), [str(c) for c in values.columns], fontsize=7)
        ax.set_yticks(range(data.shape[0]), [str(r) for r in values.index], fontsize=7)
        ax.set_xlabel("held-out style", fontsize=8)
        ax.set_ylabel("exemplar style", fontsize=8)
        ax.set_title(f"{concept} → {texture}: {method}", fontsize=9)
    if image is not None:
        fig.colorbar(image, ax=list(axes.flat), shrink=0.8, label="errors corrected (%)")
    fig.suptitle(
        "Style transfer: errors corrected % (E_pre) on held-out styles, budget point", fontsize=9
    )
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=110, format="png", bbox_inches="tight")
    plt.close(fig)
    return atomic_write_bytes(path, buffer.getvalue())


def write_style_matrix(out: Path, results: pd.DataFrame) -> str:
    """Write ``style_matrix.png`` into the edits folder `out` for the runs of `results` and
    return the matrices as Markdown; "" (and no figure, a stale one removed) when no (concept,
    texture) has cases with exemplars in more than one style."""
    outcomes = shown_runs(read_style_outcomes(out / STYLE_OUTCOMES_FILE), results)
    matrices = style_matrices(outcomes, list(dict.fromkeys(results["method"])))
    figure = out / STYLE_MATRIX_PNG
    if not matrices:
        figure.unlink(missing_ok=True)
        return ""
    plot_style_matrix(matrices, figure)
    return matrix_markdown(matrices)
