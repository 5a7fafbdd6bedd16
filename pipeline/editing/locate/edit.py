"""Locate, then fine-tune: one edit from a case's exemplars.

1. On the unedited model: the exemplars' cross-entropy gradient w.r.t. the layout's parameters
   and the pooled input of the first edited module, on the transformed and the original images
   (:func:`exemplar_inputs`);
2. a mask over the groups at ``sparsity``: the locator's top groups, or a control — the
   gradient score's top groups, or groups drawn at random (:func:`choose_mask`);
3. ``steps`` SGD steps on the exemplars with the gradient masked
   (:func:`~pipeline.editing.locate.inner.masked_sgd`); the deltas are zero outside the mask.

The model runs through ``functional_call`` (its parameters are never written), in eval mode.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from pipeline.editing.exemplars import EditExemplars
from pipeline.editing.layers import capture, eval_mode, functional_forward, layer_io
from pipeline.editing.locate.groups import GroupLayout, layout_params
from pipeline.editing.locate.inner import cross_entropy_loss, masked_sgd
from pipeline.editing.locate.locator import (
    Locator,
    LocatorInputs,
    exemplar_gradients,
    gradient_scores,
    pool_positions,
    pooled_features,
)
from pipeline.editing.locate.masks import random_mask, top_mask

MASK_KINDS = ("locator", "gradient", "random")


def exemplar_inputs(
    model: nn.Module, layout: GroupLayout, exemplars: EditExemplars
) -> tuple[LocatorInputs, dict[str, Tensor]]:
    """The locator's inputs for ``exemplars`` and the gradients they came from."""
    params = layout_params(model, layout)
    with eval_mode(model), capture(model, layout.first_module) as seen:
        grads = exemplar_gradients(
            lambda p: functional_forward(model, dict(p), exemplars.transformed),
            params,
            exemplars.labels,
        )
    transformed = pool_positions(seen.input)
    with eval_mode(model):
        original_input, _ = layer_io(model, layout.first_module, exemplars.original)
    pooled = pooled_features(transformed, pool_positions(original_input))
    return LocatorInputs(pooled, gradient_scores(layout, grads)), grads


def choose_mask(
    kind: str,
    layout: GroupLayout,
    inputs: LocatorInputs,
    sparsity: float,
    locator: Locator | None = None,
    seed: int = 0,
) -> Tensor:
    """``(G,)`` bool mask at ``sparsity``: ``locator`` (its top logits), ``gradient`` (the top
    gradient scores: the locator before training) or ``random`` (seeded)."""
    if kind == "locator":
        if locator is None:
            raise ValueError("mask 'locator' needs a trained locator")
        with torch.no_grad():
            return top_mask(locator(inputs), sparsity)
    if kind == "gradient":
        return top_mask(inputs.grad_score, sparsity)
    if kind == "random":
        return random_mask(layout.size, sparsity, seed)
    raise ValueError(f"unknown mask {kind!r}; use one of {MASK_KINDS}")


@dataclass(frozen=True)
class LocatedEdit:
    """The deltas of the parameters with an active group, and the mask that chose them."""

    deltas: dict[str, Tensor]
    mask: Tensor


def masked_finetune(
    model: nn.Module,
    layout: GroupLayout,
    exemplars: EditExemplars,
    mask: Tensor,
    *,
    lr: float,
    steps: int,
) -> dict[str, Tensor]:
    """Deltas of ``steps`` masked SGD steps on the exemplars' cross-entropy, for the layout's
    parameters that hold at least one active group."""
    start = layout_params(model, layout)
    masks = layout.expand(mask.to(torch.float32), start)
    active = {name: m.to(start[name]) for name, m in masks.items() if bool(m.any())}
    trained_start = {name: start[name] for name in active}

    def forward(params: Mapping[str, Tensor]) -> Tensor:
        return functional_forward(model, dict(params), exemplars.transformed)

    with eval_mode(model):
        trained = masked_sgd(
            cross_entropy_loss(forward, exemplars.labels),
            trained_start,
            active,
            lr=lr,
            steps=steps,
        )
    return {name: trained[name] - trained_start[name] for name in active}


def locate_and_edit(
    model: nn.Module,
    layout: GroupLayout,
    exemplars: EditExemplars,
    *,
    kind: str,
    sparsity: float,
    lr: float,
    steps: int,
    locator: Locator | None = None,
    seed: int = 0,
) -> LocatedEdit:
    """One where-to-edit edit.

    Args:
        model: the classifier (or a ``SplitModel`` of it), unchanged on return.
        layout: the parameter groups the mask covers.
        exemplars: the case's exemplars, on the model's device.
        kind: ``locator``, ``gradient`` or ``random`` (see :func:`choose_mask`).
        sparsity: share of groups left untouched.
        lr: SGD step size.
        steps: SGD steps.
        locator: the trained locator (``kind="locator"``).
        seed: seed of the random mask.
    """
    layout.check(model)
    inputs, _ = exemplar_inputs(model, layout, exemplars)
    mask = choose_mask(kind, layout, inputs, sparsity, locator, seed)
    deltas = masked_finetune(model, layout, exemplars, mask, lr=lr, steps=steps)
    return LocatedEdit(deltas, mask)
