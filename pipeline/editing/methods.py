"""One entry point for every editing method: ``edit(model, layer_name, exemplars, config)``.

Methods (registry :data:`EDIT_METHODS`, by name):

* ``rewrite-closed`` — closed-form rank-one rewrite ``ΔW = Λ dᵀ``, ``d ∝ C⁻¹ k*``
  (``rank > 1``: ``ΔW = Λ Dᵀ`` with SVD directions, ``Λ`` still by least squares);
* ``rewrite-multikey`` — ``ΔW = R Kᵀ (λC + K Kᵀ)⁻¹``, every masked key → its value at once;
* ``rewrite`` — Santurkar et al.: ``ΔW = Λ Dᵀ`` with ``D`` fixed, ``Λ`` by Adam on the
  mask-weighted L1/L2 loss of the layer's (optionally post-processed) outputs;
* ``finetune-local`` / ``finetune-global`` — cross-entropy fine-tuning of the layer's weight /
  of the layer and every parameter registered after it.

All methods leave the model as they found it and return an
:class:`~pipeline.editing.delta.EditResult`; use :func:`~pipeline.editing.delta.apply` to edit.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import torch
from torch import Tensor, nn

from pipeline.editing.covariance import Covariance, CovarianceFactor, safe_inverse
from pipeline.editing.delta import EditResult
from pipeline.editing.exemplars import EditExemplars, collect_edit_data
from pipeline.editing.finetune import FinetuneSettings, finetune_deltas, parameters_from
from pipeline.editing.layers import (
    PostFn,
    eval_mode,
    matrix_to_weight,
    model_device,
    resolve_layer,
    weight_matrix,
    weight_param_name,
)
from pipeline.editing.rewrite import (
    fit_lambda_matrix,
    low_rank_directions,
    multikey_update,
    optimise_update,
    rank_one_closed_form,
    rank_one_direction,
    residuals,
    summarize_keys,
)
from pipeline.registry import Registry

# Defaults by method when ``EditConfig.lr`` / ``steps`` are None. ``rewrite`` optimises Λ in
# units of the layer's values (directions are scaled so dᵀk* = 1), hence the larger rate.
DEFAULT_LR = {"rewrite": 5e-2, "finetune-local": 1e-4, "finetune-global": 1e-4}
DEFAULT_STEPS = {"rewrite": 400, "finetune-local": 200, "finetune-global": 200}


@dataclass
class EditConfig:
    """Settings of every method (each reads the fields it needs).

    ``covariance``: ``C = E[k kᵀ]`` of the layer's keys ``(D, D)`` (see
    :mod:`pipeline.editing.covariance`), or its :class:`CovarianceFactor` to reuse one
    eigendecomposition across edits; ``None`` means ``C = I``, i.e. the plain update along
    the key itself. ``cov_floor`` / ``cov_ridge``: relative regularisation of ``C⁻¹``.
    ``post``: a callable, or module names of ``model`` applied in order, mapping the layer's
    outputs to where values are compared (``rewrite`` only).
    """

    method: str = "rewrite"
    covariance: Covariance | None = None
    cov_floor: float = 1e-6
    cov_ridge: float = 0.0
    key_summary: str = "mean"
    rank: int = 1
    multikey_lambda: float = 1e-2
    loss: str = "l2"
    lr: float | None = None
    steps: int | None = None
    schedule: str = "cosine"
    parametrization: str = "low-rank"
    project_every: int = 1
    post: PostFn | Sequence[str] | None = None
    optimizer: str = "adam"
    momentum: float = 0.9
    penalty: str | None = None
    penalty_weight: float = 0.0
    include_original: bool = False
    model_id: str | None = None
    case_id: str | None = None
    extra: dict[str, str] = field(default_factory=dict)

    def resolved_lr(self) -> float:
        return self.lr if self.lr is not None else DEFAULT_LR.get(self.method, 1e-3)

    def resolved_steps(self) -> int:
        return self.steps if self.steps is not None else DEFAULT_STEPS.get(self.method, 100)

    def describe(self) -> dict[str, Any]:
        """JSON-safe view for metadata: tensors by shape, callables by name, defaults resolved."""
        skip = {"covariance", "post", "extra"}
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in skip}
        out["extra"] = dict(self.extra)
        cov = self.covariance
        if cov is None:
            out["covariance"] = "identity"
        elif isinstance(cov, CovarianceFactor):
            out["covariance"] = f"factor[{cov.dim}]"
        else:
            out["covariance"] = f"tensor{list(cov.shape)}"
        post = self.post
        if post is None or isinstance(post, str):
            out["post"] = post
        elif callable(post):
            out["post"] = getattr(post, "__qualname__", type(post).__name__)
        else:
            out["post"] = list(post)
        out["lr"], out["steps"] = self.resolved_lr(), self.resolved_steps()
        return out


EditMethod = Callable[..., dict[str, Tensor]]
EDIT_METHODS: Registry[dict[str, Tensor]] = Registry("edit method")


def available_methods() -> list[str]:
    return EDIT_METHODS.names()


def _c_inv(config: EditConfig, like: Tensor) -> Tensor | None:
    if config.covariance is None:
        return None
    return safe_inverse(config.covariance, config.cov_floor, config.cov_ridge).to(like)


def _resolve_post(model: nn.Module, post: PostFn | Sequence[str] | None) -> PostFn | None:
    if post is None or callable(post):
        return post  # type: ignore[return-value]
    names = [post] if isinstance(post, str) else list(post)
    return nn.Sequential(*[model.get_submodule(name) for name in names])


def _directions(keys: Tensor, weights: Tensor, config: EditConfig) -> Tensor:
    """``D`` ``(D, rank)``: ``d ∝ C⁻¹ k*`` for rank 1, else SVD of the whitened keys."""
    c_inv = _c_inv(config, keys.double())
    if config.rank == 1:
        k_star = summarize_keys(keys, weights, config.key_summary)
        return rank_one_direction(k_star, c_inv)[:, None]
    return low_rank_directions(keys, weights, c_inv, config.rank)


@EDIT_METHODS.register("rewrite-closed")
def _rewrite_closed(
    *, model: nn.Module, layer_name: str, exemplars: EditExemplars, config: EditConfig
) -> dict[str, Tensor]:
    layer = resolve_layer(model, layer_name)
    keys, values, weights = collect_edit_data(model, layer_name, exemplars).masked()
    weight = weight_matrix(layer).detach().double()
    bias = None if layer.bias is None else layer.bias.detach().double()
    if config.rank == 1:
        update = rank_one_closed_form(
            weight, keys, values, weights, bias, _c_inv(config, keys.double()), config.key_summary
        )
        delta = update.delta
    else:
        directions = _directions(keys, weights, config)
        res = residuals(weight, keys.double(), values.double(), bias)
        delta = fit_lambda_matrix(res, keys.double() @ directions, weights) @ directions.T
    return {weight_param_name(layer_name): matrix_to_weight(layer, delta.to(layer.weight))}


@EDIT_METHODS.register("rewrite-multikey")
def _rewrite_multikey(
    *, model: nn.Module, layer_name: str, exemplars: EditExemplars, config: EditConfig
) -> dict[str, Tensor]:
    layer = resolve_layer(model, layer_name)
    keys, values, weights = collect_edit_data(model, layer_name, exemplars).masked()
    delta = multikey_update(
        weight_matrix(layer).detach(),
        keys,
        values,
        weights,
        None if layer.bias is None else layer.bias.detach(),
        config.covariance,
        lam=config.multikey_lambda,
        cov_floor=config.cov_floor,
        cov_ridge=config.cov_ridge,
    )
    return {weight_param_name(layer_name): matrix_to_weight(layer, delta.to(layer.weight))}


@EDIT_METHODS.register("rewrite")
def _rewrite_gradient(
    *, model: nn.Module, layer_name: str, exemplars: EditExemplars, config: EditConfig
) -> dict[str, Tensor]:
    layer = resolve_layer(model, layer_name)
    data = collect_edit_data(model, layer_name, exemplars)
    keys, _, weights = data.masked()
    directions = _directions(keys, weights, config)
    with eval_mode(model):
        delta = optimise_update(
            layer,
            weight_matrix(layer),
            data.inputs,
            data.target,
            data.weights,
            directions,
            post=_resolve_post(model, config.post),
            loss=config.loss,
            lr=config.resolved_lr(),
            steps=config.resolved_steps(),
            schedule=config.schedule,
            parametrization=config.parametrization,
            project_every=config.project_every,
        )
    return {weight_param_name(layer_name): matrix_to_weight(layer, delta.to(layer.weight))}


def _finetune_settings(config: EditConfig) -> FinetuneSettings:
    return FinetuneSettings(
        lr=config.resolved_lr(),
        steps=config.resolved_steps(),
        optimizer=config.optimizer,
        momentum=config.momentum,
        penalty=config.penalty,
        penalty_weight=config.penalty_weight,
        include_original=config.include_original,
    )


@EDIT_METHODS.register("finetune-local")
def _finetune_local(
    *, model: nn.Module, layer_name: str, exemplars: EditExemplars, config: EditConfig
) -> dict[str, Tensor]:
    resolve_layer(model, layer_name)
    names = [weight_param_name(layer_name)]
    return finetune_deltas(model, names, exemplars, _finetune_settings(config))


@EDIT_METHODS.register("finetune-global")
def _finetune_global(
    *, model: nn.Module, layer_name: str, exemplars: EditExemplars, config: EditConfig
) -> dict[str, Tensor]:
    names = parameters_from(model, layer_name)
    return finetune_deltas(model, names, exemplars, _finetune_settings(config))


def edit(
    model: nn.Module,
    layer_name: str,
    exemplars: EditExemplars,
    config: EditConfig | None = None,
) -> EditResult:
    """Compute an edit of ``model`` at ``layer_name`` from ``exemplars``; the model is unchanged.

    Exemplars are moved to the model's device and the layer's dtype. The closed forms are
    computed in float64; the gradient methods run in the layer's dtype (edit float32 models).

    Returns deltas (parameter name → ΔW in the parameter's shape and dtype) and metadata:
    model, layer, method, config (JSON), case id, number of exemplars, edited parameters.
    """
    config = config or EditConfig()
    layer = resolve_layer(model, layer_name)
    exemplars = exemplars.to(model_device(model), layer.weight.dtype)
    deltas = EDIT_METHODS.create(
        config.method, model=model, layer_name=layer_name, exemplars=exemplars, config=config
    )
    deltas = {name: delta.detach() for name, delta in deltas.items()}
    metadata = {
        "model": config.model_id or type(model).__name__,
        "layer": layer_name,
        "method": config.method,
        "config": json.dumps(config.describe(), sort_keys=True, default=str),
        "case_id": config.case_id or "",
        "n_exemplars": str(len(exemplars)),
        "params": json.dumps(sorted(deltas)),
        "torch": torch.__version__,
        **config.extra,
    }
    return EditResult(deltas=deltas, metadata=metadata)
