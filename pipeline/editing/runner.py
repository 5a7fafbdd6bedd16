"""Run every editing method on every edit case of a build.

``run_edits(build_dir, config)`` (:class:`~pipeline.editing.config.EditConfig`):

1. loads the classifier once and cuts it at the config's ``layer``
   (:class:`~pipeline.editing.split.SplitModel`: the network before the layer runs once per
   image, every edit re-runs only the rest);
2. computes the key statistics ``C`` of the layer over the build's clean images, streamed in
   batches and cached under ``BUILD/edits/cache/`` by (model id, weights hash, layer, image set);
3. for every case (``BUILD/cases/``; planned with :func:`pipeline.cases.plan_cases` by the
   config's plan if there are none) and method: selects hyper-parameters on the case's
   validation split under the clean-accuracy budget (:mod:`pipeline.editing.select`), saves
   the selected delta to ``BUILD/edits/<method>/<case_id>.safetensors`` and every distinct
   edit of the grid next to it, and evaluates **every candidate** on the test groups, the
   heldout clean images (:mod:`pipeline.editing.evaluate`; on the cached prefix, so a
   candidate costs the suffix of the network only) and the config's labelled general sets
   (:mod:`pipeline.editing.locality`): the method's curve of errors corrected against
   locality, with the selected candidate marked;
4. writes the long table ``BUILD/edits/results.parquet``
   (:class:`~pipeline.store.edit_results.EditResultRow`: one row per case x method x
   candidate x part) and, from the same predictions, errors corrected per style image of the
   target tests (``style_outcomes.parquet``, :mod:`pipeline.editing.style_transfer`).

The comparison of the methods over cases is written from that table by
:func:`pipeline.report.edits.write_comparison`; the file layout is
:mod:`pipeline.store.edits_layout`.

Work is skipped when its output exists: results are keyed by (case, method, run key — model,
weights, layer, budget, the method's settings and grid, covariance image set, the case's
content); a delta file with the same run key is loaded instead of recomputed.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from pipeline import progress
from pipeline.cases import TEST_GROUPS, EditCase, load_cases
from pipeline.cases.plans import DEFAULT_MIN_VALIDATION
from pipeline.edit_curves import grid_defect
from pipeline.editing import select as selection
from pipeline.editing.build_images import BuildImages, CaseItems, Item, case_items, image
from pipeline.editing.config import DEFAULT_METHOD_NAMES, EditConfig
from pipeline.editing.covariance import CovarianceFactor, cached_key_statistics, weights_digest
from pipeline.editing.delta import EditResult
from pipeline.editing.evaluate import case_exemplars, evaluate_case, references
from pipeline.editing.key_sources import (
    CovarianceSpec,
    build_max_side,
    case_image_ids,
    covariance_image_ids,
    key_sources,
    mixed_covariance,
    mixed_name,
)
from pipeline.editing.layers import resolve_layer
from pipeline.editing.locality import GeneralLocality, LabelledSet, load_labelled_set
from pipeline.editing.masks import mask_transform
from pipeline.editing.methods import (
    Candidate,
    EditingMethod,
    EditInputs,
    create_method,
)
from pipeline.editing.predict import Predictor
from pipeline.editing.run_inputs import (
    PLANS,
    NoCasesError,
    default_layer,
    resolve_cases,
)
from pipeline.editing.split import SplitModel
from pipeline.editing.style_transfer import style_outcome_rows
from pipeline.failpoints import failpoint
from pipeline.hashing import stable_key
from pipeline.store.edit_results import EditResultRow, read_results, write_results
from pipeline.store.edits_layout import (
    CACHE_DIR,
    RESULTS_FILE,
    STYLE_OUTCOMES_FILE,
    delta_path,
    edits_dir,
    solve_path,
)
from pipeline.store.style_outcomes import (
    StyleOutcomeRow,
    read_style_outcomes,
    write_style_outcomes,
)

RESULTS_VERSION = "edit-results-v3"
# a case on which every candidate keeps fewer heldout top-1s unchanged is a grid defect
LOCALITY_FLOOR = 0.99
__all__ = [
    "DEFAULT_METHODS",
    "PLANS",
    "NoCasesError",
    "case_image_ids",
    "covariance_image_ids",
    "default_layer",
    "load_cases",
    "resolve_cases",
    "run_edits",
    "run_key",
]
DEFAULT_METHODS = DEFAULT_METHOD_NAMES

logger = logging.getLogger("conceptswap.edit")


def _target_name(case: EditCase, class_names: Sequence[str]) -> str:
    group = case.params.get("target_group")
    if group:
        return str(group)
    index = int(case.target_class)
    return class_names[index] if 0 <= index < len(class_names) else str(index)


def run_key(
    case: EditCase,
    method: EditingMethod,
    model_id: str,
    weights_hash: str,
    layer: str,
    budget_pp: float,
    grid: Sequence[Candidate],
    image_set_id: str,
) -> str:
    """What a (case, method) result depends on; a change of any part recomputes it."""
    return stable_key(
        RESULTS_VERSION,
        case.to_json(),
        method.name,
        model_id,
        weights_hash,
        layer,
        float(budget_pp),
        [c.to_dict() for c in grid],
        method.settings(),
        image_set_id,
        length=20,
    )


# -- the run -----------------------------------------------------------------------------------
@dataclass
class _Run:
    """What every case of one run shares: the model cut at the layer, ``C``, the methods."""

    build_dir: Path
    classifier: Any
    layer: str
    edit_model: nn.Module
    predictor: Predictor
    masks: Callable[[np.ndarray], torch.Tensor]
    factor: CovarianceFactor
    weights_hash: str
    image_set_id: str
    covariance_overlap: int
    budget_pp: float
    methods: dict[str, EditingMethod]
    grids: dict[str, list[Candidate]]
    say: Callable[[str], None]
    min_e_pre: int = 5
    general: list[LabelledSet] = field(default_factory=list)
    curves: bool = True

    def key(self, case: EditCase, name: str) -> str:
        return (
            run_key(
                case,
                self.methods[name],
                self.classifier.id,
                self.weights_hash,
                self.layer,
                self.budget_pp,
                self.grids[name],
                self.image_set_id,
            )
            + (f"-e{self.min_e_pre}" if self.min_e_pre != 5 else "")
            + "".join(f"-g{s.name}" for s in self.general)
            + ("" if self.curves else "-single")
        )


def _start(
    build_dir: Path,
    classifier: Any,
    layer: str,
    covariance_images: CovarianceSpec,
    batch_size: int,
    feature_cache_mb: int,
    say: Callable[[str], None],
    cases: Sequence[EditCase] = (),
    covariance_views: str = "center",
) -> tuple[BuildImages, SplitModel | None, CovarianceFactor, str, str, int]:
    """The build's images, the model split at the layer, ``C`` (cached), the weights hash, the
    image-set id of ``C`` and how many of its images the cases use."""
    model = classifier.model
    data = BuildImages(build_dir)
    # the split is verified on a probe of two real images of the build
    probe_ids = sorted(str(i) for i in data.images["image_id"])[:2]
    probe = classifier.preprocess([data.rgb(image(i)) for i in probe_ids]) if probe_ids else None
    if probe is not None and probe.shape[0] == 1:
        probe = torch.cat([probe, probe.flip(-1)])
    split = SplitModel.create(
        model, layer, probe=probe, max_cache_bytes=int(feature_cache_mb) << 20
    )
    say(
        "model split at the layer: only the part after it is re-run per edit"
        if split is not None
        else "model could not be split at the layer: full forward passes"
    )
    sources = key_sources(data, covariance_images, cases, covariance_views)
    weights_hash = weights_digest(model)
    stats = []
    for source in sources:
        say(
            f"key statistics from {source.name}: "
            + (
                f"{source.overlap} images shared with the cases (in-sample)"
                if source.overlap
                else "disjoint"
            )
        )
        tick = time.perf_counter()
        stats.append(
            cached_key_statistics(
                split if split is not None else model,
                layer,
                source.read(classifier.preprocess, batch_size),
                cache_dir=edits_dir(build_dir) / CACHE_DIR,
                model_id=classifier.id,
                image_set_id=source.name,
                weights_hash=weights_hash,
            )
        )
        say(
            f"key statistics: {stats[-1].dim}-d keys from {stats[-1].count:.0f} positions of "
            f"{source.images} images ({time.perf_counter() - tick:.1f} s)"
        )
    if len(sources) > 1:
        say(f"C: the mean of the {len(sources)} image sets' second moments (equal weights)")
    factor = CovarianceFactor.of(mixed_covariance(stats))
    overlap = sum(source.overlap for source in sources)
    return data, split, factor, weights_hash, mixed_name(sources), overlap


def run_edits(
    build_dir: str | Path,
    config: EditConfig | None = None,
    *,
    cases: Sequence[EditCase | str] | None = None,
    classifier: Any | None = None,
    log: Callable[[str], None] | None = None,
) -> Path:
    """Edit and evaluate every case with every method of ``config``; returns ``BUILD/edits``.

    Args:
        build_dir: a build with edit cases (planned by ``config.plan`` when it has none).
        config: the experiment (:class:`~pipeline.editing.config.EditConfig`; default: its
            defaults): model and layer, methods with their settings and grids, the budget, the
            image sets of the key statistics ``C`` and the labelled general locality sets.
        cases: case objects or ids to run (default: every case of the build, or
            ``config.cases``).
        classifier: an already loaded classifier (an object with ``model``, ``preprocess``,
            ``id``, ``class_names``) instead of loading ``config.model``.
        log: where progress lines go (default: the ``conceptswap.edit`` logger).

    Every candidate of every grid is evaluated on the test groups, the heldout clean images
    and the general sets, so the results hold each method's whole curve; the budget-selected
    candidate is marked (``config.curves = False``: only the selected candidate is evaluated).
    A case whose clean validation split is smaller than its plan's ``min_validation`` cannot
    resolve the budget (one image weighs ``100/n`` pp): its rows say
    ``budget_resolved = False`` and ``within_budget = None``.
    """
    config = config or EditConfig()
    say = log or logger.info
    build_dir = Path(build_dir)
    if classifier is None:
        from pipeline.classify import EAGER, create_classifier

        # editing needs the torch model only: no engine probe
        classifier = create_classifier(
            config.model, engine=EAGER, device=config.device, **config.model_options
        )
    classifier.model.eval()
    layer = config.layer or default_layer(classifier.model)
    resolve_layer(classifier.model, layer)
    all_cases = resolve_cases(build_dir, cases if cases is not None else config.cases, config.plan)
    if not all_cases:
        raise NoCasesError(f"no edit cases selected in {build_dir}")
    methods = config.method_names
    say(f"{len(all_cases)} cases x {len(methods)} methods on {classifier.id} at {layer}")
    # C avoids the images of every case of the build, not only of this batch of cases
    known = {case.case_id: case for case in [*load_cases(build_dir), *all_cases]}
    data, split, factor, weights_hash, image_set_id, overlap = _start(
        build_dir,
        classifier,
        layer,
        covariance_spec(config.covariance.images),
        config.batch_size,
        config.feature_cache_mb,
        say,
        list(known.values()),
        config.covariance.views,
    )
    edit_model = split if split is not None else classifier.model
    general = _general_sets(config, classifier, edit_model, split, data, say)
    chosen = {m.name: create_method(m.name, **m.settings) for m in config.methods}
    grids = {m.name: grid_candidates(m.grid) for m in config.methods if m.grid is not None}
    run = _Run(
        build_dir=build_dir,
        classifier=classifier,
        layer=layer,
        edit_model=edit_model,
        predictor=Predictor(edit_model, classifier.preprocess, data, split, config.batch_size),
        masks=mask_transform(classifier),
        factor=factor,
        weights_hash=weights_hash,
        image_set_id=image_set_id,
        covariance_overlap=overlap,
        budget_pp=config.budget_pp,
        methods=chosen,
        grids={name: selection.candidates(method, grids) for name, method in chosen.items()},
        say=say,
        min_e_pre=config.min_e_pre,
        general=general,
        curves=config.curves,
    )

    results_path = edits_dir(build_dir) / RESULTS_FILE
    existing = read_results(results_path).to_dict("records")
    styles_path = edits_dir(build_dir) / STYLE_OUTCOMES_FILE
    style_rows = read_style_outcomes(styles_path).to_dict("records")
    done = {row["run_key"] for row in existing}
    for number, case in enumerate(all_cases, 1):
        keys = {name: run.key(case, name) for name in methods}
        pending = [name for name in methods if keys[name] not in done]
        if not pending:
            # this run's rows go last again: the report reads each (case, method)'s last run
            ordered = _last(existing, set(keys.values()))
            if ordered != existing:
                existing = ordered
                write_results(existing, results_path)
            say(f"[{number}/{len(all_cases)}] {case.case_id}: results exist, skipped")
            progress.advance("edit", 1, len(all_cases))
            continue
        fresh, fresh_styles = _run_case(run, case, pending, keys)
        fresh_keys = {row.run_key for row in fresh}
        existing = [row for row in existing if row["run_key"] not in fresh_keys]
        existing = _last(existing, set(keys.values())) + [row.to_row() for row in fresh]
        style_rows = [row for row in style_rows if row["run_key"] not in fresh_keys]
        style_rows += [row.to_row() for row in fresh_styles]
        # before the results: a run stopped in between recomputes the case and replaces these
        write_style_outcomes(style_rows, styles_path)
        failpoint("edit.before_results")
        write_results(existing, results_path)
        failpoint("edit.after_case")
        done |= fresh_keys
        say(f"[{number}/{len(all_cases)}] {case.case_id}: {', '.join(pending)} done")
        progress.advance("edit", 1, len(all_cases))
    return edits_dir(build_dir)


def _last(rows: list[dict[str, Any]], keys: set[str]) -> list[dict[str, Any]]:
    """``rows`` with those of ``keys`` moved to the end, each group in its order."""
    return [r for r in rows if r["run_key"] not in keys] + [r for r in rows if r["run_key"] in keys]


def _saved_delta(path: Path, key: str) -> EditResult | None:
    """The delta saved for this run key, or None (absent, unreadable or of another run)."""
    if not path.is_file():
        return None
    try:
        loaded = EditResult.load(path)
    except (OSError, ValueError):
        return None
    return loaded if loaded.metadata.get("run_key") == key else None


def _saved_selection(
    run: _Run, case: EditCase, name: str, key: str
) -> tuple[EditResult, list[EditResult]] | None:
    """The selected delta and every solve of the grid saved under this run key, or None when
    any is missing (the selection then runs again)."""
    selected = _saved_delta(delta_path(run.build_dir, name, case.case_id), key)
    if selected is None:
        return None
    trials = json.loads(selected.metadata.get("selection", "{}")).get("trials", [])
    if len(trials) != len(run.grids[name]):
        return None
    solves = []
    for index in range(max((int(t.get("solve", 0)) for t in trials), default=-1) + 1):
        solve = _saved_delta(solve_path(run.build_dir, name, case.case_id, index), key)
        if solve is None:
            return None
        solves.append(solve)
    return selected, solves


def _select(
    run: _Run,
    case: EditCase,
    name: str,
    key: str,
    inputs: EditInputs,
    items: CaseItems,
    cf_refs: Mapping[Item, int],
) -> tuple[EditResult, list[EditResult]]:
    """Select on the case's validation split; save the selected delta and every solve."""
    data = run.predictor.data
    chosen = selection.select_edit(
        run.edit_model,
        run.layer,
        run.methods[name],
        inputs,
        predictor=run.predictor,
        train=items.train,
        validation=items.validation,
        validation_refs={item: data.reference(item) for item in items.validation},
        budget_pp=run.budget_pp,
        grid=run.grids[name],
        validation_cf=items.validation_cf,
        validation_cf_refs=dict(cf_refs),
    )
    for index, solve in enumerate(chosen.solves):
        solve.metadata["run_key"] = key
        solve.save(solve_path(run.build_dir, name, case.case_id, index))
    result = chosen.result
    result.metadata["run_key"] = key
    result.save(delta_path(run.build_dir, name, case.case_id))
    return result, chosen.solves


def _general_fields(measured: Sequence[GeneralLocality]) -> dict[str, Any]:
    """The result row's general-locality fields: the first general set's figures (the others
    are in the log), empty without one."""
    if not measured:
        return {}
    first = measured[0]
    return {
        "general_set": first.name,
        "general_n": first.n,
        "general_unchanged": first.unchanged,
        "general_acc_pre": first.acc_pre,
        "general_acc_post": first.acc_post,
        "general_drop_pp": first.drop_pp,
    }


def _general_sets(
    config: EditConfig,
    classifier: Any,
    model: nn.Module,
    split: SplitModel | None,
    data: BuildImages,
    say: Callable[[str], None],
) -> list[LabelledSet]:
    """The config's labelled general sets, held at the edited layer."""
    sets = []
    for spec in config.locality.general:
        tick = time.perf_counter()
        labelled = load_labelled_set(
            spec,
            model,
            classifier.preprocess,
            split,
            label_column=config.locality.label_column,
            limit=config.locality.limit,
            max_side=build_max_side(data),
            batch_size=config.batch_size,
        )
        measured = labelled.measure(None)
        say(
            f"general locality set {labelled.name}: {labelled.n} images, accuracy "
            f"{100 * measured.acc_pre:.1f} % ({time.perf_counter() - tick:.1f} s)"
        )
        sets.append(labelled)
    return sets


def covariance_spec(images: Sequence[str]) -> CovarianceSpec:
    """The key statistics' image sets of a config (none: the build's own images no case uses;
    one: that build, folder or ``hf:`` dataset; several: their equal-weight mix)."""
    if not images:
        return None
    return images[0] if len(images) == 1 else list(images)


def grid_candidates(grid: Sequence[Mapping[str, Any]]) -> list[Candidate]:
    """A config's grid (settings per candidate, with an optional ``scale``) as candidates."""
    return [
        Candidate({k: v for k, v in point.items() if k != "scale"}, float(point.get("scale", 1.0)))
        for point in grid
    ]


def _float(value: Any) -> float:
    return math.nan if value is None else float(value)


def _run_case(
    run: _Run, case: EditCase, names: Sequence[str], keys: Mapping[str, str]
) -> tuple[list[EditResultRow], list[StyleOutcomeRow]]:
    data = run.predictor.data
    items = case_items(case, data)
    inputs: EditInputs | None = None
    cf_refs: dict[Item, int] = {}
    pre: dict[Any, int] | None = None
    pre_logp: dict[Any, float] | None = None
    min_validation = int(case.params.get("min_validation", DEFAULT_MIN_VALIDATION))
    pp_per_image, resolved = selection.budget_resolution(len(case.validation), min_validation)
    rows: list[EditResultRow] = []
    styles: list[StyleOutcomeRow] = []
    for name in names:
        saved = _saved_selection(run, case, name, keys[name])
        reused = saved is not None
        if saved is None:
            if inputs is None:
                # label-free items are judged against the unedited model's clean top-1
                selected = [*items.train, *items.validation_cf]
                base = run.predictor.predict([items.clean[i] for i in selected])
                refs = references(data, selected, base)
                cf_refs = {i: refs[i] for i in items.validation_cf}
                exemplars = case_exemplars(
                    case,
                    data,
                    run.classifier.preprocess,
                    run.masks,
                    labels=[refs[i] for i in items.train],
                )
                inputs = EditInputs(exemplars, run.factor, case.case_id, run.classifier.id)
            saved = _select(run, case, name, keys[name], inputs, items, cf_refs)
        result, solves = saved
        summary = json.loads(result.metadata.get("selection", "{}"))
        trials = summary.get("trials", [])
        grid = run.grids[name]
        chosen_params = summary.get("candidate", {})
        selected_index = next((i for i, c in enumerate(grid) if c.to_dict() == chosen_params), 0)
        # every candidate on the test groups and the heldout images: the method's curve; the
        # predictor re-runs only the network after the layer on cached inputs
        evaluated = list(range(len(grid))) if run.curves else [selected_index]
        evaluations = []
        for index in evaluated:
            candidate = grid[index]
            tick = time.perf_counter()
            evaluation = evaluate_case(
                run.predictor,
                case,
                solves[int(trials[index].get("solve", 0))],
                pre=pre,
                pre_logp=pre_logp,
                scale=candidate.scale,
                min_e_pre=run.min_e_pre,
            )
            pre, pre_logp = evaluation.pre, evaluation.pre_logp
            solve = solves[int(trials[index].get("solve", 0))]
            general = [s.measure(solve, candidate.scale) for s in run.general]
            evaluations.append((evaluation, time.perf_counter() - tick, general))
        localities = [e.rows[0]["lr"] / 100.0 for e, _, _ in evaluations]
        defect = grid_defect(localities, LOCALITY_FLOOR) if run.curves else False
        info = {
            "case_id": case.case_id,
            "concept": case.concept,
            "texture": case.texture,
            "target": _target_name(case, run.classifier.class_names),
            "target_class": int(case.target_class),
            "n_train": len(case.train),
            "plan": str(case.params.get("plan", "classes")),
            "label_free": bool(case.params.get("label_free", False)),
            "method": name,
            "model_id": run.classifier.id,
            "layer": run.layer,
            "run_key": keys[name],
            # the method's fixed settings (cov_floor, cov_ridge, steps, ...) under the candidate
            "settings": json.dumps(run.methods[name].settings(), sort_keys=True),
            "covariance_set": run.image_set_id,
            "covariance_overlap": run.covariance_overlap,
            "budget_pp": float(run.budget_pp),
            "n_validation": len(case.validation),
            "n_validation_cf": len(case.validation_cf),
            "pp_per_image": pp_per_image,
            "budget_resolved": resolved,
            "within_budget": bool(summary.get("within_budget", False)) if resolved else None,
            "grid_defect": defect,
            "select_s": _float(summary.get("select_s")),
            "reused_delta": reused,
        }
        for index, (evaluation, eval_s, general) in zip(evaluated, evaluations, strict=True):
            candidate, trial = grid[index], trials[index]
            scores = {
                "candidate_index": index,
                "candidate": json.dumps(candidate.to_dict(), sort_keys=True),
                "selected": index == selected_index,
                "val_drop_pp": _float(trial.get("val_drop_pp")),
                "val_ec": _float(trial.get("val_ec")),
                "train_acc": _float(trial.get("train_acc")),
                "strength": _float(trial.get("strength")),
                "edit_s": _float(trial.get("edit_s")),
                "eval_s": eval_s,
                **_general_fields(general),
            }
            rows += [EditResultRow(**info, **scores, **row) for row in evaluation.rows]
            chosen = {**info, "candidate_index": index, "selected": index == selected_index}
            styles += style_outcome_rows(case, evaluation.outcomes, chosen)
        chosen_rows = evaluations[evaluated.index(selected_index)][0].rows
        ec = {r["group"]: r["errors_corrected"] for r in chosen_rows}
        run.say(
            f"  {name}: {chosen_params} "
            + " ".join(f"{g}={ec[g]:.0f}%" for g in TEST_GROUPS if not math.isnan(ec[g]))
            + f" clean drop {chosen_rows[0]['clean_drop_pp']:.1f} pp, "
            + f"{len(evaluations)} of {len(grid)} candidates evaluated"
            + ("" if resolved else f"; budget unresolved (1 image = {pp_per_image:.2g} pp)")
            + ("; grid defect: no candidate keeps LR >= 99 %" if defect else "")
            + (" (deltas reused)" if reused else f" ({info['select_s']:.1f} s)")
        )
    return rows, styles
