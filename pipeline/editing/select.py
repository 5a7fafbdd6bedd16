"""Hyper-parameters per method, chosen at matched cost on a case's validation split.

Methods are compared at matched cost. For each method a small grid of candidate settings (the
method class's ``grid``, see :mod:`pipeline.editing.methods`) is tried on one case; a candidate
is *feasible* when the clean accuracy on the case's ``validation`` images drops by at most
``budget_pp`` percentage points. Among the feasible candidates the one that corrects most errors
on the case's *transformed* validation images (``validation_cf``: counterfactuals of photos in
neither the train split nor a test group) wins; ties — and cases without transformed validation
images — are broken by the exemplars' accuracy, then toward the **stronger** edit (the larger
``‖ΔW‖``, scale included), then by the exemplars' mean log-probability, then by grid order.
Preferring the stronger of tied candidates means selection cannot settle on a near no-op only
because it is harmless. If no candidate is feasible, the one with the smallest validation drop
is kept and flagged ``within_budget = False``.

Selection only ever classifies the case's exemplars and validation images: :func:`select_edit`
is not given the test groups or the heldout images at all.

With ``n`` validation images one changed prediction moves the accuracy by ``100/n`` pp, so a
1 pp budget with fewer than 100 validation images means "no net loss on validation";
:func:`budget_resolution` says whether a split is large enough to resolve the budget at all
(``min_validation`` images, 200 by default), and the results flag it when it is not.

Every candidate's edit is kept (:attr:`Selection.solves`, one per distinct solve; a scale
reuses its solve) so that the runner can evaluate the whole grid on the held-out parts: the
curve of errors corrected against locality, with the selected point marked on it.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from pipeline.editing.build_images import Item
from pipeline.editing.delta import EditResult, applied
from pipeline.editing.methods import Candidate, EditingMethod, EditInputs
from pipeline.editing.metrics import clipped_percent
from pipeline.editing.predict import Predictor


def candidates(
    method: EditingMethod, grids: Mapping[str, Sequence[Candidate]] | None = None
) -> list[Candidate]:
    """The candidates of ``method``: ``grids[method.name]`` if given, else the method's own
    ``grid``; one candidate of the method's defaults when the list is empty."""
    return list((grids or {}).get(method.name, method.grid)) or [Candidate()]


@dataclass
class Trial:
    """One candidate's scores on the selection data."""

    candidate: Candidate
    val_drop_pp: float
    train_acc: float
    train_logp: float
    edit_s: float
    val_ec: float = math.nan  # % errors corrected on the transformed validation images
    strength: float = 0.0  # Frobenius norm of the (scaled) delta
    solve: int = 0  # index of the candidate's unscaled edit in ``Selection.solves``

    def feasible(self, budget_pp: float) -> bool:
        return not math.isnan(self.val_drop_pp) and self.val_drop_pp <= budget_pp + 1e-9

    def to_dict(self) -> dict[str, Any]:
        return {
            "candidate": self.candidate.label,
            "params": self.candidate.to_dict(),
            "val_drop_pp": self.val_drop_pp,
            "train_acc": self.train_acc,
            "train_logp": self.train_logp,
            "edit_s": self.edit_s,
            "val_ec": self.val_ec,
            "strength": self.strength,
            "solve": self.solve,
        }


@dataclass
class Selection:
    """The chosen edit (scale applied), its candidate, every trial, and every distinct
    unscaled edit the trials were made from (``solves``; ``Trial.solve`` indexes it)."""

    result: EditResult
    candidate: Candidate
    trials: list[Trial]
    within_budget: bool
    budget_pp: float
    seconds: float
    solves: list[EditResult] = field(default_factory=list)

    @property
    def chosen(self) -> Trial:
        return next(t for t in self.trials if t.candidate is self.candidate)

    def summary(self) -> dict[str, Any]:
        return {
            "candidate": self.candidate.to_dict(),
            "within_budget": self.within_budget,
            "budget_pp": self.budget_pp,
            "val_drop_pp": self.chosen.val_drop_pp,
            "train_acc": self.chosen.train_acc,
            "val_ec": self.chosen.val_ec,
            "strength": self.chosen.strength,
            "select_s": self.seconds,
            "edit_s": self.chosen.edit_s,
            "trials": [t.to_dict() for t in self.trials],
        }


def budget_resolution(n_validation: int, min_validation: int = 200) -> tuple[float, bool]:
    """What one validation image weighs (``100 / n`` pp) and whether the split resolves a
    budget: at least ``min_validation`` images (with 40 images one image is 2.5 pp, and
    "within a 1 pp budget" only means "no net loss").

    Args:
        n_validation: clean validation images of the case.
        min_validation: the fewest images that resolve the budget.
    """
    pp_per_image = 100.0 / n_validation if n_validation else math.inf
    return pp_per_image, n_validation >= max(1, min_validation)


def result_norm(result: EditResult) -> float:
    """Frobenius norm of all of an edit's deltas together."""
    return math.sqrt(sum(float(d.double().pow(2).sum()) for d in result.deltas.values()))


def _accuracy(correct: torch.Tensor) -> float:
    return 100.0 * float(correct.float().mean()) if correct.numel() else math.nan


def choose(trials: Sequence[Trial], budget_pp: float) -> tuple[Trial, bool]:
    """The best feasible trial (most validation errors corrected, most exemplars right, the
    stronger edit, highest log-prob, then grid order), or the least damaging one when none is
    feasible (``within_budget = False``)."""
    feasible = [t for t in trials if t.feasible(budget_pp)]
    if feasible:
        best = max(
            feasible,
            key=lambda t: (
                _nan_low(round(t.val_ec, 9)),
                _nan_low(t.train_acc),
                round(t.strength, 9),
                _nan_low(t.train_logp),
            ),
        )
        return best, True
    best = min(
        trials,
        key=lambda t: (_nan_high(t.val_drop_pp), -_nan_low(t.train_acc), -_nan_low(t.train_logp)),
    )
    return best, False


def _nan_low(value: float) -> float:
    return -math.inf if math.isnan(value) else value


def _nan_high(value: float) -> float:
    return math.inf if math.isnan(value) else value


def select_edit(
    model: nn.Module,
    layer: str,
    method: EditingMethod,
    case: EditInputs,
    *,
    predictor: Predictor,
    train: Sequence[Item],
    validation: Sequence[Item],
    validation_refs: Mapping[Item, int | None],
    budget_pp: float = 1.0,
    grid: Sequence[Candidate] | None = None,
    validation_cf: Sequence[Item] = (),
    validation_cf_refs: Mapping[Item, int] | None = None,
) -> Selection:
    """Try every candidate of ``method`` (``grid``, default :func:`candidates`) on ``case`` and
    return the selected edit.

    ``train``: the exemplars' counterfactual items (aligned with ``case.exemplars``; their labels
    are ``case.exemplars.labels``); ``validation``: clean images; ``validation_refs``: their labels
    (``None``: unlabelled, judged against the unedited model's prediction). Edits are computed
    with ``model`` (the predictor's model or a :class:`~pipeline.editing.split.SplitModel` of
    it) and applied to ``predictor.model`` only while it classifies. ``validation_cf``:
    transformed validation images with their reference labels ``validation_cf_refs``.
    """
    start = time.perf_counter()
    tried = list(grid) if grid is not None else candidates(method)
    if len(train) != len(case.exemplars):
        raise ValueError(f"{len(train)} train items for {len(case.exemplars)} exemplars")
    train, validation = list(train), list(validation)
    pre_logits = predictor.logits(validation)
    pre = pre_logits.argmax(1) if len(validation) else torch.zeros(0, dtype=torch.long)
    refs = torch.tensor(
        [
            int(pre[i]) if validation_refs.get(item) is None else int(validation_refs[item])
            for i, item in enumerate(validation)
        ],
        dtype=torch.long,
    )
    val_acc_pre = _accuracy(pre == refs)
    labels = case.exemplars.labels.cpu()
    transformed = list(validation_cf)
    cf_refs = torch.tensor([int((validation_cf_refs or {})[i]) for i in transformed])
    cf_wrong_pre = (
        predictor.logits(transformed).argmax(1) != cf_refs
        if transformed
        else torch.zeros(0, dtype=torch.bool)
    )
    e_pre = int(cf_wrong_pre.sum())

    computed: dict[str, tuple[int, float]] = {}
    solves: list[EditResult] = []
    trials: list[Trial] = []
    for candidate in tried:
        key = json.dumps(dict(candidate.params), sort_keys=True, default=str)
        if key not in computed:
            variant = method.with_params(candidate.params)
            tick = time.perf_counter()
            solves.append(variant.edit(model, layer, case))
            computed[key] = (len(solves) - 1, time.perf_counter() - tick)
        solve, edit_s = computed[key]
        result = solves[solve]
        with applied(predictor.model, result, candidate.scale):
            logits = predictor.logits([*train, *validation, *transformed])
        train_logits = logits[: len(train)]
        val_logits = logits[len(train) : len(train) + len(validation)]
        cf_wrong = logits[len(train) + len(validation) :].argmax(1) != cf_refs
        val_ec = clipped_percent(e_pre, int(cf_wrong.sum())) if transformed else math.nan
        log_probs = torch.log_softmax(train_logits, dim=1)
        val_post = val_logits.argmax(1) if len(validation) else pre
        trials.append(
            Trial(
                candidate=candidate,
                val_drop_pp=val_acc_pre - _accuracy(val_post == refs),
                train_acc=_accuracy(train_logits.argmax(1) == labels),
                train_logp=float(log_probs.gather(1, labels[:, None]).mean()),
                edit_s=edit_s,
                val_ec=val_ec,
                strength=abs(candidate.scale) * result_norm(result),
                solve=solve,
            )
        )
    best, within = choose(trials, budget_pp)
    # a copy, so that the selection's metadata stays off the kept solve
    result = solves[best.solve].scaled(best.candidate.scale)
    if best.candidate.scale == 1.0:
        result.metadata.pop("scale", None)
    selection = Selection(
        result=result,
        candidate=best.candidate,
        trials=trials,
        within_budget=within,
        budget_pp=budget_pp,
        seconds=time.perf_counter() - start,
        solves=solves,
    )
    result.metadata["selection"] = json.dumps(selection.summary(), sort_keys=True, default=str)
    return selection
