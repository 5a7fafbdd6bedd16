"""Editing methods compared as curves: errors corrected against locality, from every candidate.

Reads the results table (every grid candidate of every method evaluated on the held-out parts,
:class:`~pipeline.store.edit_results.EditResultRow`) and, per (model, layer, method) and per
test part (the four test groups, and ``test``: all four pooled), pools each candidate's
per-image outcomes over the cases: locality = share of heldout clean images whose top-1 is
unchanged, errors corrected = ``100·(ΣE_pre − ΣE_post)/ΣE_pre``. The Pareto front of those
points is summarised at locality 99 % and 95 % (:func:`pipeline.edit_curves.bootstrap_at_locality`,
intervals by resampling images); a front that never reaches 99 % is a grid defect. The
budget-selected point (each case's selected candidate, pooled the same way) is marked.
"""

from __future__ import annotations

import io
import itertools
import math
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.cases import CLEAN, TEST_GROUPS
from pipeline.edit_curves import (
    THRESHOLDS,
    bootstrap_at_locality,
    curve_points,
    front_indices,
    front_margin,
    grid_defect,
)
from pipeline.edit_stats import parse_bits
from pipeline.store.atomic import atomic_write_bytes

ALL_TESTS = "test"  # the four test groups pooled
PARTS = (ALL_TESTS, *TEST_GROUPS)


def _same(text: str) -> np.ndarray:
    return np.array([c == "1" for c in str(text or "")], dtype=bool)


def _outcomes(
    rows: pd.DataFrame, cases: list[str], part: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(unchanged, err_pre, err_post) of one candidate over ``cases``, concatenated in order."""
    groups = TEST_GROUPS if part == ALL_TESTS else (part,)
    unchanged, pre, post = [], [], []
    indexed = rows.set_index(["case_id", "group"])
    for case in cases:
        if (case, CLEAN) not in indexed.index:
            continue  # no row of this candidate for the case (a selection of another grid)
        unchanged.append(_same(indexed.loc[(case, CLEAN), "same_bits"]))
        for group in groups:
            if (case, group) in indexed.index:
                a, b = parse_bits(indexed.loc[(case, group), "err_bits"])
                pre.append(a)
                post.append(b)

    def joined(parts: list[np.ndarray]) -> np.ndarray:
        return np.concatenate(parts) if parts else np.zeros(0, bool)

    return joined(unchanged), joined(pre), joined(post)


def _complete_runs(part: pd.DataFrame) -> tuple[pd.DataFrame, list[str], list[str]]:
    """The rows of the runs on the method's most common grid (one run per case, the last),
    their cases, and that grid's candidates in grid order: only they are pooled, so that
    every candidate covers the same images."""
    grids = {
        key: tuple(rows.sort_values("candidate_index")["candidate"].drop_duplicates())
        for key, rows in part.groupby(["case_id", "run_key"], sort=False)
    }
    grid = Counter(grids.values()).most_common(1)[0][0]
    runs = {case: key for (case, key), g in grids.items() if g == grid}
    rows = part[part["run_key"] == part["case_id"].map(runs)]
    return rows, list(runs), list(grid)


def edit_curves(
    results: pd.DataFrame, n_boot: int = 2000, seed: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Curve points and their summary, per (model, layer, method, part).

    Points: one row per candidate (``locality`` fraction, ``errors_corrected`` %,
    ``on_front``), plus one ``selected`` row (each case's budget-selected candidate, pooled).
    Summary: ``ec_at_99`` / ``ec_at_95`` with ``_low`` / ``_high`` (95 % bootstrap over
    images), ``grid_defect`` (the front never reaches locality 99 %), ``cases``,
    ``cases_grid_defect`` (cases on which no candidate keeps 99 %), ``n_clean`` / ``n_cf``
    (images pooled) and the selected point's ``selected_locality`` /
    ``selected_errors_corrected``.

    Args:
        results: the results table (:func:`pipeline.store.edit_results.read_results`).
        n_boot: bootstrap resamples.
        seed: of the bootstrap.
    """
    if results.empty or "candidate_index" not in results:
        return pd.DataFrame(), pd.DataFrame()
    points: list[dict[str, Any]] = []
    summary: list[dict[str, Any]] = []
    keys = ["model_id", "layer", "method"]
    for key, part in results.groupby(keys, sort=False):
        base = dict(zip(keys, key, strict=True))
        chosen, cases, grid = _complete_runs(part)
        by_candidate = {c: rows for c, rows in chosen.groupby("candidate", sort=False)}
        selected_rows = chosen[chosen["selected"].astype(bool)]
        for name in PARTS:
            outcomes = [_outcomes(by_candidate[c], cases, name) for c in grid]
            unchanged = np.stack([o[0] for o in outcomes])
            err_pre = outcomes[0][1]
            err_post = np.stack([o[2] for o in outcomes])
            curve = curve_points(unchanged, err_pre, err_post)
            front = set(front_indices(curve))
            for index, (candidate, (loc, ec)) in enumerate(zip(grid, curve, strict=True)):
                points.append(
                    {
                        **base,
                        "part": name,
                        "kind": "candidate",
                        "candidate": candidate,
                        "locality": loc,
                        "errors_corrected": ec,
                        "on_front": index in front,
                    }
                )
            sel_unchanged, sel_pre, sel_post = _outcomes(selected_rows, cases, name)
            ((sel_loc, sel_ec),) = curve_points(sel_unchanged[None], sel_pre, sel_post[None])
            points.append(
                {
                    **base,
                    "part": name,
                    "kind": "selected",
                    "candidate": "budget-selected",
                    "locality": sel_loc,
                    "errors_corrected": sel_ec,
                    "on_front": False,
                }
            )
            at = bootstrap_at_locality(unchanged, err_pre, err_post, THRESHOLDS, n_boot, seed)
            row = {**base, "part": name, "cases": len(cases)}
            for reading in at:
                label = f"ec_at_{round(reading.threshold * 100)}"
                row.update(
                    {
                        label: reading.value,
                        f"{label}_low": reading.low,
                        f"{label}_high": reading.high,
                    }
                )
            defect_cases = chosen.drop_duplicates("case_id")["grid_defect"].astype(bool).sum()
            row.update(
                {
                    # about locality only (the clean images): a group without errors to
                    # correct has no front to read, which is not a defect of the grid
                    "grid_defect": grid_defect([loc for loc, _ in curve], THRESHOLDS[0]),
                    "n_errors": int(err_pre.sum()),
                    "cases_grid_defect": int(defect_cases),
                    "n_clean": int(unchanged.shape[1]),
                    "n_cf": int(err_pre.size),
                    "selected_locality": sel_loc,
                    "selected_errors_corrected": sel_ec,
                }
            )
            summary.append(row)
    return pd.DataFrame(points), pd.DataFrame(summary)


def _fmt(value: float, low: float, high: float) -> str:
    if math.isnan(value):
        return "–"
    if math.isnan(low):
        return f"{value:.1f}"
    return f"{value:.1f} [{low:.1f}, {high:.1f}]"


def curve_table(summary: pd.DataFrame) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, header, rows) of the curve summary, per (model, layer), as display strings."""
    tables = []
    if summary.empty:
        return tables
    header = [
        "method",
        "part",
        "EC at LR ≥ 99 %",
        "EC at LR ≥ 95 %",
        "budget point (LR %, EC %)",
        "cases",
        "images (clean, cf)",
    ]
    for (model_id, layer), part in summary.groupby(["model_id", "layer"], sort=False):
        rows = []
        for _, row in part.iterrows():
            at99 = _fmt(row["ec_at_99"], row["ec_at_99_low"], row["ec_at_99_high"])
            at95 = _fmt(row["ec_at_95"], row["ec_at_95_low"], row["ec_at_95_high"])
            if row["grid_defect"]:
                at99 = "grid defect: no candidate reaches LR 99 %"
            elif not row.get("n_errors", 1):
                at99 = at95 = "– (no errors to correct in this group)"
            cases = str(row["cases"])
            if row["cases_grid_defect"]:
                cases += f" ({row['cases_grid_defect']} without a candidate at LR ≥ 99 %)"
            rows.append(
                [
                    row["method"],
                    row["part"],
                    at99,
                    at95,
                    f"{100 * row['selected_locality']:.1f}, {row['selected_errors_corrected']:.1f}",
                    cases,
                    f"{row['n_clean']}, {row['n_cf']}",
                ]
            )
        tables.append(
            (
                f"{model_id} @ {layer}: errors corrected (%) on the Pareto front at a locality, "
                "pooled over images [95% bootstrap CI]",
                header,
                rows,
            )
        )
    return tables


def front_margins(points: pd.DataFrame, low: float = THRESHOLDS[-1]) -> pd.DataFrame:
    """Per (model, layer, part) and ordered pair of methods: the least margin (pp of errors
    corrected) by which the first's front lies above the second's at every locality from
    ``low`` to 100 % (:func:`pipeline.edit_curves.front_margin`); positive: above everywhere.

    Args:
        points: the curve points of :func:`edit_curves`.
        low: the lowest locality compared (a fraction).
    """
    rows: list[dict[str, Any]] = []
    if points.empty:
        return pd.DataFrame(rows)
    on_front = points[(points["kind"] == "candidate") & points["on_front"].astype(bool)]
    keys = ["model_id", "layer", "part"]
    for key, part in on_front.groupby(keys, sort=False):
        fronts = {
            method: [
                (float(r.locality), float(r.errors_corrected))
                for r in rows_.sort_values("locality", ascending=False).itertuples()
            ]
            for method, rows_ in part.groupby("method", sort=False)
        }
        for first, second in itertools.permutations(fronts, 2):
            margin = front_margin(fronts[first], fronts[second], low)
            rows.append({**dict(zip(keys, key, strict=True)), "method": first,
                         "other": second, "low": low, "margin": margin})  # fmt: skip
    return pd.DataFrame(rows)


def margin_table(margins: pd.DataFrame) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, header, rows): per part, each method's least margin over every other method."""
    tables = []
    if margins.empty:
        return tables
    for (model_id, layer), frame in margins.groupby(["model_id", "layer"], sort=False):
        others = list(dict.fromkeys(frame["other"]))
        rows = []
        for (method, part), group in frame.groupby(["method", "part"], sort=False):
            by_other = dict(zip(group["other"], group["margin"], strict=True))
            cells = [
                "" if o == method else (f"{by_other[o]:+.1f}" if o in by_other else "–")
                for o in others
            ]
            rows.append([method, part, *cells])
        low = 100 * float(frame["low"].iloc[0])
        tables.append(
            (
                f"{model_id} @ {layer}: fronts compared, the least margin (pp of errors "
                f"corrected) of the row's front over the column's at every locality "
                f"≥ {low:.0f} % (positive: above everywhere)",
                ["method", "part", *[f"over {o}" for o in others]],
                rows,
            )
        )
    return tables


def plot_curves(points: pd.DataFrame, path: Path) -> Path:
    """One panel per test part: every candidate, each method's front, the budget point."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    parts = [p for p in PARTS if p in set(points["part"])]
    methods = list(dict.fromkeys(points["method"]))
    fig, axes = plt.subplots(1, len(parts), figsize=(3.6 * len(parts), 3.6), squeeze=False)
    for ax, name in zip(axes[0], parts, strict=True):
        here = points[points["part"] == name]
        for i, method in enumerate(methods):
            mine = here[here["method"] == method]
            grid = mine[mine["kind"] == "candidate"]
            front = grid[grid["on_front"]].sort_values("locality", ascending=False)
            color = f"C{i}"
            ax.scatter(
                100 * grid["locality"], grid["errors_corrected"], s=10, color=color, alpha=0.4
            )
            ax.plot(
                100 * front["locality"],
                front["errors_corrected"],
                "-o",
                ms=3,
                color=color,
                label=method,
            )
            chosen = mine[mine["kind"] == "selected"]
            ax.scatter(
                100 * chosen["locality"],
                chosen["errors_corrected"],
                marker="*",
                s=120,
                color=color,
                edgecolor="black",
                zorder=5,
            )
        ax.scatter([100], [0], marker="x", color="black", zorder=6)
        for threshold in THRESHOLDS:
            ax.axvline(100 * threshold, color="grey", linestyle=":", linewidth=0.8)
        ax.invert_xaxis()  # no change on the left, strong change to the right
        ax.set_title(name.replace("_", " "), fontsize=9)
        ax.set_xlabel("locality: heldout top-1 unchanged (%)", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0][0].set_ylabel("errors corrected (%)", fontsize=8)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(
        "Every grid candidate (dots), each method's Pareto front (line), the budget point (star), "
        "no edit (x)",
        fontsize=9,
    )
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=110, format="png")
    plt.close(fig)
    return atomic_write_bytes(path, buffer.getvalue())
