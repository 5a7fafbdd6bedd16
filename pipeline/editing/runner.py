"""Run every editing method on every edit case of a build and compare them.

``run_edits(build_dir, model_name, layer, methods)``:

1. loads the classifier once and cuts it at ``layer`` (:class:`~pipeline.editing.split.SplitModel`:
   the network before the layer runs once per image, every edit re-runs only the rest);
2. computes the key statistics ``C`` of the layer over the build's clean images, streamed in
   batches and cached under ``BUILD/edits/cache/`` by (model id, weights hash, layer, image set);
3. for every case (``BUILD/cases/``; planned with :func:`pipeline.cases.build_cases` if there
   are none) and method: selects hyper-parameters on the case's validation split under the
   clean-accuracy budget (:mod:`pipeline.editing.select`), saves the delta to
   ``BUILD/edits/<method>/<case_id>.safetensors``, and evaluates it on the test groups and the
   heldout clean images (:mod:`pipeline.editing.evaluate`);
4. writes the long table ``BUILD/edits/results.parquet`` (one row per case x method x group),
   the comparison ``comparison.parquet`` / ``comparison.md`` (mean and 95% t interval over
   cases) and the figure ``comparison.png``.

Work is skipped when its output exists: results are keyed by (case, method, run key — model,
weights, layer, budget, grid, covariance image set, the case's content); a delta file with the
same run key is loaded instead of recomputed. :func:`comparison_html` renders the comparison as
an HTML fragment for the report.
"""

from __future__ import annotations

import html
import json
import logging
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import torch

from pipeline.cases import TEST_GROUPS, EditCase, build_cases, load_cases
from pipeline.editing import select as selection
from pipeline.editing.covariance import (
    CovarianceFactor,
    cached_key_statistics,
    weights_digest,
)
from pipeline.editing.delta import EditResult
from pipeline.editing.evaluate import (
    CLEAN,
    EXEMPLARS,
    GROUPS,
    BuildImages,
    Predictor,
    batched,
    case_exemplars,
    case_items,
    evaluate_case,
    image,
    mask_transform,
)
from pipeline.editing.layers import resolve_layer
from pipeline.editing.methods import EDIT_METHODS
from pipeline.editing.split import SplitModel
from pipeline.hashing import stable_key
from pipeline.store.atomic import atomic_write_text
from pipeline.store.manifest import write_table

EDITS_DIR = "edits"
RESULTS_FILE = "results.parquet"
COMPARISON_FILE = "comparison.parquet"
COMPARISON_MD = "comparison.md"
COMPARISON_PNG = "comparison.png"
RESULTS_VERSION = "edit-results-v1"
DEFAULT_METHODS = ("rewrite", "rewrite-closed", "finetune-local", "finetune-global")

logger = logging.getLogger("conceptswap.edit")


def edits_dir(build_dir: str | Path) -> Path:
    return Path(build_dir) / EDITS_DIR


def delta_path(build_dir: str | Path, method: str, case_id: str) -> Path:
    return edits_dir(build_dir) / method / f"{case_id}.safetensors"


# -- inputs ------------------------------------------------------------------------------------
def resolve_cases(
    build_dir: str | Path, cases: Sequence[EditCase | str] | None = None
) -> list[EditCase]:
    """``cases`` as :class:`EditCase` objects: ids are looked up in ``BUILD/cases/``; ``None``
    means every case there, planned with :func:`build_cases` if the folder is empty."""
    if cases is None:
        found = load_cases(build_dir)
        return found or build_cases(build_dir)
    stored: dict[str, EditCase] | None = None
    out = []
    for case in cases:
        if isinstance(case, EditCase):
            out.append(case)
            continue
        if stored is None:
            stored = {c.case_id: c for c in load_cases(build_dir)}
        if case not in stored:
            raise KeyError(f"no case {case!r} in {Path(build_dir) / 'cases'}")
        out.append(stored[case])
    return out


def default_layer(model: torch.nn.Module) -> str:
    """A late dense layer to edit when none is named: the second-to-last dense convolution
    (EfficientNet-Lite0: ``blocks.6.0.conv_pwl``, the last block's 1x1 projection, with
    ``conv_head`` after it), else the last transformer MLP output (``blocks.<last>.mlp.fc2``),
    else the second-to-last linear layer."""
    from torch import nn

    convs = [
        name
        for name, module in model.named_modules()
        if isinstance(module, nn.Conv2d) and module.groups == 1
    ]
    if len(convs) >= 2:
        return convs[-2]
    linears = [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    mlp = [name for name in linears if name.endswith("mlp.fc2")]
    if mlp:
        return mlp[-1]
    if len(linears) >= 2:
        return linears[-2]
    raise ValueError("no layer to edit found; name one")


def covariance_image_ids(
    data: BuildImages, covariance_images: int | Sequence[str] | None = None
) -> list[str]:
    """Clean images for ``C``: all of the build (``None``), the first ``n`` by id (an int), or
    the given ids. Ids are content hashes, so "first by id" is an unbiased sample."""
    every = sorted(str(i) for i in data.images["image_id"])
    if covariance_images is None:
        return every
    if isinstance(covariance_images, int):
        return every[: max(1, covariance_images)]
    ids = sorted(str(i) for i in covariance_images)
    missing = set(ids) - set(every)
    if missing:
        raise KeyError(f"{len(missing)} covariance images are not in the build")
    return ids


def _image_batches(
    data: BuildImages,
    preprocess: Callable[[list[np.ndarray]], torch.Tensor],
    ids: Sequence[str],
    batch_size: int,
) -> Iterator[torch.Tensor]:
    for chunk in batched(list(ids), batch_size):
        yield preprocess([data.rgb(image(i)) for i in chunk])


def _target_name(case: EditCase, class_names: Sequence[str]) -> str:
    group = case.params.get("target_group")
    if group:
        return str(group)
    index = int(case.target_class)
    return class_names[index] if 0 <= index < len(class_names) else str(index)


def run_key(
    case: EditCase,
    method: str,
    model_id: str,
    weights_hash: str,
    layer: str,
    budget_pp: float,
    grid: Sequence[selection.Candidate],
    image_set_id: str,
) -> str:
    """What a (case, method) result depends on; a change of any part recomputes it."""
    return stable_key(
        RESULTS_VERSION,
        case.to_json(),
        method,
        model_id,
        weights_hash,
        layer,
        float(budget_pp),
        [c.to_dict() for c in grid],
        selection.METHOD_DEFAULTS.get(method, {}),
        image_set_id,
        length=20,
    )


def _save_atomic(result: EditResult, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    try:
        result.save(temp)
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)
    return path


def _read_results(path: Path) -> pd.DataFrame:
    return pd.read_parquet(path) if path.is_file() else pd.DataFrame()


def _write_frame(frame: pd.DataFrame, path: Path) -> Path:
    return write_table(
        path, pa.Table.from_pandas(frame.reset_index(drop=True), preserve_index=False)
    )


# -- the run -----------------------------------------------------------------------------------
def run_edits(
    build_dir: str | Path,
    model_name: str,
    layer: str | None,
    methods: Sequence[str] = DEFAULT_METHODS,
    cases: Sequence[EditCase | str] | None = None,
    budget_pp: float = 1.0,
    device: str = "auto",
    covariance_images: int | Sequence[str] | None = None,
    *,
    classifier: Any | None = None,
    classifier_options: Mapping[str, Any] | None = None,
    grids: Mapping[str, Sequence[selection.Candidate]] | None = None,
    batch_size: int = 32,
    feature_cache_mb: int = 2048,
    summarize: bool = True,
    log: Callable[[str], None] | None = None,
) -> Path:
    """Edit, evaluate and compare; returns ``BUILD/edits`` (results, comparison, deltas).

    ``model_name``: a classifier name (``timm:tf_efficientnet_lite0``) loaded with
    ``classifier_options`` on ``device``, unless a loaded ``classifier`` (an object with
    ``model``, ``preprocess``, ``id``, ``class_names``) is passed. ``layer``: a dense conv or
    linear layer of ``classifier.model`` (``get_submodule`` path; ``None``:
    :func:`default_layer`). ``cases``: case objects or
    ids (default: every case of the build). ``covariance_images``: see
    :func:`covariance_image_ids`. ``grids``: per-method candidate lists overriding
    :data:`pipeline.editing.select.GRIDS`. ``summarize``: write the comparison files.
    """
    say = log or logger.info
    unknown = [m for m in methods if m not in EDIT_METHODS.names()]
    if unknown:
        raise ValueError(f"unknown edit methods {unknown}; known: {EDIT_METHODS.names()}")
    build_dir = Path(build_dir)
    out = edits_dir(build_dir)
    if classifier is None:
        from pipeline.classify import create_classifier

        classifier = create_classifier(model_name, device=device, **dict(classifier_options or {}))
    model = classifier.model.eval()
    layer = layer or default_layer(model)
    resolve_layer(model, layer)
    data = BuildImages(build_dir)
    all_cases = resolve_cases(build_dir, cases)
    say(f"{len(all_cases)} cases x {len(methods)} methods on {classifier.id} at {layer}")

    # 1. the model cut at the layer (probe: two real images of the build)
    probe_ids = sorted(str(i) for i in data.images["image_id"])[:2]
    probe = classifier.preprocess([data.rgb(image(i)) for i in probe_ids]) if probe_ids else None
    if probe is not None and probe.shape[0] == 1:
        probe = torch.cat([probe, probe.flip(-1)])
    split = SplitModel.create(
        model, layer, probe=probe, max_cache_bytes=int(feature_cache_mb) << 20
    )
    edit_model = split if split is not None else model
    say(
        "model split at the layer: only the part after it is re-run per edit"
        if split is not None
        else "model could not be split at the layer: full forward passes"
    )
    predictor = Predictor(edit_model, classifier.preprocess, data, split, batch_size)
    masks = mask_transform(classifier)

    # 2. key statistics C over the build's clean images
    ids = covariance_image_ids(data, covariance_images)
    image_set_id = f"{len(ids)}img-{stable_key(ids, length=12)}"
    weights_hash = weights_digest(model)
    tick = time.perf_counter()
    stats = cached_key_statistics(
        edit_model,
        layer,
        _image_batches(data, classifier.preprocess, ids, batch_size),
        cache_dir=out / "cache",
        model_id=classifier.id,
        image_set_id=image_set_id,
        weights_hash=weights_hash,
    )
    factor = CovarianceFactor.of(stats.covariance())
    say(
        f"key statistics: {stats.dim}-d keys from {stats.count:.0f} positions of {len(ids)} "
        f"images ({time.perf_counter() - tick:.1f} s)"
    )

    # 3. every case x method
    results_path = out / RESULTS_FILE
    existing = _read_results(results_path)
    done = set(existing["run_key"]) if "run_key" in existing else set()
    for number, case in enumerate(all_cases, 1):
        keys = {
            method: run_key(
                case,
                method,
                classifier.id,
                weights_hash,
                layer,
                budget_pp,
                selection.grid_for(method, grids),
                image_set_id,
            )
            for method in methods
        }
        pending = [m for m in methods if keys[m] not in done]
        if not pending:
            say(f"[{number}/{len(all_cases)}] {case.case_id}: results exist, skipped")
            continue
        rows = _run_case(
            case,
            pending,
            keys,
            predictor=predictor,
            edit_model=edit_model,
            layer=layer,
            classifier=classifier,
            masks=masks,
            factor=factor,
            budget_pp=budget_pp,
            grids=grids,
            build_dir=build_dir,
            say=say,
        )
        fresh = pd.DataFrame(rows)
        if not existing.empty:
            existing = existing[~existing["run_key"].isin(fresh["run_key"])]
        existing = pd.concat([existing, fresh], ignore_index=True) if len(existing) else fresh
        _write_frame(existing, results_path)
        done |= set(fresh["run_key"])
        say(f"[{number}/{len(all_cases)}] {case.case_id}: {', '.join(pending)} done")
    if summarize:
        write_comparison(build_dir)
    return out


def _run_case(
    case: EditCase,
    methods: Sequence[str],
    keys: Mapping[str, str],
    *,
    predictor: Predictor,
    edit_model: torch.nn.Module,
    layer: str,
    classifier: Any,
    masks: Callable[[np.ndarray], torch.Tensor],
    factor: CovarianceFactor,
    budget_pp: float,
    grids: Mapping[str, Sequence[selection.Candidate]] | None,
    build_dir: Path,
    say: Callable[[str], None],
) -> list[dict[str, Any]]:
    data = predictor.data
    items = case_items(case, data)
    exemplars: Any = None
    pre: dict[Any, int] | None = None
    rows: list[dict[str, Any]] = []
    for method in methods:
        path = delta_path(build_dir, method, case.case_id)
        result = None
        if path.is_file():
            try:
                loaded = EditResult.load(path)
            except (OSError, ValueError):
                loaded = None
            if loaded is not None and loaded.metadata.get("run_key") == keys[method]:
                result = loaded
        reused = result is not None
        if result is None:
            if exemplars is None:
                exemplars = case_exemplars(case, data, classifier.preprocess, masks)
            base = selection.base_config(
                method,
                edit_model,
                layer,
                covariance=factor,
                model_id=classifier.id,
                case_id=case.case_id,
            )
            chosen = selection.select_edit(
                edit_model,
                layer,
                exemplars,
                base,
                predictor=predictor,
                train=items.train,
                validation=items.validation,
                validation_refs={item: data.reference(item) for item in items.validation},
                budget_pp=budget_pp,
                grid=selection.grid_for(method, grids),
            )
            result = chosen.result
            result.metadata["run_key"] = keys[method]
            _save_atomic(result, path)
        summary = json.loads(result.metadata.get("selection", "{}"))
        tick = time.perf_counter()
        evaluation = evaluate_case(predictor, case, result, pre=pre)
        eval_s = time.perf_counter() - tick
        pre = evaluation.pre
        info = {
            "case_id": case.case_id,
            "concept": case.concept,
            "texture": case.texture,
            "target": _target_name(case, classifier.class_names),
            "target_class": int(case.target_class),
            "n_train": len(case.train),
            "method": method,
            "model_id": classifier.id,
            "layer": layer,
            "run_key": keys[method],
            "candidate": json.dumps(summary.get("candidate", {}), sort_keys=True),
            "within_budget": bool(summary.get("within_budget", False)),
            "budget_pp": float(budget_pp),
            "val_drop_pp": float(summary.get("val_drop_pp", math.nan)),
            "n_validation": len(case.validation),
            "edit_s": float(summary.get("edit_s", math.nan)),
            "select_s": float(summary.get("select_s", math.nan)),
            "eval_s": eval_s,
            "reused_delta": reused,
        }
        rows += [{**info, **row} for row in evaluation.rows]
        ec = {r["group"]: r["errors_corrected"] for r in evaluation.rows}
        say(
            f"  {method}: {summary.get('candidate')} "
            + " ".join(f"{g}={ec[g]:.0f}%" for g in TEST_GROUPS if not math.isnan(ec[g]))
            + f" clean drop {evaluation.rows[0]['clean_drop_pp']:.1f} pp"
            + (" (delta reused)" if reused else f" ({info['select_s']:.1f} s)")
        )
    return rows


# -- comparison --------------------------------------------------------------------------------
COMPARED = {
    "errors_corrected": "errors corrected (%)",
    "gr": "GR (%)",
    "changed": "top-1 changed (%)",
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
    from pipeline.report.stats import mean_interval

    array = values.astype(float).to_numpy()
    n = int((~np.isnan(array)).sum())
    mean, low, high = mean_interval(array)
    return float(mean), float(low), float(high), n


def compare(results: pd.DataFrame) -> pd.DataFrame:
    """Per (model, layer, method, group): mean and 95% t interval over cases of each metric.

    Columns ``<metric>``, ``<metric>_low``, ``<metric>_high``, ``<metric>_n`` (cases with a
    value: errors corrected is undefined for a case with no error to correct), pooled
    ``e_pre`` / ``e_post`` sums, and ``within_budget`` (cases whose selection met the budget).
    """
    if results.empty:
        return pd.DataFrame()
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
        row["n_images"] = int(part["n"].sum())
        row["within_budget"] = int(part["within_budget"].astype(bool).sum())
        rows.append(row)
    frame = pd.DataFrame(rows)
    order = {g: i for i, g in enumerate(GROUPS)}
    methods = list(dict.fromkeys(results["method"]))
    frame["_m"] = frame["method"].map(methods.index)
    frame["_g"] = frame["group"].map(lambda g: order.get(g, len(order)))
    return frame.sort_values(["model_id", "layer", "_m", "_g"]).drop(columns=["_m", "_g"])


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
                    f"{row['within_budget']}/{row['n_cases']}",
                    _cell(row, "clean_drop_pp", 2),
                    _cell(row, "sr"),
                    _cell(row, "lr"),
                    _cell(row, "val_drop_pp", 2),
                    _cell(row, "select_s"),
                ]
            )
        tables.append((f"{model_id} @ {layer}: cost and locality", header2, rows2))
    return tables


def comparison_markdown(comparison: pd.DataFrame) -> str:
    if comparison.empty:
        return "No edit results yet.\n"
    out = []
    for title, header, rows in comparison_tables(comparison):
        out.append(f"### {title}\n")
        out.append("| " + " | ".join(header) + " |")
        out.append("|" + "|".join("---" for _ in header) + "|")
        out += ["| " + " | ".join(row) + " |" for row in rows]
        out.append("")
    out.append(
        "Errors corrected: 100·(E_pre − E_post)/E_pre per case, E = misclassified "
        "counterfactuals whose clean image the unedited model classifies correctly; NaN cases "
        "(E_pre = 0) are left out of the mean. Clean drop: accuracy on the case's heldout clean "
        "images before minus after. Intervals: Student t over cases."
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
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    fig.savefig(temp, dpi=110, format="png")
    plt.close(fig)
    os.replace(temp, path)
    return path


def write_comparison(build_dir: str | Path) -> Path | None:
    """Write ``comparison.parquet``, ``comparison.md`` and ``comparison.png`` from the results;
    returns the Markdown path, or None when there are no results."""
    out = edits_dir(build_dir)
    results = _read_results(out / RESULTS_FILE)
    if results.empty:
        return None
    comparison = compare(results)
    _write_frame(comparison, out / COMPARISON_FILE)
    plot_comparison(comparison, out / COMPARISON_PNG)
    write_comparison_page(build_dir)
    return atomic_write_text(out / COMPARISON_MD, comparison_markdown(comparison))


def write_comparison_page(build_dir: str | Path) -> Path:
    """``BUILD/report/edits.html``: the comparison as a page of its own (the sensitivity report,
    ``report/index.html``, also shows it when it is written after the edits)."""
    report = Path(build_dir) / "report"
    body = comparison_html(build_dir, relative_to=report)
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>conceptswap edits: {html.escape(Path(build_dir).name)}</title>"
        "<style>body{font:14px/1.45 system-ui,sans-serif;margin:24px}"
        "table{border-collapse:collapse;font-size:12px}"
        "th,td{border:1px solid #d0d7de;padding:3px 7px;text-align:right}"
        "td:first-child,th:first-child{text-align:left}</style></head><body>\n"
        f"{body}\n</body></html>\n"
    )
    return atomic_write_text(report / "edits.html", page)


def comparison_html(build_dir: str | Path, relative_to: str | Path | None = None) -> str:
    """The comparison as an HTML fragment (tables + the figure as a relative ``<img>``).

    ``relative_to``: the folder of the page that includes it (default ``BUILD/report``).
    Returns a short note when the build has no edit results.
    """
    out = edits_dir(build_dir)
    path = out / COMPARISON_FILE
    if not path.is_file():
        return '<section class="edits"><p>No edit results.</p></section>'
    comparison = pd.read_parquet(path)
    parts = ['<section class="edits">', "<h2>Editing: methods compared</h2>"]
    for title, header, rows in comparison_tables(comparison):
        parts.append(f"<h3>{html.escape(title)}</h3>")
        parts.append("<table><thead><tr>")
        parts += [f"<th>{html.escape(h)}</th>" for h in header]
        parts.append("</tr></thead><tbody>")
        for row in rows:
            parts.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>")
        parts.append("</tbody></table>")
    figure = out / COMPARISON_PNG
    if figure.is_file():
        base = Path(relative_to) if relative_to else Path(build_dir) / "report"
        src = Path(os.path.relpath(figure.resolve(), base.resolve())).as_posix()
        parts.append(
            f'<img src="{html.escape(src)}" alt="errors corrected and clean accuracy drop per '
            'method" style="max-width:100%">'
        )
    parts.append(
        "<p>Errors corrected per test group (mean and 95% t interval over cases); hyper-"
        "parameters chosen per case on validation images under the clean-accuracy budget.</p>"
    )
    parts.append("</section>")
    return "\n".join(parts)
