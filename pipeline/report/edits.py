"""The editing methods compared: tables, Markdown, a figure and HTML from the edit results.

Reads ``BUILD/edits/results.parquet`` typed (:func:`pipeline.store.edit_results.read_results`:
one row per case x method x grid candidate x group, written by
:func:`pipeline.editing.runner.run_edits`) and writes next to it ``comparison.parquet`` (per
model, layer, method and group, over the budget-selected candidates: the mean and 95% t interval
over cases of each metric), ``comparison.md`` and ``comparison.png``, the curves of every
candidate (``curves.parquet``: the summary at locality 99 / 95 %, ``curve_points.parquet``,
``curves.png``; :mod:`pipeline.report.edit_curves`), the style-transfer matrix where cases differ
in their exemplars' style (``style_matrix.png``; :mod:`pipeline.report.style_matrix`), plus the
page ``BUILD/report/edits.html``.
:func:`comparison_html` is the same comparison as a fragment for the sensitivity report.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
import pandas as pd
from markupsafe import Markup

from pipeline.cases import CLEAN, EXEMPLARS, RESULT_GROUPS, TEST_GROUPS
from pipeline.edit_stats import parse_bits, pooled_errors_corrected
from pipeline.report.edit_curves import (
    curve_table,
    edit_curves,
    front_margins,
    margin_table,
    plot_curves,
)
from pipeline.report.stats import mean_interval
from pipeline.report.style_matrix import write_style_matrix
from pipeline.store.atomic import atomic_write_bytes, atomic_write_text
from pipeline.store.edit_results import latest_runs, read_results
from pipeline.store.edits_layout import (
    BUDGET_FILE,
    COMPARISON_FILE,
    COMPARISON_MD,
    COMPARISON_PNG,
    CURVE_POINTS_FILE,
    CURVES_FILE,
    CURVES_PNG,
    EDITS_PAGE,
    MARGINS_FILE,
    RESULTS_FILE,
    edits_dir,
    read_frame,
    write_frame,
)

# metrics compared per test group, and metrics of the case as a whole (the same on every row)
COMPARED = {
    "errors_corrected": "errors corrected (%)",
    "gr": "GR (%)",
    "changed": "top-1 changed (%)",
    "dlogp": "Δ log p(reference)",
}
CASE_LEVEL = {
    "clean_drop_pp": "clean drop (pp)",
    "sr": "SR (%)",
    "lr": "LR (%)",
    "val_drop_pp": "validation drop (pp)",
    "select_s": "select+edit time (s)",
    "edit_s": "edit time (s)",
}


def _interval(values: pd.Series) -> tuple[float, float, float, int]:
    array = values.astype(float).to_numpy()
    n = int((~np.isnan(array)).sum())
    mean, low, high = mean_interval(array)
    return float(mean), float(low), float(high), n


def compare(results: pd.DataFrame) -> pd.DataFrame:
    """Per (model, layer, method, group): mean and 95% t interval over cases of each metric.

    Only the budget-selected candidate of each (case, method) is compared here (``selected``;
    the whole grid is :func:`pipeline.report.edit_curves.edit_curves`). Columns ``<metric>``,
    ``<metric>_low``, ``<metric>_high``, ``<metric>_n`` (cases with a value: errors corrected
    is undefined for a case with no error to correct), pooled ``e_pre`` / ``e_post`` sums,
    ``within_budget`` (cases whose selection met a budget their validation split resolves),
    ``budget_unresolved`` (cases with too few validation images to tell) and
    ``grid_defect`` (cases on which no candidate keeps locality ≥ 99 %).
    """
    if "selected" in results:
        results = results[results["selected"].astype(bool)]
    if results.empty:
        return pd.DataFrame()
    results = results.copy()
    for column in COMPARED:
        if column not in results:
            results[column] = math.nan
    if "measurable" in results:  # unmeasurable cases (E_pre below the minimum) are not averaged
        measurable = results["measurable"].fillna(False).astype(bool)
        results.loc[~measurable, "errors_corrected"] = math.nan
    rows = []
    keys = ["model_id", "layer", "method", "group"]
    for key, part in results.groupby(keys, sort=False):
        row: dict[str, Any] = dict(zip(keys, key, strict=True))
        row["n_cases"] = int(part["case_id"].nunique())
        for column in [*COMPARED, *CASE_LEVEL]:
            mean, low, high, n = _interval(part[column])
            row.update({column: mean, f"{column}_low": low, f"{column}_high": high})
            row[f"{column}_n"] = n
        row["e_pre"] = int(part["e_pre"].sum())
        row["e_post"] = int(part["e_post"].sum())
        row.update(_pooled(part))
        row["n_images"] = int(part["n"].sum())
        row["within_budget"] = int(part["within_budget"].eq(True).sum())  # None: unresolved
        resolved = part.get("budget_resolved", pd.Series(True, index=part.index))
        row["budget_unresolved"] = int((~resolved.astype(bool)).sum())
        row["grid_defect"] = int(part.get("grid_defect", pd.Series(False, index=part.index)).sum())
        rows.append(row)
    frame = pd.DataFrame(rows)
    order = {g: i for i, g in enumerate(RESULT_GROUPS)}
    methods = list(dict.fromkeys(results["method"]))
    frame["_m"] = frame["method"].map(methods.index)
    frame["_g"] = frame["group"].map(lambda g: order.get(g, len(order)))
    return frame.sort_values(["model_id", "layer", "_m", "_g"]).drop(columns=["_m", "_g"])


def _pooled(part: pd.DataFrame) -> dict[str, Any]:
    """Errors corrected pooled over every image of the cases, with a bootstrap interval over
    images; ``unmeasurable``: cases whose E_pre is below the run's minimum."""
    pre, post = [], []
    for text in part.get("err_bits", []):
        a, b = parse_bits(text)
        pre.append(a)
        post.append(b)
    flags_pre = np.concatenate(pre) if pre else np.zeros(0, bool)
    flags_post = np.concatenate(post) if post else np.zeros(0, bool)
    value, low, high = pooled_errors_corrected(flags_pre, flags_post)
    if not len(flags_pre):  # results without per-image flags: the pooled counts only
        e_pre, e_post = float(part["e_pre"].sum()), float(part["e_post"].sum())
        value = max(-100.0, 100.0 * (e_pre - e_post) / e_pre) if e_pre else math.nan
    unmeasurable = 0
    if "measurable" in part:
        unmeasurable = int((~part["measurable"].fillna(False).astype(bool)).sum())
    return {
        "ec_pooled": value,
        "ec_pooled_low": low,
        "ec_pooled_high": high,
        "n_pooled": len(flags_pre),
        "unmeasurable": unmeasurable,
    }


def _fmt(mean: float, low: float, high: float, digits: int = 1) -> str:
    if math.isnan(mean):
        return "–"
    if math.isnan(low):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def _cell(row: Mapping[str, Any], column: str, digits: int = 1) -> str:
    return _fmt(row[column], row[f"{column}_low"], row[f"{column}_high"], digits)


def comparison_tables(comparison: pd.DataFrame) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, header, rows) of the two comparison tables, as display strings."""
    tables = []
    for (model_id, layer), part in comparison.groupby(["model_id", "layer"], sort=False):
        methods = list(dict.fromkeys(part["method"]))
        header = ["method", *[g for g in (EXEMPLARS, *TEST_GROUPS) if g in set(part["group"])]]
        rows = []
        for method in methods:
            cells = [method]
            for group in header[1:]:
                found = part[(part["method"] == method) & (part["group"] == group)]
                cells.append(_cell(found.iloc[0], "errors_corrected") if len(found) else "–")
            rows.append(cells)
        tables.append(
            (f"{model_id} @ {layer}: errors corrected (%), mean [95% CI] over cases", header, rows)
        )
        pooled = []
        for method in methods:
            cells = [method]
            for group in header[1:]:
                found = part[(part["method"] == method) & (part["group"] == group)]
                if not len(found):
                    cells.append("–")
                    continue
                row = found.iloc[0]
                cells.append(
                    f"{_fmt(row['ec_pooled'], row['ec_pooled_low'], row['ec_pooled_high'])} "
                    f"({row['e_pre']}→{row['e_post']}, n={row['n_pooled']})"
                )
            pooled.append(cells)
        tables.append(
            (
                f"{model_id} @ {layer}: errors corrected (%), pooled over images [95% bootstrap "
                "CI] (E_pre→E_post, n)",
                header,
                pooled,
            )
        )
        header2 = [
            "method",
            "cases",
            "within budget",
            "clean drop (pp)",
            "SR (%)",
            "LR (%)",
            "validation drop (pp)",
            "select+edit (s)",
        ]
        rows2 = []
        for method in methods:
            found = part[(part["method"] == method) & (part["group"] == CLEAN)]
            if not len(found):
                continue
            row = found.iloc[0]
            rows2.append(
                [
                    method,
                    str(row["n_cases"]),
                    _budget_cell(row),
                    _cell(row, "clean_drop_pp", 2),
                    _cell(row, "sr"),
                    _cell(row, "lr"),
                    _cell(row, "val_drop_pp", 2),
                    _cell(row, "select_s"),
                ]
            )
        tables.append((f"{model_id} @ {layer}: cost and locality", header2, rows2))
    return tables


def _budget_cell(row: Mapping[str, Any]) -> str:
    """ "2/4 (1 unresolved)": cases within budget, and those whose split cannot tell."""
    cell = f"{row['within_budget']}/{row['n_cases']}"
    unresolved = int(row.get("budget_unresolved", 0) or 0)
    return cell + (f" ({unresolved} unresolved)" if unresolved else "")


def budget_points(results: pd.DataFrame) -> pd.DataFrame:
    """Per case and method, the budget-selected candidate: the clean change its validation
    split predicted, the change measured on the held-out clean images, their gap, what one
    validation image weighs and whether the split resolves the budget, and the general set's
    accuracy drop.

    Args:
        results: the results table (:func:`pipeline.store.edit_results.read_results`).
    """
    clean = results[(results["group"] == "clean") & results["selected"]]
    columns = ["case_id", "method", "candidate", "n_validation", "pp_per_image"]
    columns += ["budget_resolved", "val_drop_pp", "clean_drop_pp", "general_drop_pp"]
    frame = clean[columns].drop_duplicates(["case_id", "method"]).reset_index(drop=True)
    frame["gap_pp"] = (frame["clean_drop_pp"] - frame["val_drop_pp"]).abs()
    return frame


def budget_table(points: pd.DataFrame) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, header, rows) of :func:`budget_points`, as display strings."""
    if points.empty:
        return []
    header = ["case", "method", "selected", "validation change (pp)", "held-out change (pp)"]
    header += ["gap (pp)", "1 validation image (pp)", "general set drop (pp)"]

    def pp(value: float) -> str:
        return "–" if pd.isna(value) else f"{value:.2f}"

    rows = [
        [
            str(row.case_id),
            str(row.method),
            str(row.candidate),
            pp(row.val_drop_pp) + ("" if row.budget_resolved else " (unresolved)"),
            pp(row.clean_drop_pp),
            pp(row.gap_pp),
            pp(row.pp_per_image),
            pp(row.general_drop_pp),
        ]
        for row in points.itertuples()
    ]
    return [("Budget point: the change the validation split predicted, and the held-out one",
             header, rows)]  # fmt: skip


def comparison_markdown(
    comparison: pd.DataFrame,
    curves: pd.DataFrame | None = None,
    budget: pd.DataFrame | None = None,
    margins: pd.DataFrame | None = None,
) -> str:
    """The comparison tables (and the curve summary, when given) as Markdown.

    Args:
        comparison: :func:`compare` output.
        curves: the summary of :func:`pipeline.report.edit_curves.edit_curves`.
        budget: :func:`budget_points`.
        margins: :func:`pipeline.report.edit_curves.front_margins`.
    """
    if comparison.empty:
        return "No edit results yet.\n"
    out = []
    tables = comparison_tables(comparison)
    tables += curve_table(curves if curves is not None else pd.DataFrame())
    tables += margin_table(margins if margins is not None else pd.DataFrame())
    tables += budget_table(budget if budget is not None else pd.DataFrame())
    for title, header, rows in tables:
        out.append(f"### {title}\n")
        out.append("| " + " | ".join(header) + " |")
        out.append("|" + "|".join("---" for _ in header) + "|")
        out += ["| " + " | ".join(row) + " |" for row in rows]
        out.append("")
    out.append(
        "Errors corrected: 100·(E_pre − E_post)/E_pre, clipped at −100 %, E = misclassified "
        "counterfactuals whose clean image the unedited model classifies correctly (label-free: "
        "whose top-1 differs from their clean image's); cases below the minimum E_pre are "
        "unmeasurable and left out of the mean. Pooled: over every image of the cases, bootstrap "
        "interval over images. Clean drop: accuracy on the case's heldout clean images before "
        "minus after. Intervals over cases: Student t. Within budget: of the cases whose "
        "validation split resolves the budget; unresolved: fewer validation images than "
        "min_validation (one image weighs 100/n pp). Curves: every grid candidate evaluated on "
        "the test groups; locality (LR) = heldout clean images whose top-1 is unchanged; EC "
        "read on the Pareto front, interpolated linearly; a front that never reaches LR 99 % is "
        "a grid defect, not a result."
    )
    return "\n".join(out) + "\n"


def plot_comparison(comparison: pd.DataFrame, path: Path) -> Path:
    """Bars of errors corrected per test group and the clean drop per method, 95% CIs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = [g for g in (EXEMPLARS, *TEST_GROUPS) if g in set(comparison["group"])]
    methods = list(dict.fromkeys(comparison["method"]))
    fig, (left, right) = plt.subplots(
        1, 2, figsize=(12, 4.2), gridspec_kw={"width_ratios": [3, 1.2]}
    )
    width = 0.8 / max(1, len(methods))
    x = np.arange(len(groups))

    def errors(frame: pd.DataFrame, column: str) -> np.ndarray:
        mean = frame[column].to_numpy(float)
        low = np.nan_to_num(mean - frame[f"{column}_low"].to_numpy(float))
        high = np.nan_to_num(frame[f"{column}_high"].to_numpy(float) - mean)
        return np.vstack([low, high])

    for i, method in enumerate(methods):
        part = comparison[comparison["method"] == method].set_index("group")
        part = part.reindex(groups)
        left.bar(
            x + (i - (len(methods) - 1) / 2) * width,
            part["errors_corrected"].to_numpy(float),
            width,
            yerr=errors(part, "errors_corrected"),
            capsize=2,
            label=method,
        )
    left.axhline(0, color="black", linewidth=0.6)
    left.set_xticks(x, [g.replace("_", "\n") for g in groups], fontsize=8)
    left.set_ylabel("errors corrected (%)")
    left.legend(fontsize=8)
    clean = comparison[comparison["group"] == CLEAN].set_index("method").reindex(methods)
    right.bar(
        np.arange(len(methods)),
        clean["clean_drop_pp"].to_numpy(float),
        yerr=errors(clean, "clean_drop_pp"),
        capsize=3,
        color=[f"C{i}" for i in range(len(methods))],
    )
    right.axhline(0, color="black", linewidth=0.6)
    right.set_xticks(np.arange(len(methods)), methods, rotation=30, ha="right", fontsize=8)
    right.set_ylabel("clean accuracy drop (pp)")
    fig.suptitle("Edits compared: mean and 95% CI over cases", fontsize=10)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=110, format="png")
    plt.close(fig)
    return atomic_write_bytes(path, buffer.getvalue())


def write_comparison(
    build_dir: str | Path,
    cases: Sequence[str] | None = None,
    methods: Sequence[str] | None = None,
) -> Path | None:
    """Write ``comparison.parquet``, ``comparison.md`` and ``comparison.png`` from the results
    (and the page ``report/edits.html``; ``style_matrix.png`` where cases differ in their
    exemplars' style); returns the Markdown path, or None when there are no results.

    ``cases`` / ``methods``: compare only these (one experiment's cases and methods, as
    ``conceptswap edit -c CONFIG`` does), not every result the build holds (default); the Markdown
    then says how many other cases the build holds.
    """
    out = edits_dir(build_dir)
    every = latest_runs(read_results(out / RESULTS_FILE))
    results = every
    if cases is not None:
        results = results[results["case_id"].isin(list(cases))]
    if methods is not None:
        results = results[results["method"].isin(list(methods))]
    if results.empty:
        return None
    comparison = compare(results)
    write_frame(comparison, out / COMPARISON_FILE)
    plot_comparison(comparison, out / COMPARISON_PNG)
    points, curves = edit_curves(results)
    write_frame(curves, out / CURVES_FILE)
    write_frame(points, out / CURVE_POINTS_FILE)
    plot_curves(points, out / CURVES_PNG)
    budget = budget_points(results)
    write_frame(budget, out / BUDGET_FILE)
    write_comparison_page(build_dir)
    margins = front_margins(points)
    write_frame(margins, out / MARGINS_FILE)
    markdown = comparison_markdown(comparison, curves, budget, margins)
    markdown += write_style_matrix(out, results)
    others = every["case_id"].nunique() - results["case_id"].nunique()
    if others:
        markdown += (
            f"\nCompared: {results['case_id'].nunique()} cases and the methods "
            f"{', '.join(sorted(results['method'].unique()))}; the build's results hold "
            f"{others} other case{'s' if others != 1 else ''} (`write_comparison(build)` "
            "compares every one).\n"
        )
    return atomic_write_text(out / COMPARISON_MD, markdown)


FRAGMENT = jinja2.Template(
    """<section class="edits">
{%- if tables is none %}<p>No edit results.</p></section>
{%- else %}
<h2>Editing: methods compared</h2>
{% for title, header, rows in tables %}<h3>{{ title }}</h3>
<table><thead><tr>{% for cell in header %}<th>{{ cell }}</th>{% endfor %}</tr></thead><tbody>
{% for row in rows %}<tr>{% for cell in row %}<td>{{ cell }}</td>{% endfor %}</tr>
{% endfor %}</tbody></table>
{% endfor %}
{%- if figure %}<img src="{{ figure }}" style="max-width:100%"
alt="errors corrected and clean accuracy drop per method">
{% endif -%}
{%- if curves %}<h3>Curves: errors corrected against locality, every grid candidate</h3>
<img src="{{ curves }}" style="max-width:100%"
alt="per method: every candidate, its Pareto front and the budget-selected point">
{% endif -%}
<p>Errors corrected per test group (mean and 95% t interval over cases); hyper-parameters
chosen per case on validation images under the clean-accuracy budget.</p>
</section>
{%- endif %}""",
    autoescape=True,
)

PAGE = jinja2.Template(
    """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>conceptswap edits: {{ build_name }}</title>
<style>
body { font: 14px/1.45 system-ui, sans-serif; margin: 24px; }
table { border-collapse: collapse; font-size: 12px; }
th, td { border: 1px solid #d0d7de; padding: 3px 7px; text-align: right; }
td:first-child, th:first-child { text-align: left; }
</style></head><body>
{{ body }}
</body></html>
""",
    autoescape=True,
)


def write_comparison_page(build_dir: str | Path) -> Path:
    """``BUILD/report/edits.html``: the comparison as a page of its own (the sensitivity report,
    ``report/index.html``, also shows it when it is written after the edits)."""
    page = Path(build_dir) / EDITS_PAGE
    body = Markup(comparison_html(build_dir, relative_to=page.parent))
    return atomic_write_text(page, PAGE.render(build_name=Path(build_dir).name, body=body))


def comparison_html(build_dir: str | Path, relative_to: str | Path | None = None) -> str:
    """The comparison as an HTML fragment (tables + the figure as a relative ``<img>``).

    ``relative_to``: the folder of the page that includes it (default ``BUILD/report``).
    Returns a short note when the build has no edit results.
    """
    out = edits_dir(build_dir)
    path = out / COMPARISON_FILE
    if not path.is_file():
        return FRAGMENT.render(tables=None)
    base = Path(relative_to) if relative_to else Path(build_dir) / "report"

    def src(figure: Path) -> str | None:
        if not figure.is_file():
            return None
        return Path(os.path.relpath(figure.resolve(), base.resolve())).as_posix()

    tables = comparison_tables(pd.read_parquet(path))
    tables += curve_table(read_frame(out / CURVES_FILE))
    tables += budget_table(read_frame(out / BUDGET_FILE))
    return FRAGMENT.render(
        tables=tables, figure=src(out / COMPARISON_PNG), curves=src(out / CURVES_PNG)
    )
