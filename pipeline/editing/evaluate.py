"""An edit evaluated on one case: exemplars from the build, predictions before and after.

:func:`case_exemplars` builds :class:`EditExemplars` from a case's train split;
:func:`evaluate_case` classifies the case's items with and without an edit and scores them with
:func:`pipeline.editing.metrics.case_metrics`; its per-item outcomes (:func:`item_outcomes`)
let a breakdown such as errors corrected per style image
(:mod:`pipeline.editing.style_transfer`) pool the same predictions without running the model
again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from pipeline.cases import TEST_GROUPS, EditCase
from pipeline.editing.build_images import BuildImages, CaseItems, Item, case_items, cf
from pipeline.editing.delta import EditResult, applied
from pipeline.editing.exemplars import EditExemplars
from pipeline.editing.metrics import case_metrics
from pipeline.editing.predict import Predictor


def case_exemplars(
    case: EditCase,
    data: BuildImages,
    preprocess: Callable[[list[np.ndarray]], Tensor],
    masks: Callable[[np.ndarray], Tensor],
    labels: Sequence[int] | None = None,
) -> EditExemplars:
    """The case's train counterfactuals as :class:`EditExemplars`.

    ``transformed``: the counterfactuals; ``original``: their clean images; ``masks``: the
    concept masks in the same geometry (:func:`pipeline.editing.masks.mask_transform`);
    ``labels``: each exemplar's own reference label (the target class, or the image's class
    within a target group). ``labels`` overrides them (label-free cases: the unedited model's
    top-1 on each exemplar's clean image, see :func:`references`).
    """
    items = [cf(cf_id) for cf_id in case.train]
    transformed = preprocess([data.rgb(item) for item in items])
    original = preprocess([data.rgb(data.clean_of(item)) for item in items])
    mask_batch = torch.stack([masks(data.mask(item.id)) for item in items])
    if labels is None:
        labels = []
        for item in items:
            label = data.reference(item)
            if label is None:
                raise ValueError(f"counterfactual {item.id} has neither a label nor a prediction")
            labels.append(label)
    if len(labels) != len(items):
        raise ValueError(f"{len(labels)} labels for {len(items)} exemplars")
    return EditExemplars(
        transformed, original, mask_batch, torch.tensor(list(labels), dtype=torch.long)
    )


def references(data: BuildImages, items: Iterable[Item], pre: dict[Item, int]) -> dict[Item, int]:
    """Reference label per item: its photo's label; label-free, the unedited model's top-1 on
    the item's clean image (``pre`` must hold it), so an "error" is a counterfactual whose top-1
    differs from its clean image's, and an unlabelled clean image is right unless it changed."""
    out = {}
    for item in items:
        label = data.label(item)
        out[item] = pre[data.clean_of(item)] if label is None else label
    return out


def item_outcomes(
    data: BuildImages,
    items: CaseItems,
    refs: dict[Item, int],
    pre: dict[Item, int],
    post: dict[Item, int],
) -> pd.DataFrame:
    """One row per test counterfactual of the case, with what the part metrics count: its
    ``group``, ``cf_id``, ``image_id``, ``style_image``, ``clean_correct`` (the unedited model
    gets its clean image right: it is counted in E), ``correct_pre`` and ``correct_post``."""
    rows = [
        {
            "group": group,
            "cf_id": item.id,
            "image_id": items.clean[item].id,
            "clean_correct": pre[items.clean[item]] == refs[items.clean[item]],
            "correct_pre": pre[item] == refs[item],
            "correct_post": post[item] == refs[item],
        }
        for group in TEST_GROUPS
        for item in items.groups.get(group, [])
    ]
    columns = ["group", "cf_id", "image_id", "clean_correct", "correct_pre", "correct_post"]
    outcomes = pd.DataFrame(rows, columns=columns)
    styles = data.counterfactuals["style_image"].reindex(outcomes["cf_id"]).astype(str)
    outcomes.insert(3, "style_image", styles.to_numpy())
    return outcomes


@dataclass
class CaseEvaluation:
    """Rows of :func:`~pipeline.editing.metrics.case_metrics` plus the predictions they came
    from, and ``outcomes``: per test counterfactual, right or wrong before and after
    (:func:`item_outcomes`)."""

    rows: list[dict[str, Any]]
    pre: dict[Item, int]
    post: dict[Item, int]
    items: CaseItems
    pre_logp: dict[Item, float] | None = None
    outcomes: pd.DataFrame = field(default_factory=pd.DataFrame)


def _logits_top1(predictor: Predictor, items: Sequence[Item]) -> tuple[dict[Item, int], Tensor]:
    unique = list(dict.fromkeys(items))
    logits = predictor.logits(unique) if unique else torch.zeros(0, 0)
    top1 = logits.argmax(1).tolist() if unique else []
    return dict(zip(unique, top1, strict=True)), logits


def _logp(logits: Tensor, items: Sequence[Item], refs: dict[Item, int]) -> dict[Item, float]:
    if not len(items):
        return {}
    log_probs = torch.log_softmax(logits.double(), dim=1)
    index = torch.tensor([refs[i] for i in items], dtype=torch.long)
    values = log_probs.gather(1, index[:, None])[:, 0].tolist()
    return dict(zip(items, values, strict=True))


def evaluate_case(
    predictor: Predictor,
    case: EditCase,
    edit: EditResult | None = None,
    pre: dict[Item, int] | None = None,
    scale: float = 1.0,
    pre_logp: dict[Item, float] | None = None,
    min_e_pre: int = 1,
) -> CaseEvaluation:
    """Metrics of ``edit`` (applied to ``predictor.model`` only inside) on ``case``.

    ``pre``: the unedited model's predictions on the case's items, if already known (they are
    the same for every method, so a runner computes them once per case). Without an edit, post
    equals pre (errors corrected 0 where there are errors, clean drop 0). ``pre_logp``: the
    unedited log p(reference) of the test counterfactuals (from an earlier evaluation's
    ``pre_logp``), with ``pre``. ``min_e_pre``: a group with fewer errors is unmeasurable.
    """
    items = case_items(case, predictor.data)
    wanted = list(dict.fromkeys(items.test_items()))
    tested = [i for i in wanted if i.kind == "cf"]
    if pre is None or pre_logp is None or any(item not in pre for item in wanted):
        pre, logits = _logits_top1(predictor, wanted)
        refs = references(predictor.data, wanted, pre)
        position = {item: index for index, item in enumerate(wanted)}
        pre_logp = _logp(logits[[position[i] for i in tested]], tested, refs)
    refs = references(predictor.data, wanted, pre)
    if edit is None:
        post, post_logp = dict(pre), dict(pre_logp)
    else:
        with applied(predictor.model, edit, scale):
            post, logits = _logits_top1(predictor, tested + [i for i in wanted if i.kind != "cf"])
        post_logp = _logp(logits[: len(tested)], tested, refs)
    rows = case_metrics(items, refs, pre, post, pre_logp, post_logp, min_e_pre)
    outcomes = item_outcomes(predictor.data, items, refs, pre, post)
    return CaseEvaluation(rows, pre, post, items, pre_logp, outcomes)
