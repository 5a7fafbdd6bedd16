"""Fine-tuning baselines: train the layer (local) or the layer and everything after (global).

Both minimise the cross-entropy of the transformed exemplars to their labels, optionally plus
an L1 / L2 penalty to the original weights. The model is run with ``functional_call`` on
detached copies of its parameters, so its own parameters, gradients and (eval-mode) buffers
are left untouched; the result is returned as deltas.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pipeline.editing.exemplars import EditExemplars
from pipeline.editing.layers import eval_mode, functional_forward, resolve_layer, weight_param_name


def parameters_from(model: nn.Module, layer_name: str) -> list[str]:
    """Names of the layer's weight and of every parameter registered after it.

    Approximation: registration order (``named_parameters``) stands in for execution order.
    It is right for sequential stacks (ResNet stages, ViT blocks, then the head), but a branch
    registered after the layer yet computed before or beside it (a ResNet block's
    ``downsample`` shortcut) is included, and a module registered earlier but run later
    (rare) is left out.
    """
    resolve_layer(model, layer_name)
    names = [name for name, _ in model.named_parameters()]
    start = names.index(weight_param_name(layer_name))
    return names[start:]


def exemplar_loss(
    model: nn.Module,
    exemplars: EditExemplars,
    replacements: dict[str, Tensor] | None = None,
    include_original: bool = False,
) -> Tensor:
    """Mean cross-entropy of the transformed (and optionally original) images to the labels."""
    images, labels = exemplars.transformed, exemplars.labels
    if include_original:
        images = torch.cat([images, exemplars.original])
        labels = torch.cat([labels, labels])
    logits = functional_forward(model, replacements or {}, images)
    return F.cross_entropy(logits, labels)


def exemplars_fixed(
    model: nn.Module, exemplars: EditExemplars, replacements: dict[str, Tensor]
) -> bool:
    """Whether every transformed exemplar's top-1 is its label under ``replacements``."""
    with torch.no_grad():
        logits = functional_forward(model, replacements, exemplars.transformed)
    return bool((logits.argmax(1) == exemplars.labels).all())


def _penalty(current: dict[str, Tensor], start: dict[str, Tensor], kind: str | None) -> Tensor:
    terms = [current[name] - start[name] for name in current]
    if kind is None:
        return terms[0].new_zeros(())
    if kind == "l2":
        return sum((term.pow(2).sum() for term in terms), terms[0].new_zeros(()))
    if kind == "l1":
        return sum((term.abs().sum() for term in terms), terms[0].new_zeros(()))
    raise ValueError(f"unknown penalty {kind!r}; use None, 'l1' or 'l2'")


def finetune_deltas(
    model: nn.Module,
    names: list[str],
    exemplars: EditExemplars,
    *,
    lr: float,
    steps: int,
    optimizer: str = "adam",
    momentum: float = 0.9,
    penalty: str | None = None,
    penalty_weight: float = 0.0,
    include_original: bool = False,
    early_stop: bool = False,
) -> dict[str, Tensor]:
    """Train the named parameters on the exemplars; return ``trained − original`` per name.

    ``optimizer``: ``adam`` or ``sgd`` (with ``momentum``); ``penalty``: ``l1`` / ``l2`` distance
    to the original weights, times ``penalty_weight``; ``include_original``: also fit the clean
    exemplars to their labels; ``early_stop``: stop as soon as every transformed exemplar is
    classified as its label (the least change that fixes them, at this learning rate).

    Only ``torch.autograd.grad`` is used (no ``backward``), so ``.grad`` of the model's own
    parameters is never written. The model runs in eval mode (BatchNorm statistics frozen).
    """
    params = dict(model.named_parameters())
    start = {name: params[name].detach().clone() for name in names}
    trainable = {name: tensor.clone().requires_grad_(True) for name, tensor in start.items()}
    frozen = {name: p.detach() for name, p in params.items() if name not in trainable}
    if optimizer == "adam":
        step: torch.optim.Optimizer = torch.optim.Adam(trainable.values(), lr=lr)
    elif optimizer == "sgd":
        step = torch.optim.SGD(trainable.values(), lr=lr, momentum=momentum)
    else:
        raise ValueError(f"unknown optimizer {optimizer!r}; use 'adam' or 'sgd'")
    with eval_mode(model), torch.enable_grad():
        for _ in range(steps):
            if early_stop and exemplars_fixed(model, exemplars, {**frozen, **trainable}):
                break
            loss = exemplar_loss(model, exemplars, {**frozen, **trainable}, include_original)
            if penalty_weight:
                loss = loss + penalty_weight * _penalty(trainable, start, penalty)
            grads = torch.autograd.grad(loss, list(trainable.values()))
            for tensor, grad in zip(trainable.values(), grads, strict=True):
                tensor.grad = grad
            step.step()
    return {name: (trainable[name].detach() - start[name]) for name in names}
