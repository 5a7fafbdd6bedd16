"""Counterfactual sensitivity audits of classifiers, and the HTML report.

`run_audit(build_dir, ["timm:tf_efficientnet_lite0", ...])` loads each classifier once, audits
the build's counterfactuals and their two controls, a neutral re-rendering of the same mask and
an area-matched random mask outside the concept (`sensitivity.audit`), writes the
tables and figures under `BUILD/report/<classifier-slug>/` and the page `BUILD/report/index.html`
(`html.write_report`), with each model's concept scores (`pipeline.concepts`) beside its
counterfactual effects when asked (`concepts=True`). `summary_markdown(build_dir)` summarises
the last report as a markdown table (a Prefect artifact). Every number is defined in
`docs/audit.md`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from pipeline.classify import create_classifier
from pipeline.report.bootstrap import ClusterBootstrap
from pipeline.report.controls import (
    DEFAULT_NEUTRAL,
    DEFAULT_PLACEMENT,
    Neutral,
    Placement,
    control_mask,
    neutral_fill,
)
from pipeline.report.formatting import format_diff, format_rate
from pipeline.report.groups import (
    by_class,
    by_concept,
    by_concept_texture,
    by_texture,
    flip_targets,
    sensitivity_table,
    summarize,
)
from pipeline.report.html import INDEX_JSON, write_report
from pipeline.report.sensitivity import (
    PREDICTIONS_FILE,
    audit,
    classifier_slug,
    load_predictions,
    report_root,
)
from pipeline.report.stats import Estimate, diff_proportions, mean_interval, wilson


def audit_predictions(
    build_dir: str | Path,
    classifier_names: Sequence[str],
    seed: int = 0,
    batch_size: int = 32,
    device: str = "auto",
    placement: Placement = DEFAULT_PLACEMENT,
    neutral: Neutral = DEFAULT_NEUTRAL,
) -> list[pd.DataFrame]:
    """Each named classifier's predictions on the build's counterfactuals and their controls.

    Cached per classifier id in `BUILD/report/<slug>/predictions.parquet`: a second call with
    the same models classifies nothing.
    """
    if not classifier_names:
        raise ValueError(
            "run_audit needs at least one classifier name, e.g. timm:tf_efficientnet_lite0"
        )
    predictions = []
    for name in dict.fromkeys(classifier_names):  # each model once, in the order given
        classifier = create_classifier(name, device=device, batch_size=batch_size)
        predictions.append(audit(build_dir, classifier, seed, batch_size, placement, neutral))
    if not any(len(p) for p in predictions):
        raise ValueError(f"{build_dir}: the build has no counterfactuals to audit")
    return predictions


def run_audit(
    build_dir: str | Path,
    classifier_names: Sequence[str],
    seed: int = 0,
    batch_size: int = 32,
    device: str = "auto",
    placement: Placement = DEFAULT_PLACEMENT,
    neutral: Neutral = DEFAULT_NEUTRAL,
    kept_only: bool = False,
    embed_images: bool = False,
    concepts: bool = False,
    concept_layer: str | None = None,
) -> Path:
    """Audit a build with each named classifier (`timm:tf_efficientnet_lite0`, ...); report.

    Returns the path of `BUILD/report/index.html`. Predictions are cached per classifier id, so
    re-running with the same models only renders the report again. With `concepts`, the page
    also shows each model's stored concept scores (`pipeline.concepts.concept_scores` must have
    run for it) beside its counterfactual effects, compared at `concept_layer` (default: the
    deepest scored layer).
    """
    predictions = audit_predictions(
        build_dir, classifier_names, seed, batch_size, device, placement, neutral
    )
    scores = None
    if concepts:
        from pipeline.concepts import load_concept_scores  # captum loads only when asked

        ids = [str(p["classifier_id"].iloc[0]) for p in predictions if len(p)]
        scores = {i: load_concept_scores(build_dir, i) for i in ids}
    return write_report(
        build_dir,
        predictions,
        kept_only=kept_only,
        embed_images=embed_images,
        concept_scores=scores,
        concept_layer=concept_layer,
    )


def _flip_cells(row: pd.Series) -> str:
    rates = " | ".join(format_rate(row, c) for c in ("cf_flip", "neutral_flip", "ctrl_flip"))
    effects = " | ".join(format_diff(row, c) for c in ("sens_texture_flip", "sens_flip"))
    return f"{rates} | {effects} |"


def summary_markdown(build_dir: str | Path, slugs: Sequence[str] | None = None) -> str:
    """Markdown summary of the last report (or of the given classifier slugs).

    One table row per model (counterfactual and both controls' flip rates, texture and region
    effects), then each model's per-(concept, texture) effects with the top flip target.
    """
    root = report_root(build_dir)
    if slugs is None:
        index = root / INDEX_JSON
        if not index.is_file():
            raise FileNotFoundError(f"no report in {build_dir}: run run_audit first ({index})")
        slugs = json.loads(index.read_text(encoding="utf-8"))["slugs"]
    lines = [
        "| model | n | cf flip rate | neutral flip rate | random-region flip rate "
        "| texture effect (cf − neutral) | region effect (cf − random) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    details: list[str] = []
    for slug in slugs:
        folder = root / slug
        predictions = pd.read_parquet(folder / PREDICTIONS_FILE)
        overall = summarize(predictions, ()).iloc[0]
        model = str(predictions["classifier_id"].iloc[0]) if len(predictions) else slug
        lines.append(f"| `{model}` | {int(overall['n'])} | " + _flip_cells(overall))
        pairs = pd.read_parquet(folder / "by_concept_texture.parquet")
        targets = pd.read_parquet(folder / "flip_targets.parquet")
        details += ["", f"**{model}** per concept × texture (flip rates; 95% image bootstrap)", ""]
        details += [
            "| concept × texture | n | images | cf | neutral | random region "
            "| texture effect | region effect | top flip target |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---|",
        ]
        for _, row in pairs.iterrows():
            top = targets[
                (targets["concept"] == row["concept"])
                & (targets["texture"] == row["texture"])
                & (targets["rank"] == 1)
            ]
            target = (
                f"{top['target'].iloc[0]} {100 * top['cf_share'].iloc[0]:.0f}%" if len(top) else "–"
            )
            details.append(
                f"| {row['concept']} × {row['texture']} | {int(row['n'])} "
                f"| {int(row['n_images'])} | " + _flip_cells(row) + f" {target} |"
            )
    return "\n".join(lines + details) + "\n"


__all__ = [
    "DEFAULT_NEUTRAL",
    "DEFAULT_PLACEMENT",
    "ClusterBootstrap",
    "Estimate",
    "audit",
    "audit_predictions",
    "by_class",
    "by_concept",
    "by_concept_texture",
    "by_texture",
    "classifier_slug",
    "control_mask",
    "diff_proportions",
    "flip_targets",
    "load_predictions",
    "mean_interval",
    "neutral_fill",
    "run_audit",
    "sensitivity_table",
    "summarize",
    "summary_markdown",
    "wilson",
    "write_report",
]
