"""An edit evaluated on one case: exemplars from the build, predictions before and after.

:func:`case_exemplars` builds :class:`EditExemplars` from a case's train split;
:func:`evaluate_case` classifies the case's items with and without an edit and scores them with
:func:`pipeline.editing.metrics.case_metrics`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from pipeline.cases import EditCase
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
) -> EditExemplars:
    """The case's train counterfactuals as :class:`EditExemplars`.

    ``transformed``: the counterfactuals; ``original``: their clean images; ``masks``: the
    concept masks in the same geometry (:func:`pipeline.editing.masks.mask_transform`);
    ``labels``: each exemplar's own reference label (the target class, or the image's class
    within a target group).
    """
    items = [cf(cf_id) for cf_id in case.train]
    transformed = preprocess([data.rgb(item) for item in items])
    original = preprocess([data.rgb(data.clean_of(item)) for item in items])
    mask_batch = torch.stack([masks(data.mask(item.id)) for item in items])
    labels = []
    for item in items:
        label = data.reference(item)
        if label is None:
            raise ValueError(f"counterfactual {item.id} has neither a label nor a clean prediction")
        labels.append(label)
    return EditExemplars(transformed, original, mask_batch, torch.tensor(labels, dtype=torch.long))


def references(data: BuildImages, items: Iterable[Item], pre: dict[Item, int]) -> dict[Item, int]:
    """Reference label per item; an unlabelled clean image is judged against ``pre``."""
    out = {}
    for item in items:
        label = data.reference(item)
        out[item] = pre[item] if label is None else label
    return out


@dataclass
class CaseEvaluation:
    """Rows of :func:`~pipeline.editing.metrics.case_metrics` plus the predictions they came
    from."""

    rows: list[dict[str, Any]]
    pre: dict[Item, int]
    post: dict[Item, int]
    items: CaseItems


def evaluate_case(
    predictor: Predictor,
    case: EditCase,
    edit: EditResult | None = None,
    pre: dict[Item, int] | None = None,
    scale: float = 1.0,
) -> CaseEvaluation:
    """Metrics of ``edit`` (applied to ``predictor.model`` only inside) on ``case``.

    ``pre``: the unedited model's predictions on the case's items, if already known (they are
    the same for every method, so a runner computes them once per case). Without an edit, post
    equals pre (errors corrected 0 where there are errors, clean drop 0).
    """
    items = case_items(case, predictor.data)
    wanted = items.test_items()
    if pre is None or any(item not in pre for item in wanted):
        pre = {**(pre or {}), **predictor.predict([i for i in wanted if i not in (pre or {})])}
    if edit is None:
        post = dict(pre)
    else:
        with applied(predictor.model, edit, scale):
            post = predictor.predict(wanted)
    refs = references(predictor.data, wanted, pre)
    return CaseEvaluation(case_metrics(items, refs, pre, post), pre, post, items)
