"""Counterfactual sensitivity audits of classifiers, and the HTML report.

`run_audit(build_dir, ["timm:tf_efficientnet_lite0", ...])` loads each classifier once, audits
the build's counterfactuals and their area-matched controls (`sensitivity.audit`), writes the
tables and figures under `BUILD/report/<classifier-slug>/` and the page `BUILD/report/index.html`
(`html.write_report`). `summary_markdown(build_dir)` summarises the last report as a markdown
table (a Prefect artifact). Every number is defined in `docs/audit.md`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from pipeline.classify import create_classifier
from pipeline.report.controls import Placement, control_mask
from pipeline.report.formatting import format_diff, format_rate
from pipeline.report.html import INDEX_JSON, write_report
from pipeline.report.sensitivity import (
    PREDICTIONS_FILE,
    audit,
    by_class,
    by_concept,
    classifier_slug,
    load_predictions,
    report_root,
    sensitivity_table,
    summarize,
)
from pipeline.report.stats import Estimate, diff_proportions, mean_interval, wilson


def run_audit(
    build_dir: str | Path,
    classifier_names: Sequence[str],
    seed: int = 0,
    batch_size: int = 32,
    device: str = "auto",
    placement: Placement = "anywhere",
    kept_only: bool = False,
    embed_images: bool = False,
) -> Path:
    """Audit a build with each named classifier (`timm:tf_efficientnet_lite0`, ...); report.

    Returns the path of `BUILD/report/index.html`. Predictions are cached per classifier id, so
    re-running with the same models only renders the report again.
    """
    if not classifier_names:
        raise ValueError(
            "run_audit needs at least one classifier name, e.g. timm:tf_efficientnet_lite0"
        )
    predictions = []
    for name in dict.fromkeys(classifier_names):  # each model once, in the order given
        classifier = create_classifier(name, device=device, batch_size=batch_size)
        predictions.append(audit(build_dir, classifier, seed, batch_size, placement))
    if not any(len(p) for p in predictions):
        raise ValueError(f"{build_dir}: the build has no counterfactuals to audit")
    return write_report(build_dir, predictions, kept_only=kept_only, embed_images=embed_images)


def summary_markdown(
    build_dir: str | Path, slugs: Sequence[str] | None = None, top_k: int = 5
) -> str:
    """Markdown summary of the last report (or of the given classifier slugs).

    One table row per model (counterfactual and control flip rates, concept sensitivity), then
    each model's per-concept sensitivity and its top (class, concept, texture) sensitivities.
    """
    root = report_root(build_dir)
    if slugs is None:
        index = root / INDEX_JSON
        if not index.is_file():
            raise FileNotFoundError(f"no report in {build_dir}: run run_audit first ({index})")
        slugs = json.loads(index.read_text(encoding="utf-8"))["slugs"]
    lines = [
        "| model | n | clean acc. | cf flip rate | control flip rate | sensitivity: flip "
        "| sensitivity: acc. drop |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    details: list[str] = []
    for slug in slugs:
        folder = root / slug
        predictions = pd.read_parquet(folder / PREDICTIONS_FILE)
        overall = summarize(predictions, ()).iloc[0]
        model = str(predictions["classifier_id"].iloc[0]) if len(predictions) else slug
        lines.append(
            f"| `{model}` | {int(overall['n'])} | {format_rate(overall, 'clean_acc')} "
            f"| {format_rate(overall, 'cf_flip')} | {format_rate(overall, 'ctrl_flip')} "
            f"| {format_diff(overall, 'sens_flip')} | {format_diff(overall, 'sens_acc_drop')} |"
        )
        concepts = pd.read_parquet(folder / "by_concept.parquet")
        table = pd.read_parquet(folder / "sensitivity.parquet")
        ranking = ["sens_flip_low", "sens_flip", "n"]
        top = table.sort_values(ranking, ascending=False, kind="stable").head(top_k)
        details += ["", f"**{model}**: concept sensitivity (flip rate, concept − control)", ""]
        details += ["| concept | n | cf flip rate | control flip rate | sensitivity |"]
        details += ["|---|---:|---:|---:|---:|"]
        details += [
            f"| {row['concept']} | {int(row['n'])} | {format_rate(row, 'cf_flip')} "
            f"| {format_rate(row, 'ctrl_flip')} | {format_diff(row, 'sens_flip')} |"
            for _, row in concepts.iterrows()
        ]
        details += ["", f"Top {len(top)} (class, concept, texture):", ""]
        details += [
            f"- {row['class_name']} · {row['concept']} · {row['texture']} (n={int(row['n'])}): "
            f"{format_diff(row, 'sens_flip')}"
            for _, row in top.iterrows()
        ]
    return "\n".join(lines + details) + "\n"


__all__ = [
    "Estimate",
    "audit",
    "by_class",
    "by_concept",
    "classifier_slug",
    "control_mask",
    "diff_proportions",
    "load_predictions",
    "mean_interval",
    "run_audit",
    "sensitivity_table",
    "summarize",
    "summary_markdown",
    "wilson",
    "write_report",
]
