"""The HTML sensitivity report: one self-contained page, `BUILD/report/index.html`.

The page has inline CSS, a few lines of inline JavaScript (the gallery's filters) and no
external resources, so it opens from disk with no network. Its images are files next to it
(`<slug>/heatmap.png`, `gallery/*.jpg`, ...) referenced relatively, or embedded as data URIs with
`embed_images=True` so the single file can be mailed around. Several models' predictions on the
same build are shown side by side: the main tables have a row per model under each group, and
the template is `templates/report.html.j2`.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import pandas as pd
import pyarrow as pa
from markupsafe import Markup

from pipeline.report import figures
from pipeline.report.bootstrap import N_BOOT
from pipeline.report.compare import comparison
from pipeline.report.concept_section import concept_section
from pipeline.report.edits import comparison_html
from pipeline.report.formatting import CONTROL_COLUMNS, STAT_COLUMNS, format_stat
from pipeline.report.gallery import MAX_CARDS, gallery_cards
from pipeline.report.groups import (
    by_class,
    by_concept,
    by_concept_texture,
    by_texture,
    flip_targets,
    sensitivity_table,
    summarize,
)
from pipeline.report.provenance import mask_provenance
from pipeline.report.sensitivity import model_dir, report_root
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
TEMPLATES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).resolve().parent / "templates"),
    autoescape=True,
    keep_trailing_newline=True,
)


def _short_id(classifier_id: str) -> str:
    """The model name without the weights hash: `timm:tf_efficientnet_lite0`."""
    return classifier_id.split("@")[0]


def _cell(text: str) -> tuple[str, str]:
    """(value, interval) of a formatted statistic, shown on two lines in the page."""
    value, _, interval = text.partition(" (")
    return value, interval[:-1]


def _stat_cells(row: pd.Series, columns: Sequence[tuple[str, str, str]] = STAT_COLUMNS) -> list:
    counts: list[Any] = [str(int(row["n"])), str(int(row["n_images"]))]
    return counts + [_cell(format_stat(row, column, kind)) for _, column, kind in columns]


STAT_HEADER = ["n", "images"] + [header for header, _, _ in STAT_COLUMNS]
CONTROL_HEADER = ["n", "images"] + [header for header, _, _ in CONTROL_COLUMNS]


def _name(value: Any, column: str) -> str:
    return str(value).replace("_", " ") if column == "class_name" else str(value)


def _table(frame: pd.DataFrame, keys: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """Header and formatted cells of a statistics table (one row per group), for the page."""
    rows = [[_name(row[c], c) for _, c in keys] + _stat_cells(row) for _, row in frame.iterrows()]
    return {"header": [h for h, _ in keys] + STAT_HEADER, "rows": rows}


def _summary(sections: Sequence[ModelSection]) -> dict[str, Any]:
    """The pooled statistics, one column per model (models compare along a row)."""
    columns = [_stat_cells(s.overall.iloc[0]) for s in sections]
    rows = [[name, *(column[i] for column in columns)] for i, name in enumerate(STAT_HEADER)]
    return {"header": ["", *(_short_id(s.classifier_id) for s in sections)], "rows": rows}


def _group_keys(frames: Sequence[pd.DataFrame], keys: Sequence[str]) -> list[tuple]:
    """Every group (tuple of key values) found in any of the frames, sorted."""
    found: set[tuple] = set()
    for frame in frames:
        found |= {tuple(values) for values in frame[list(keys)].to_numpy()}
    return sorted(found)


def _side_by_side(
    sections: Sequence[ModelSection], attribute: str, keys: Sequence[str], targets: bool = False
) -> dict[str, Any]:
    """A compact table with a row per model under each group: models compare down a group."""
    groups = _group_keys([getattr(s, attribute) for s in sections], keys)
    rows = []
    for group in groups:
        for section in sections:
            frame = getattr(section, attribute)
            match = frame[(frame[list(keys)] == pd.Series(group, index=list(keys))).all(axis=1)]
            if not len(match):
                continue
            row = match.iloc[0]
            cells = [*map(str, group), _short_id(section.classifier_id)]
            cells += _stat_cells(row, CONTROL_COLUMNS)
            if targets:
                cells.append(_top_target(section.targets, dict(zip(keys, group, strict=True))))
            rows.append(cells)
    header = [*keys, "model", *CONTROL_HEADER] + (["top flip target"] if targets else [])
    return {"header": header, "rows": rows}


def _matching(targets: pd.DataFrame, where: dict[str, Any]) -> pd.DataFrame:
    chosen = targets
    for key, value in where.items():
        chosen = chosen[chosen[key] == value]
    return chosen


def _top_target(targets: pd.DataFrame, where: dict[str, Any]) -> Any:
    first = _matching(targets, where)
    first = first[first["rank"] == 1]
    if not len(first):
        return "–"
    row = first.iloc[0]
    return (
        f"→ {row['target'].replace('_', ' ')} {100 * row['cf_share']:.0f}%",
        f"neutral {100 * row['neutral_share']:.0f}% · random {100 * row['ctrl_share']:.0f}%",
    )


def _targets_table(sections: Sequence[ModelSection]) -> dict[str, Any]:
    """(concept, texture, model) → its top flip targets, with the controls' share of each."""
    rows = []
    width = max([int(s.targets["rank"].max()) for s in sections if len(s.targets)] or [0])
    pairs = _group_keys([s.targets for s in sections], ("concept", "texture"))
    for concept, texture in pairs:
        for section in sections:
            chosen = _matching(section.targets, {"concept": concept, "texture": texture})
            if not len(chosen):
                continue
            cells: list[Any] = [
                f"{concept} × {texture}",
                _short_id(section.classifier_id),
                str(int(chosen["n"].iloc[0])),
            ]
            for _, row in chosen.sort_values("rank").iterrows():
                cells.append(
                    (
                        f"{row['target'].replace('_', ' ')} {100 * row['cf_share']:.1f}%",
                        f"neutral {100 * row['neutral_share']:.1f}% · random "
                        f"{100 * row['ctrl_share']:.1f}% · {int(row['n_images'])} photos",
                    )
                )
            rows.append(cells + [""] * (3 + width - len(cells)))
    header = ["concept × texture", "model", "n", *(f"target {i + 1}" for i in range(width))]
    return {"header": header, "rows": rows}


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
    by_texture: pd.DataFrame
    by_concept_texture: pd.DataFrame
    targets: pd.DataFrame
    table: pd.DataFrame
    figures: dict[str, Path]


def write_model_outputs(
    build_dir: str | Path,
    predictions: pd.DataFrame,
    example_ids: Sequence[str],
    kept_only: bool = False,
    top_k: int = 15,
) -> ModelSection:
    """Write the model's statistics tables (Parquet) and figures under `BUILD/report/<slug>/`."""
    if not len(predictions):
        raise ValueError(
            f"{build_dir}: no predictions to report (the build has no counterfactuals)"
        )
    classifier_id = str(predictions["classifier_id"].iloc[0])
    folder = model_dir(build_dir, classifier_id)
    tables = {
        "sensitivity": sensitivity_table(predictions, kept_only),
        "by_concept": by_concept(predictions, kept_only),
        "by_class": by_class(predictions, kept_only),
        "by_texture": by_texture(predictions, kept_only),
        "by_concept_texture": by_concept_texture(predictions, kept_only),
        "flip_targets": flip_targets(predictions, kept_only=kept_only),
    }
    for name, frame in tables.items():
        write_table(folder / f"{name}.parquet", pa.Table.from_pandas(frame, preserve_index=False))
    paths = {key: folder / name for key, name in FIGURES.items()}
    model = _short_id(classifier_id)
    heat = summarize(predictions, ("class", "concept"), kept_only)
    figures.heatmap(heat, paths["heatmap"], title=f"{model}: flip rate, concept − random region")
    top_title = f"{model}: top region effects"
    figures.top_sensitivities(tables["sensitivity"], paths["top"], k=top_k, title=top_title)
    figures.example_grid(build_dir, predictions, example_ids, paths["examples"])
    return ModelSection(
        classifier_id=classifier_id,
        slug=folder.name,
        predictions=predictions,
        overall=summarize(predictions, (), kept_only),
        by_concept=tables["by_concept"],
        by_class=tables["by_class"],
        by_texture=tables["by_texture"],
        by_concept_texture=tables["by_concept_texture"],
        targets=tables["flip_targets"],
        table=tables["sensitivity"],
        figures=paths,
    )


# -- the page ----------------------------------------------------------------------------------
def _image_src(path: Path, root: Path, embed: bool) -> str:
    if embed:
        return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")
    return path.relative_to(root).as_posix()


def write_report(
    build_dir: str | Path,
    predictions: Sequence[pd.DataFrame],
    kept_only: bool = False,
    top_k: int = 15,
    n_examples: int = 6,
    embed_images: bool = False,
    max_cards: int = MAX_CARDS,
    concept_scores: Mapping[str, pd.DataFrame] | None = None,
    concept_layer: str | None = None,
) -> Path:
    """Write every model's tables and figures and `BUILD/report/index.html`; return its path.

    `predictions` are `audit` outputs of one or more classifiers on this build. The example
    counterfactuals are chosen from the first model's predictions and shown for every model;
    the gallery shows every counterfactual some model flips (at most `max_cards`).
    `concept_scores` (classifier id → its `pipeline.concepts` scores table) adds the section
    "Concept scores (TCAV) beside counterfactual sensitivity" for those models, compared at
    `concept_layer` (default: the deepest scored layer); without it the page has no such section.
    """
    if not predictions:
        raise ValueError("write_report needs the predictions of at least one classifier")
    root = report_root(build_dir)
    ids = [str(p["classifier_id"].iloc[0]) for p in predictions if len(p)]
    if len(set(ids)) != len(ids):
        raise ValueError(f"each classifier may appear once in a report, got {ids}")
    if kept_only:
        predictions = [p[p["kept"].astype(bool)] for p in predictions]
    first = predictions[0]
    example_ids = figures.select_examples(first, n_examples)
    sections = [write_model_outputs(build_dir, p, example_ids, False, top_k) for p in predictions]
    everything = pd.concat([s.predictions for s in sections], ignore_index=True)
    labelled = everything.drop_duplicates("image_id")["label"].notna()
    page = TEMPLATES.get_template("report.html.j2").render(
        build_name=_build_name(Path(build_dir)),
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
        neutral=str(everything["neutral"].iloc[0]),
        seed=int(everything["seed"].iloc[0]),
        n_boot=N_BOOT,
        provenance=mask_provenance(build_dir, ids),
        summary=_summary(sections),
        controls=_side_by_side(sections, "by_concept_texture", ("concept", "texture"), True),
        targets=_targets_table(sections),
        textures_table=_side_by_side(sections, "by_texture", ("texture",)),
        concept_table=_side_by_side(sections, "by_concept", ("concept",)),
        comparison=comparison(sections, example_ids) if len(sections) > 1 else None,
        cards=gallery_cards(build_dir, predictions, embed=embed_images, limit=max_cards),
        max_cards=max_cards,
        edits=_edits_fragment(Path(build_dir), root),
        tcav=[
            {
                "id": s.classifier_id,
                "short": _short_id(s.classifier_id),
                **concept_section(concept_scores[s.classifier_id], s.predictions, concept_layer),
            }
            for s in sections
            if concept_scores and s.classifier_id in concept_scores
        ],
        sections=[
            {
                "id": s.classifier_id,
                "short": _short_id(s.classifier_id),
                "slug": s.slug,
                "images": {k: _image_src(p, root, embed_images) for k, p in s.figures.items()},
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
