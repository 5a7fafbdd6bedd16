"""The inner loop: a few SGD steps on the masked parameter groups, differentiable if asked.

``θ_{t+1} = θ_t − lr · m ⊙ ∇θ L(θ_t)`` for ``steps`` steps, on the layout's parameters only
(every other parameter is the model's own). With ``differentiable=True`` the steps are
``torch.func.grad`` transforms composed with the outer autograd graph, so the outer loss can be
differentiated w.r.t. the mask ``m`` (and everything ``m`` came from) through the update,
second-order terms included; otherwise each step is a plain ``torch.autograd.grad`` on detached
leaves, as the fine-tuning baselines do.

:class:`TailRunner` runs the part of a :class:`~pipeline.editing.split.SplitModel` after the cut
from cached frontier values, as an ``nn.Module`` that ``functional_call`` can replace
parameters of.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pipeline.editing.split import Frontier, SplitModel

Loss = Callable[[Mapping[str, Tensor]], Tensor]


class TailRunner(nn.Module):
    """The network after a split's cut: ``tail(frontier) == split.run_suffix(frontier)``.

    It registers the split's children under their own names (the very same modules), so a
    parameter name of the model names the same tensor here and
    ``torch.func.functional_call(tail, replacements, (frontier,))`` runs the suffix with them.
    """

    def __init__(self, split: SplitModel) -> None:
        super().__init__()
        for name, child in split.named_children():
            self.add_module(name, child)
        for name, param in split.named_parameters(recurse=False):
            self.register_parameter(name, param)
        object.__setattr__(self, "_split", split)

    def forward(self, frontier: Frontier) -> Any:
        return self._split.run_suffix(frontier)


def masked_sgd(
    loss: Loss,
    params: Mapping[str, Tensor],
    masks: Mapping[str, Tensor],
    *,
    lr: float,
    steps: int,
    differentiable: bool = False,
) -> dict[str, Tensor]:
    """``steps`` SGD steps of ``loss`` on ``params``, each gradient multiplied by its mask.

    Args:
        loss: parameters by name → scalar loss (e.g. the exemplars' cross-entropy).
        params: the starting values (detached unless the caller differentiates through them).
        masks: per parameter, a mask broadcastable to it (``GroupLayout.expand``); a parameter
            without one is not trained.
        lr: the step size.
        steps: how many steps.
        differentiable: keep the graph through the steps (meta-training); otherwise the result
            is detached.

    Returns the parameters after the steps, by name (untrained ones as given).
    """
    current = dict(params)
    for _ in range(int(steps)):
        if differentiable:
            grads = torch.func.grad(loss)(current)
        else:
            leaves = {name: value.detach().requires_grad_(True) for name, value in current.items()}
            with torch.enable_grad():
                values = torch.autograd.grad(loss(leaves), list(leaves.values()))
            grads = dict(zip(leaves, values, strict=True))
            current = {name: value.detach() for name, value in current.items()}
        current = {
            name: value - lr * masks[name] * grads[name] if name in masks else value
            for name, value in current.items()
        }
    return current


def cross_entropy_loss(forward: Callable[[Mapping[str, Tensor]], Tensor], labels: Tensor) -> Loss:
    """``params ↦ CE(forward(params), labels)``."""
    return lambda params: F.cross_entropy(forward(params), labels)


def kl_to_reference(logits: Tensor, reference_log_probs: Tensor) -> Tensor:
    """Mean ``KL(p_ref ‖ p)`` over the batch: the locality term (0 for the unedited model)."""
    dtype = torch.promote_types(logits.dtype, torch.float32)
    log_probs = F.log_softmax(logits.to(dtype), dim=1)
    reference = reference_log_probs.to(dtype)
    return (reference.exp() * (reference - log_probs)).sum(dim=1).mean()
