"""The HTML sensitivity report: one self-contained page, `BUILD/report/index.html`.

The page has inline CSS and no scripts or external resources; its images are PNGs next to it
(`<slug>/heatmap.png`, ...) referenced relatively, or embedded as data URIs with
`embed_images=True` so the single file can be mailed around. Several models' predictions on the
same build are shown side by side on the same counterfactuals.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import pandas as pd
import pyarrow as pa
from markupsafe import Markup

from pipeline.report import figures
from pipeline.report.edits import comparison_html
from pipeline.report.formatting import STAT_COLUMNS, format_diff, format_stat
from pipeline.report.sensitivity import (
    by_class,
    by_concept,
    model_dir,
    report_root,
    sensitivity_table,
    summarize,
)
from pipeline.store import BuildStore
from pipeline.store.atomic import atomic_write_text
from pipeline.store.edits_layout import COMPARISON_FILE, edits_dir
from pipeline.store.manifest import write_table

INDEX_JSON = "index.json"  # the classifiers (slugs) of the last written report
FIGURES = {
    "heatmap": "heatmap.png",
    "top": "top_sensitivities.png",
    "examples": "examples.png",
}


def _short_id(classifier_id: str) -> str:
    """The model name without the weights hash: `timm:tf_efficientnet_lite0`."""
    return classifier_id.split("@")[0]


def _cell(text: str) -> tuple[str, str]:
    """(value, interval) of a formatted statistic, shown on two lines in the page."""
    value, _, interval = text.partition(" (")
    return value, interval[:-1]


def _stat_cells(row: pd.Series) -> list[Any]:
    counts: list[Any] = [str(int(row["n"])), str(int(row["n_images"]))]
    return counts + [_cell(format_stat(row, column, kind)) for _, column, kind in STAT_COLUMNS]


STAT_HEADER = ["n", "images"] + [header for header, _, _ in STAT_COLUMNS]


def _table(frame: pd.DataFrame, keys: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """Header and formatted cells of a statistics table (one row per group), for the page."""
    rows = []
    for _, row in frame.iterrows():
        names = [
            str(row[c]).replace("_", " ") if c == "class_name" else str(row[c]) for _, c in keys
        ]
        rows.append(names + _stat_cells(row))
    return {"header": [h for h, _ in keys] + STAT_HEADER, "rows": rows}


def _summary(sections: Sequence[ModelSection]) -> dict[str, Any]:
    """The pooled statistics, one column per model (models compare along a row)."""
    columns = [_stat_cells(s.overall.iloc[0]) for s in sections]
    rows = [[name, *(column[i] for column in columns)] for i, name in enumerate(STAT_HEADER)]
    return {"header": ["", *(_short_id(s.classifier_id) for s in sections)], "rows": rows}


# -- per-model outputs -------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelSection:
    """One classifier's tables and figures, as written under `BUILD/report/<slug>/`."""

    classifier_id: str
    slug: str
    predictions: pd.DataFrame
    overall: pd.DataFrame
    by_concept: pd.DataFrame
    by_class: pd.DataFrame
    table: pd.DataFrame
    figures: dict[str, Path]


def write_model_outputs(
    build_dir: str | Path,
    predictions: pd.DataFrame,
    example_ids: Sequence[str],
    kept_only: bool = False,
    top_k: int = 15,
) -> ModelSection:
    """Write `sensitivity.parquet`, `by_concept.parquet`, `by_class.parquet` and the figures."""
    if not len(predictions):
        raise ValueError(
            f"{build_dir}: no predictions to report (the build has no counterfactuals)"
        )
    classifier_id = str(predictions["classifier_id"].iloc[0])
    folder = model_dir(build_dir, classifier_id)
    table = sensitivity_table(predictions, kept_only)
    concepts, classes = by_concept(predictions, kept_only), by_class(predictions, kept_only)
    for name, frame in (("sensitivity", table), ("by_concept", concepts), ("by_class", classes)):
        write_table(folder / f"{name}.parquet", pa.Table.from_pandas(frame, preserve_index=False))
    paths = {key: folder / name for key, name in FIGURES.items()}
    model = _short_id(classifier_id)
    heat = summarize(predictions, ("class", "concept"), kept_only)
    figures.heatmap(heat, paths["heatmap"], title=f"{model}: flip rate, concept − control")
    figures.top_sensitivities(table, paths["top"], k=top_k, title=f"{model}: top sensitivities")
    figures.example_grid(build_dir, predictions, example_ids, paths["examples"])
    return ModelSection(
        classifier_id=classifier_id,
        slug=folder.name,
        predictions=predictions,
        overall=summarize(predictions, (), kept_only),
        by_concept=concepts,
        by_class=classes,
        table=table,
        figures=paths,
    )


# -- the page ----------------------------------------------------------------------------------
TEMPLATE = jinja2.Template(
    """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>conceptswap sensitivity report: {{ build_name }}</title>
<style>
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px;
  color: #1f2328; background: #fff; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 18px; margin: 28px 0 8px; border-bottom: 1px solid #d0d7de; padding-bottom: 4px; }
h3 { font-size: 15px; margin: 18px 0 6px; }
.muted { color: #59636e; } code { font-size: 12px; background: #f6f8fa; padding: 1px 4px; }
table { border-collapse: collapse; margin: 6px 0 12px; font-size: 12px; }
th, td { border: 1px solid #d0d7de; padding: 3px 7px; text-align: right; white-space: nowrap; }
th { background: #f6f8fa; } td:first-child, th:first-child { text-align: left; }
.models { display: grid; grid-template-columns: repeat({{ sections|length }}, minmax(0, 1fr));
  gap: 24px; align-items: start; }
.model { min-width: 0; } .scroll { overflow-x: auto; }
img { max-width: 100%; height: auto; border: 1px solid #eaeef2; }
dl { display: grid; grid-template-columns: max-content auto; gap: 2px 14px; font-size: 13px; }
dt { font-weight: 600; }
.broken { color: #cf222e; } .ok { color: #1a7f37; } small { color: #59636e; font-size: 10.5px; }
</style></head><body>
{% macro grid(header, rows) -%}
<div class="scroll"><table>
<tr>{% for h in header %}<th>{{ h }}</th>{% endfor %}</tr>
{% for row in rows %}<tr>{% for c in row %}<td>{% if c is string %}{{ c }}{% else -%}
{{ c[0] }}{% if c[1] %}<br><small>{{ c[1] }}</small>{% endif %}{% endif %}</td>{% endfor %}</tr>
{% endfor %}</table></div>
{%- endmacro %}
<h1>Counterfactual sensitivity report</h1>
<div class="muted">build <code>{{ build_name }}</code> · {{ n_cf }} counterfactuals of
{{ n_images }} images · concepts: {{ concepts|join(", ") }} ·
textures: {{ textures|join(", ") }} · {{ labelled }} ·
rows: {{ "kept counterfactuals only" if kept_only else "all counterfactuals" }} ·
control: area-matched random mask ({{ placement }}), seed {{ seed }}</div>

<h2>Summary</h2>
{{ grid(summary.header, summary.rows) }}
<p class="muted">Rates with 95% Wilson intervals; differences (pp = percentage points) with
Newcombe's interval; probability changes with a t interval. Sensitivity = concept − control:
positive means re-texturing the concept breaks predictions more than re-texturing a random
region of the same area in the same image. Definitions at the end of the page.</p>

{% if comparison %}<h2>Models compared on the same counterfactuals</h2>
<h3>Concept sensitivity (flip rate, concept − control) per concept</h3>
{{ grid(comparison.concepts.header, comparison.concepts.rows) }}
<h3>Agreement between models</h3>
{{ grid(comparison.agreement.header, comparison.agreement.rows) }}
<h3>Example counterfactuals, every model: clean → counterfactual / control</h3>
<div class="scroll"><table><tr><th>counterfactual</th><th>reference</th><th>edit</th>
{% for s in sections %}<th><code>{{ s.short }}</code></th>{% endfor %}</tr>
{% for row in comparison.examples %}<tr><td><code>{{ row.cf_id }}</code></td>
<td>{{ row.reference }}</td><td>{{ row.edit }}</td>
{% for cell in row.models %}<td>{{ cell.clean }} →
<span class="{{ cell.cf_class }}">{{ cell.cf }}</span> /
<span class="{{ cell.ctrl_class }}">{{ cell.ctrl }}</span></td>{% endfor %}</tr>
{% endfor %}</table></div>{% endif %}

{% if edits %}{{ edits }}{% endif %}

<h2>Per model</h2>
<div class="models">
{% for s in sections %}<div class="model">
<h3><code>{{ s.id }}</code></h3>
<h3>By concept</h3>
{{ grid(s.by_concept.header, s.by_concept.rows) }}
<h3>Class × concept heatmap</h3>
<img src="{{ s.images.heatmap }}" alt="heatmap of concept sensitivity, {{ s.id }}">
<h3>Top sensitivities (class · concept · texture)</h3>
<img src="{{ s.images.top }}" alt="top sensitivities, {{ s.id }}">
<h3>Examples: original · concept mask · counterfactual · control mask · control</h3>
<img src="{{ s.images.examples }}" alt="example grid, {{ s.id }}">
<details><summary>By class ({{ s.n_classes }} classes)</summary>
{{ grid(s.by_class.header, s.by_class.rows) }}</details>
<details><summary>Per (class, concept, texture): top {{ s.top_rows }} by sensitivity</summary>
{{ grid(s.top.header, s.top.rows) }}</details>
<p class="muted">Files in <code>report/{{ s.slug }}/</code>: predictions.parquet,
sensitivity.parquet, by_concept.parquet, by_class.parquet and the figures.</p>
</div>{% endfor %}
</div>

<h2>Definitions</h2>
<dl>
<dt>reference class</dt><dd>the label; for an unlabelled image its clean prediction
(label-free mode: accuracy columns are –)</dd>
<dt>n / images</dt><dd>counterfactuals in the group / distinct source images among them</dd>
<dt>clean / cf / control acc.</dt><dd>share of labelled rows whose clean image /
counterfactual / control is classified as the label</dd>
<dt>flip rate</dt><dd>share of rows whose counterfactual (control) top-1 differs from the
clean image's top-1</dd>
<dt>Δ p(ref)</dt><dd>mean of p(reference | edited) − p(reference | clean)</dd>
<dt>sensitivity: flip</dt><dd>cf flip rate − control flip rate</dd>
<dt>sensitivity: acc. drop</dt><dd>(clean − cf acc.) − (clean − control acc.)
= control acc. − cf acc.</dd>
<dt>sensitivity: p(ref) drop</dt><dd>mean of p(ref | control) − p(ref | cf), paired per row</dd>
<dt>control</dt><dd>the same stylized image composited into a random smooth mask with the
concept mask's pixel count, in the same image</dd>
</dl>
<p class="muted">Rows of a group share images and masks (several textures and style images per
mask), so intervals that assume independent rows are optimistic for pooled groups. See
<code>docs/audit.md</code>.</p>
</body></html>
""",
    autoescape=True,
)


def _image_src(path: Path, root: Path, embed: bool) -> str:
    if embed:
        return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")
    return path.relative_to(root).as_posix()


def _pred(row: pd.Series, which: str) -> str:
    return f"{row[f'{which}_pred_name']} {row[f'{which}_pred_prob']:.2f}".replace("_", " ")


def _share(flags: pd.Series) -> str:
    return f"{100 * flags.mean():.1f}%" if len(flags) else "–"


def _comparison(sections: Sequence[ModelSection], example_ids: Sequence[str]) -> dict[str, Any]:
    concepts = sorted(set().union(*(set(s.by_concept["concept"]) for s in sections)))
    by_concept_rows = []
    for concept in concepts:
        cells = []
        for section in sections:
            match = section.by_concept[section.by_concept["concept"] == concept]
            cells.append(format_diff(match.iloc[0], "sens_flip") if len(match) else "–")
        by_concept_rows.append([concept, *cells])
    agreement = []
    indexed = [s.predictions.set_index("cf_id") for s in sections]
    for i in range(len(sections)):
        for j in range(i + 1, len(sections)):
            a, b = indexed[i], indexed[j]
            common = a.index.intersection(b.index)
            a, b = a.loc[common], b.loc[common]
            flip_a, flip_b = a["cf_pred"] != a["clean_pred"], b["cf_pred"] != b["clean_pred"]
            agreement.append(
                [
                    f"{_short_id(sections[i].classifier_id)} / "
                    f"{_short_id(sections[j].classifier_id)} (n={len(common)})",
                    _share(a["clean_pred"] == b["clean_pred"]),
                    _share(a["cf_pred"] == b["cf_pred"]),
                    _share(flip_a & flip_b),
                    _share(flip_a & ~flip_b),
                    _share(~flip_a & flip_b),
                ]
            )
    examples = []
    for cf_id in example_ids:
        first = indexed[0].loc[cf_id]
        cells = []
        for frame in indexed:
            if cf_id not in frame.index:
                cells.append(
                    {"clean": "–", "cf": "–", "ctrl": "–", "cf_class": "", "ctrl_class": ""}
                )
                continue
            row = frame.loc[cf_id]
            cells.append(
                {
                    "clean": _pred(row, "clean"),
                    "cf": _pred(row, "cf"),
                    "ctrl": _pred(row, "ctrl"),
                    "cf_class": "ok" if row["cf_pred"] == row["clean_pred"] else "broken",
                    "ctrl_class": "ok" if row["ctrl_pred"] == row["clean_pred"] else "broken",
                }
            )
        examples.append(
            {
                "cf_id": cf_id[:10],
                "reference": str(first["reference_name"]).replace("_", " "),
                "edit": f"{first['concept']} → {first['style_image']}",
                "models": cells,
            }
        )
    agreement_header = [
        "models (n shared)",
        "clean predictions agree",
        "cf predictions agree",
        "both flip",
        "only first flips",
        "only second flips",
    ]
    return {
        "concepts": {
            "header": ["concept"] + [_short_id(s.classifier_id) for s in sections],
            "rows": by_concept_rows,
        },
        "agreement": {"header": agreement_header, "rows": agreement},
        "examples": examples,
    }


def write_report(
    build_dir: str | Path,
    predictions: Sequence[pd.DataFrame],
    kept_only: bool = False,
    top_k: int = 15,
    n_examples: int = 6,
    embed_images: bool = False,
) -> Path:
    """Write every model's tables and figures and `BUILD/report/index.html`; return its path.

    `predictions` are `audit` outputs of one or more classifiers on this build. The example
    counterfactuals are chosen from the first model's predictions and shown for every model.
    """
    if not predictions:
        raise ValueError("write_report needs the predictions of at least one classifier")
    root = report_root(build_dir)
    ids = [str(p["classifier_id"].iloc[0]) for p in predictions if len(p)]
    if len(set(ids)) != len(ids):
        raise ValueError(f"each classifier may appear once in a report, got {ids}")
    first = predictions[0]
    first = first[first["kept"].astype(bool)] if kept_only else first
    example_ids = figures.select_examples(first, n_examples)
    sections = [
        write_model_outputs(build_dir, p, example_ids, kept_only, top_k) for p in predictions
    ]
    everything = pd.concat([s.predictions for s in sections], ignore_index=True)
    build_name = _build_name(Path(build_dir))
    labelled = everything.drop_duplicates("image_id")["label"].notna()
    page = TEMPLATE.render(
        build_name=build_name,
        n_cf=len(first),
        n_images=everything["image_id"].nunique(),
        concepts=sorted(everything["concept"].unique()),
        textures=sorted(everything["texture"].unique()),
        labelled=(
            f"{int(labelled.sum())} of {len(labelled)} images labelled"
            + (" (label-free mode)" if not labelled.any() else "")
        ),
        kept_only=kept_only,
        placement=str(everything["placement"].iloc[0]),
        seed=int(everything["seed"].iloc[0]),
        summary=_summary(sections),
        comparison=_comparison(sections, example_ids) if len(sections) > 1 else None,
        edits=_edits_fragment(Path(build_dir), root),
        sections=[
            {
                "id": s.classifier_id,
                "short": _short_id(s.classifier_id),
                "slug": s.slug,
                "images": {k: _image_src(p, root, embed_images) for k, p in s.figures.items()},
                "by_concept": _table(s.by_concept, [("concept", "concept")]),
                "by_class": _table(s.by_class, [("class", "class_name")]),
                "n_classes": len(s.by_class),
                "top": _table(
                    s.table.sort_values(
                        ["sens_flip_low", "sens_flip", "n"], ascending=False, kind="stable"
                    ).head(top_k),
                    [("class", "class_name"), ("concept", "concept"), ("texture", "texture")],
                ),
                "top_rows": min(top_k, len(s.table)),
            }
            for s in sections
        ],
    )
    atomic_write_text(root / INDEX_JSON, json.dumps({"slugs": [s.slug for s in sections]}))
    return atomic_write_text(root / "index.html", page)


def _edits_fragment(build_dir: Path, root: Path) -> Markup | None:
    """The editing comparison (`conceptswap edit`) when the build has one, else None."""
    if not (edits_dir(build_dir) / COMPARISON_FILE).is_file():
        return None
    return Markup(comparison_html(build_dir, relative_to=root))


def _build_name(build_dir: Path) -> str:
    """The build's configured name, else its folder's name."""
    return str(BuildStore(build_dir).resolved().get("name") or build_dir.resolve().name)
