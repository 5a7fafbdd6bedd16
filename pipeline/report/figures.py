"""Report figures as PNG files: sensitivity heatmap, top sensitivities, example grids.

Figures are drawn with matplotlib's object API on the Agg canvas (no pyplot, no global backend
state), written atomically, and sized from their content so they stay legible.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from pipeline.report.controls import control_mask, neutral_fill
from pipeline.report.sensitivity import build_feather
from pipeline.store import BuildStore
from pipeline.store.atomic import atomic_write_bytes
from pipeline.transform import composite

OK_COLOUR, BROKEN_COLOUR = "#1a7f37", "#cf222e"
LABELS = {
    "sens_flip": "concept sensitivity: flip rate, concept − control",
    "sens_acc_drop": "concept sensitivity: accuracy drop, concept − control",
    "sens_prob_drop": "concept sensitivity: reference-prob. drop, concept − control",
    "cf_flip": "flip rate of the counterfactual",
}


def _save(figure: Figure, path: str | Path, dpi: int = 100) -> Path:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return atomic_write_bytes(path, buffer.getvalue())


def _empty(path: str | Path, message: str) -> Path:
    figure = Figure(figsize=(5, 1.2))
    figure.text(0.5, 0.5, message, ha="center", va="center")
    return _save(figure, path)


def _short(text: str, width: int = 22) -> str:
    text = str(text).replace("_", " ")
    return text if len(text) <= width else text[: width - 1] + "…"


def heatmap(
    table: pd.DataFrame,
    path: str | Path,
    value: str = "sens_flip",
    max_classes: int = 40,
    title: str = "",
) -> Path:
    """Class × concept heatmap of `value` from `summarize(..., by=("class", "concept"))`.

    Cells show the value and n; at most `max_classes` rows, those with the largest |value|.
    """
    data = table.dropna(subset=[value]) if len(table) else table
    if not len(data):
        return _empty(path, f"no {value} to show")
    grid = data.pivot_table(index="class_name", columns="concept", values=value, aggfunc="first")
    counts = data.pivot_table(index="class_name", columns="concept", values="n", aggfunc="first")
    strength = grid.abs().max(axis=1).sort_values(ascending=False, kind="stable")
    rows = sorted(strength.index[:max_classes], key=str.lower)
    grid, counts = grid.loc[rows], counts.loc[rows]
    height = 1.6 + 0.32 * len(rows)
    figure = Figure(figsize=(2.8 + 1.25 * grid.shape[1], height))
    axes = figure.add_subplot()
    image = axes.imshow(grid.to_numpy(float), cmap="RdBu_r", vmin=-1, vmax=1, aspect="auto")
    axes.set_xticks(range(grid.shape[1]), [_short(c, 14) for c in grid.columns])
    axes.set_yticks(range(len(rows)), [_short(r) for r in rows])
    axes.tick_params(axis="x", labelrotation=30)
    for (i, j), cell in np.ndenumerate(grid.to_numpy(float)):
        if not math.isnan(cell):
            n = int(counts.iloc[i, j])
            colour = "white" if abs(cell) > 0.6 else "black"
            axes.text(j, i, f"{cell:+.2f}\nn={n}", ha="center", va="center", fontsize=7, c=colour)
    figure.colorbar(image, ax=axes, fraction=0.05, pad=0.02).set_label(value)
    axes.set_title(title or LABELS.get(value, value), fontsize=9)
    return _save(figure, path)


def top_sensitivities(
    table: pd.DataFrame,
    path: str | Path,
    k: int = 15,
    value: str = "sens_flip",
    title: str = "",
) -> Path:
    """The `k` most sensitive groups of a table, with their 95% intervals as error bars.

    Ranked by the interval's lower bound, then the value, then n: a large effect measured on
    many rows ranks above the same effect on few.
    """
    data = table.dropna(subset=[value]) if len(table) else table
    if not len(data):
        return _empty(path, f"no {value} to show")
    ranking = [f"{value}_low", value, "n"]
    top = data.sort_values(ranking, ascending=False, kind="stable", na_position="last").head(k)
    top = top.iloc[::-1]  # largest at the top of the chart
    keys = [c for c in ("class_name", "concept", "texture") if c in top.columns]
    labels = [
        " · ".join(_short(row[c]) for c in keys) + f"  (n={int(row['n'])})"
        for _, row in top.iterrows()
    ]
    centre = top[value].to_numpy(float)
    low = np.nan_to_num(centre - top[f"{value}_low"].to_numpy(float))
    high = np.nan_to_num(top[f"{value}_high"].to_numpy(float) - centre)
    figure = Figure(figsize=(8.5, 1.2 + 0.34 * len(top)))
    axes = figure.add_subplot()
    positions = np.arange(len(top))
    axes.errorbar(centre, positions, xerr=[low, high], fmt="o", color="#0b5cad", capsize=3)
    axes.axvline(0.0, color="grey", lw=0.8, ls="--")
    axes.set_yticks(positions, labels, fontsize=8)
    axes.set_xlim(-1.05, 1.05)
    axes.set_xlabel(f"{LABELS.get(value, value)} (95% interval)", fontsize=8)
    axes.set_title(title or f"top {len(top)} by {value}", fontsize=9)
    return _save(figure, path)


def select_examples(predictions: pd.DataFrame, k: int = 6) -> list[str]:
    """Counterfactual ids worth showing, deterministically: concept-specific breaks first.

    Within each concept the order is: the counterfactual flips and its control does not, then
    both flip, then neither; within that, the largest reference-probability drop relative to the
    control; at most one example per image until every image has one. Concepts take turns
    (sorted by name), so every concept is shown when `k` allows.
    """
    if not len(predictions):
        return []
    flips = predictions["cf_pred"] != predictions["clean_pred"]
    control_holds = predictions["ctrl_pred"] == predictions["clean_pred"]
    frame = predictions.assign(
        tier=np.select([flips & control_holds, flips], [0, 1], 2),
        gain=predictions["ctrl_ref_prob"] - predictions["cf_ref_prob"],
    ).sort_values(["tier", "gain", "cf_id"], ascending=[True, False, True], kind="stable")
    frame = frame.assign(per_image=frame.groupby(["image_id", "concept"]).cumcount())
    frame = frame.sort_values(
        ["per_image", "tier", "gain", "cf_id"], ascending=[True, True, False, True], kind="stable"
    )
    frame = frame.assign(turn=frame.groupby("concept").cumcount())
    frame = frame.sort_values(["turn", "concept"], kind="stable")
    return frame["cf_id"].head(k).tolist()


def _overlay(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    tint = np.array([255, 40, 40], np.float32)
    out = np.where(mask[..., None], 0.45 * image + 0.55 * tint, 0.8 * image)
    return out.astype(np.uint8)


def _titled(axes: Axes, image: np.ndarray, title: str, correct: bool | None) -> None:
    axes.imshow(image)
    colour = "black" if correct is None else (OK_COLOUR if correct else BROKEN_COLOUR)
    axes.set_title(title, fontsize=7.5, color=colour)
    axes.set_xticks([])
    axes.set_yticks([])


def example_grid(
    build_dir: str | Path,
    predictions: pd.DataFrame,
    cf_ids: Sequence[str],
    path: str | Path,
) -> Path:
    """One row per counterfactual: original, concept mask, counterfactual, neutral control,
    random-region control mask, random-region control.

    Titles give each image's top-1 prediction and probability, green when it matches the clean
    prediction and red when it differs; the row label names the reference class and the edit.
    """
    rows = predictions.set_index("cf_id").loc[list(cf_ids)] if len(cf_ids) else predictions[:0]
    if not len(rows):
        return _empty(path, "no counterfactuals to show")
    store = BuildStore(build_dir)
    feather = build_feather(store)
    figure = Figure(figsize=(13, 2.45 * len(rows)))
    axes = figure.subplots(len(rows), 6, squeeze=False)
    for line, (cf_id, row) in zip(axes, rows.iterrows(), strict=True):
        image = store.load_image(row["image_path"])
        concept = store.load_mask(row["mask_path"])
        control = control_mask(concept, int(row["seed"]), row["mask_id"], row["placement"])
        stylized = store.load_image(row["stylized_path"])
        controlled = composite(image, stylized, control, float(row["blend"]), feather)
        counterfactual = (
            store.load_image(row["cf_path"])
            if store.exists(row["cf_path"])
            else composite(image, stylized, concept, float(row["blend"]), feather)
        )
        clean = row["clean_pred"]
        fill = neutral_fill(image, concept, row["neutral"])
        neutral = composite(image, fill, concept, float(row["blend"]), feather)

        def caption(prefix: str, which: str, row: pd.Series = row) -> str:
            return f"{prefix}: {_short(row[f'{which}_pred_name'])} {row[f'{which}_pred_prob']:.2f}"

        _titled(line[0], image, caption("clean", "clean"), None)
        _titled(line[1], _overlay(image, concept), f"concept: {row['concept']}", None)
        _titled(line[2], counterfactual, caption("cf", "cf"), row["cf_pred"] == clean)
        _titled(line[3], neutral, caption("neutral", "neutral"), row["neutral_pred"] == clean)
        _titled(line[4], _overlay(image, control), f"random mask ({row['area_frac']:.0%})", None)
        _titled(line[5], controlled, caption("random", "ctrl"), row["ctrl_pred"] == clean)
        line[0].set_ylabel(
            f"{_short(row['reference_name'], 18)}\n{row['style_image']}\n{str(cf_id)[:8]}",
            fontsize=7.5,
        )
    figure.tight_layout()
    return _save(figure, path)
