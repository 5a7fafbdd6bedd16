"""Editing methods: one class per method, each a frozen dataclass of its own settings.

Every method has a registry ``name`` (used in configs and the CLI), a selection ``grid`` of
:class:`Candidate` settings, and one verb::

    result = Rewrite(lr=0.05).edit(model, "blocks.6.0.conv_pwl", EditInputs(exemplars, cov))

========================  ==================================================================
``rewrite``               :class:`Rewrite` — Santurkar et al.: ``ΔW = Λ Dᵀ`` with ``D`` fixed,
                          fitted by Adam on the mask-weighted loss of the layer's outputs
``rewrite-closed``        :class:`RewriteClosed` — closed-form ``ΔW = Λ dᵀ``, ``d ∝ C⁻¹ k*``
                          (``rank > 1``: SVD directions, ``Λ`` still by least squares)
``rewrite-multikey``      :class:`RewriteMultiKey` — ``ΔW = R Kᵀ (λC + K Kᵀ)⁻¹``, every masked
                          key → its value at once
``finetune-local``        :class:`FinetuneLocal` — cross-entropy fine-tuning of the layer
``finetune-global``       :class:`FinetuneGlobal` — of the layer and every parameter after it
``where-to-edit``         :class:`WhereToEdit` — SGD on the parameter groups a trained locator
                          picks; ``where-to-edit-random`` / ``-gradient``: its control masks
========================  ==================================================================

The math lives in :mod:`~pipeline.editing.rewrite`, :mod:`~pipeline.editing.finetune` and
:mod:`~pipeline.editing.covariance`; a class only maps its settings onto those functions. Every
method leaves the model as it found it and returns an :class:`EditResult` (apply it with
:func:`~pipeline.editing.delta.apply`).
"""

from __future__ import annotations

import contextvars
import dataclasses
import json
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

import torch
from torch import Tensor, nn

from pipeline.editing.covariance import Covariance, CovarianceFactor, safe_inverse
from pipeline.editing.delta import EditResult
from pipeline.editing.exemplars import EditExemplars, collect_edit_data
from pipeline.editing.finetune import finetune_deltas, parameters_from
from pipeline.editing.layers import (
    PostFn,
    eval_mode,
    matrix_to_weight,
    model_device,
    norm_after,
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

# ``Rewrite.post`` default: compare values after the norm layer that follows the edited layer
NORM_AFTER = "norm-after"


@dataclass(frozen=True)
class Candidate:
    """One grid point: settings overriding the method's defaults, and a scale applied to the
    resulting delta (``EditResult.scaled``; one solve serves several scales)."""

    params: Mapping[str, Any] = field(default_factory=dict)
    scale: float = 1.0

    @property
    def label(self) -> str:
        parts = [f"{key}={value}" for key, value in sorted(self.params.items())]
        if self.scale != 1.0:
            parts.append(f"scale={self.scale}")
        return ",".join(parts) or "default"

    def to_dict(self) -> dict[str, Any]:
        return {**dict(self.params), "scale": self.scale}


@dataclass(frozen=True)
class EditInputs:
    """What one edit is computed from besides the model and the layer.

    ``exemplars``: the case's train exemplars; ``covariance``: ``C = E[k kᵀ]`` of the layer's
    keys ``(D, D)`` or its :class:`CovarianceFactor` (``None``: ``C = I``, the plain update along
    the key itself; only the rewrite methods read it); ``case_id`` / ``model_id``: recorded in
    the result's metadata.
    """

    exemplars: EditExemplars
    covariance: Covariance | None = None
    case_id: str = ""
    model_id: str = ""


def _json_safe(value: Any) -> Any:
    """Settings as JSON: sequences as lists, callables by name."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if callable(value):
        return getattr(value, "__qualname__", type(value).__name__)
    if isinstance(value, Sequence):
        return [_json_safe(item) for item in value]
    return str(value)


def _describe_covariance(covariance: Covariance | None) -> str:
    if covariance is None:
        return "identity"
    if isinstance(covariance, CovarianceFactor):
        return f"factor[{covariance.dim}]"
    return f"tensor{list(covariance.shape)}"


class EditingMethod(ABC):
    """Base of the editing methods; subclasses are frozen dataclasses of their settings.

    Subclasses set ``name`` and ``grid`` and implement :meth:`deltas`; :meth:`edit` is the
    shared entry point (device and dtype of the exemplars, detached deltas, metadata).
    """

    name: ClassVar[str]
    grid: ClassVar[tuple[Candidate, ...]]

    @abstractmethod
    def deltas(self, model: nn.Module, layer: str, case: EditInputs) -> dict[str, Tensor]:
        """Parameter name → ΔW in the parameter's shape; ``case`` is on the model's device."""

    def resolved(self, model: nn.Module, layer: str) -> EditingMethod:
        """The method with settings that depend on the model (e.g. "the norm layer after the
        edited one") made explicit; what :meth:`edit` runs and records."""
        return self

    def edit(self, model: nn.Module, layer: str, case: EditInputs) -> EditResult:
        """Compute an edit of ``model`` at ``layer`` from ``case``; the model is unchanged.

        Exemplars are moved to the model's device and the layer's dtype. The closed forms are
        computed in float64; the gradient methods run in the layer's dtype (edit float32
        models). The metadata holds model, layer, method, settings (JSON, with the covariance
        by shape), case id, number of exemplars and the edited parameters.
        """
        module = resolve_layer(model, layer)
        exemplars = case.exemplars.to(model_device(model), module.weight.dtype)
        method = self.resolved(model, layer)
        deltas = method.deltas(model, layer, dataclasses.replace(case, exemplars=exemplars))
        deltas = {name: delta.detach() for name, delta in deltas.items()}
        config = {
            "method": self.name,
            **method.settings(),
            "covariance": _describe_covariance(case.covariance),
        }
        metadata = {
            "model": case.model_id or type(model).__name__,
            "layer": layer,
            "method": self.name,
            "config": json.dumps(config, sort_keys=True, default=str),
            "case_id": case.case_id,
            "n_exemplars": str(len(exemplars)),
            "params": json.dumps(sorted(deltas)),
            "torch": torch.__version__,
        }
        return EditResult(deltas=deltas, metadata=metadata)

    def settings(self) -> dict[str, Any]:
        """The method's settings as JSON-safe values (part of the results' run key)."""
        return {f.name: _json_safe(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def with_params(self, params: Mapping[str, Any]) -> EditingMethod:
        """The same method with some settings replaced (a grid candidate's ``params``)."""
        return dataclasses.replace(self, **dict(params))


EDIT_METHODS: Registry[EditingMethod] = Registry("edit method")
M = TypeVar("M", bound=type[EditingMethod])


def register(cls: M) -> M:
    """Class decorator: register a method class under its ``name``."""
    EDIT_METHODS.register(cls.name)(cls)
    return cls


def available_methods() -> list[str]:
    return EDIT_METHODS.names()


def create_method(name: str, **settings: Any) -> EditingMethod:
    """The method registered as ``name`` with ``settings`` overriding its defaults."""
    return EDIT_METHODS.create(name, **settings)


# -- the rewrite methods -----------------------------------------------------------------------
@dataclass(frozen=True)
class _Whitened(EditingMethod):
    """Settings shared by the methods that read ``C``: ``cov_floor`` / ``cov_ridge`` are the
    relative regularisation of ``C⁻¹`` (see :func:`~pipeline.editing.covariance.safe_inverse`)."""

    cov_floor: float = 1e-6
    cov_ridge: float = 0.0

    def c_inv(self, case: EditInputs, like: Tensor) -> Tensor | None:
        if case.covariance is None:
            return None
        return safe_inverse(case.covariance, self.cov_floor, self.cov_ridge).to(like)


@dataclass(frozen=True)
class _Directional(_Whitened):
    """``ΔW = Λ Dᵀ`` along ``rank`` directions: ``d ∝ C⁻¹ k*`` for rank 1 (``k*`` the
    ``key_summary`` of the masked keys, ``mean`` or ``svd``), else SVD of the whitened keys."""

    key_summary: str = "mean"
    rank: int = 1

    def directions(self, keys: Tensor, weights: Tensor, case: EditInputs) -> Tensor:
        """``D`` ``(D, rank)``."""
        c_inv = self.c_inv(case, keys.double())
        if self.rank == 1:
            k_star = summarize_keys(keys, weights, self.key_summary)
            return rank_one_direction(k_star, c_inv)[:, None]
        return low_rank_directions(keys, weights, c_inv, self.rank)


@register
@dataclass(frozen=True)
class RewriteClosed(_Directional):
    """The rewrite constraint solved in closed form (least squares for ``Λ``, L2 loss).

    Grid: rank 1 at scales 0.05 to 2 of one solution, from almost no change to past the
    closed form.
    """

    name: ClassVar[str] = "rewrite-closed"
    grid: ClassVar[tuple[Candidate, ...]] = tuple(
        Candidate({"rank": 1}, scale) for scale in (0.05, 0.1, 0.25, 0.5, 1.0, 1.5, 2.0)
    )

    def deltas(self, model: nn.Module, layer: str, case: EditInputs) -> dict[str, Tensor]:
        module = resolve_layer(model, layer)
        keys, values, weights = collect_edit_data(model, layer, case.exemplars).masked()
        weight = weight_matrix(module).detach().double()
        bias = None if module.bias is None else module.bias.detach().double()
        if self.rank == 1:
            c_inv = self.c_inv(case, keys.double())
            update = rank_one_closed_form(
                weight, keys, values, weights, bias, c_inv, self.key_summary
            )
            delta = update.delta
        else:
            directions = self.directions(keys, weights, case)
            res = residuals(weight, keys.double(), values.double(), bias)
            delta = fit_lambda_matrix(res, keys.double() @ directions, weights) @ directions.T
        return {weight_param_name(layer): matrix_to_weight(module, delta.to(module.weight))}


@register
@dataclass(frozen=True)
class RewriteMultiKey(_Whitened):
    """Every masked key mapped to its value at once; ``multikey_lambda`` weighs the ``C``
    prior in units of one key.

    Grid: ``multikey_lambda`` from 1 (every key interpolated) to 1e5 (almost no change).
    """

    name: ClassVar[str] = "rewrite-multikey"
    grid: ClassVar[tuple[Candidate, ...]] = tuple(
        Candidate({"multikey_lambda": lam}) for lam in (1.0, 10.0, 100.0, 1e3, 1e4, 1e5)
    )
    multikey_lambda: float = 1e-2

    def deltas(self, model: nn.Module, layer: str, case: EditInputs) -> dict[str, Tensor]:
        module = resolve_layer(model, layer)
        keys, values, weights = collect_edit_data(model, layer, case.exemplars).masked()
        delta = multikey_update(
            weight_matrix(module).detach(),
            keys,
            values,
            weights,
            None if module.bias is None else module.bias.detach(),
            case.covariance,
            lam=self.multikey_lambda,
            cov_floor=self.cov_floor,
            cov_ridge=self.cov_ridge,
        )
        return {weight_param_name(layer): matrix_to_weight(module, delta.to(module.weight))}


@register
@dataclass(frozen=True)
class Rewrite(_Directional):
    """The paper's rewrite: a full ``ΔW`` by Adam, projected onto the span of ``D`` every
    ``project_every`` steps (``parametrization="low-rank"``: ``Λ`` only), on the mask-weighted
    ``loss`` (``l1`` / ``l2``) between the edited layer's outputs and the original values.

    ``post``: where values are compared — a callable, module names of the model applied in
    order, ``None`` (the layer's raw outputs), or :data:`NORM_AFTER` (the norm layer right
    after the edited one, if any). ``lr`` is in units of the layer's values (directions are
    scaled so that ``dᵀk* = 1``), hence larger than a fine-tuning rate.

    Optimised to convergence as in the paper: up to ``steps`` = 2000 steps with the projection
    every 10, stopped on a loss plateau (``patience`` steps without a relative improvement of
    ``min_improvement``); the edit's strength is then chosen by an explicit scale.

    Grid: one converged solution at scales 0.05 to 3 (``EditResult.scaled``), from almost no
    change to past the solution.
    """

    name: ClassVar[str] = "rewrite"
    grid: ClassVar[tuple[Candidate, ...]] = tuple(
        Candidate({}, scale) for scale in (0.05, 0.1, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0)
    )
    lr: float = 5e-2
    steps: int = 2000
    loss: str = "l1"
    schedule: str = "cosine"
    parametrization: str = "full"
    project_every: int = 10
    patience: int = 200
    min_improvement: float = 1e-3
    post: PostFn | Sequence[str] | None = NORM_AFTER

    def resolved(self, model: nn.Module, layer: str) -> Rewrite:
        if isinstance(self.post, str) and self.post == NORM_AFTER:
            return dataclasses.replace(self, post=norm_after(model, layer) or None)
        return self

    def post_fn(self, model: nn.Module) -> PostFn | None:
        """``post`` as a callable (module names looked up in ``model``); resolve first."""
        post = self.post
        if post is None or callable(post):
            return post  # type: ignore[return-value]
        names = [post] if isinstance(post, str) else list(post)
        return nn.Sequential(*[model.get_submodule(name) for name in names])

    def deltas(self, model: nn.Module, layer: str, case: EditInputs) -> dict[str, Tensor]:
        module = resolve_layer(model, layer)
        data = collect_edit_data(model, layer, case.exemplars)
        keys, _, weights = data.masked()
        directions = self.directions(keys, weights, case)
        with eval_mode(model):
            delta = optimise_update(
                module,
                weight_matrix(module),
                data.inputs,
                data.target,
                data.weights,
                directions,
                post=self.post_fn(model),
                loss=self.loss,
                lr=self.lr,
                steps=self.steps,
                schedule=self.schedule,
                parametrization=self.parametrization,
                project_every=self.project_every,
                patience=self.patience,
                min_improvement=self.min_improvement,
            )
        return {weight_param_name(layer): matrix_to_weight(module, delta.to(module.weight))}


# -- the fine-tuning baselines -----------------------------------------------------------------
# From no change to strong change: SGD at lr 1e-6 to 1e-3 for 5, 50 or 200 steps (the paper's
# setting, lr 1e-4 x 200, already changes tens of pp of clean top-1 on EfficientNet-Lite0, so
# the weak end must reach far below it), and the L1 / L2 penalties to the original weights
_FINETUNE_GRID = (
    *(
        Candidate({"lr": lr, "steps": steps})
        for lr in (1e-6, 1e-5, 1e-4, 1e-3)
        for steps in (5, 50, 200)
    ),
    Candidate({"lr": 1e-3, "steps": 200, "penalty": "l2", "penalty_weight": 1e-2}),
    Candidate({"lr": 1e-3, "steps": 200, "penalty": "l1", "penalty_weight": 1e-4}),
    # stopped as soon as the exemplars are fixed: the least change of that learning rate
    *(Candidate({"lr": lr, "steps": 200, "early_stop": True}) for lr in (1e-4, 1e-3)),
)


@dataclass(frozen=True)
class _Finetune(EditingMethod):
    """Cross-entropy of the transformed exemplars to their labels, by Adam or SGD, optionally
    with an ``l1`` / ``l2`` ``penalty`` to the original weights and the clean exemplars
    (``include_original``); BatchNorm statistics stay frozen.

    Defaults: SGD with momentum 0.9, as the paper's baselines. Grid: ``lr`` 1e-6 to 1e-3 for 5,
    50 or 200 steps, 1e-3 x 200 with an L2 penalty (weight 1e-2) or an L1 penalty (1e-4), and
    1e-4 and 1e-3 stopped as soon as every exemplar is fixed (``early_stop``).
    """

    grid: ClassVar[tuple[Candidate, ...]] = _FINETUNE_GRID
    lr: float = 1e-4
    steps: int = 200
    optimizer: str = "sgd"
    momentum: float = 0.9
    penalty: str | None = None
    penalty_weight: float = 0.0
    include_original: bool = False
    early_stop: bool = False

    @abstractmethod
    def trained(self, model: nn.Module, layer: str) -> list[str]:
        """Names of the parameters to train."""

    def deltas(self, model: nn.Module, layer: str, case: EditInputs) -> dict[str, Tensor]:
        return finetune_deltas(
            model,
            self.trained(model, layer),
            case.exemplars,
            lr=self.lr,
            steps=self.steps,
            optimizer=self.optimizer,
            momentum=self.momentum,
            penalty=self.penalty,
            penalty_weight=self.penalty_weight,
            include_original=self.include_original,
            early_stop=self.early_stop,
        )


@register
@dataclass(frozen=True)
class FinetuneLocal(_Finetune):
    """Fine-tune the layer's weight only."""

    name: ClassVar[str] = "finetune-local"

    def trained(self, model: nn.Module, layer: str) -> list[str]:
        return [weight_param_name(layer)]


@register
@dataclass(frozen=True)
class FinetuneGlobal(_Finetune):
    """Fine-tune the layer and every parameter registered after it."""

    name: ClassVar[str] = "finetune-global"

    def trained(self, model: nn.Module, layer: str) -> list[str]:
        return parameters_from(model, layer)


# -- fine-tuning the locator's parameter groups densely, with a penalty (Yang et al.'s FT-L1/L2) --
# every group where-to-edit chooses among, none masked: from a negligible step (on CamVid's road
# cases 5 steps at lr 1e-5 already changed 2.5 pp of the clean frames, so the grid starts at
# 1e-7) to 50 steps at lr 1e-2, the strongest where-to-edit grid point's learning rate
_PENALISED_GRID = tuple(
    Candidate({"lr": lr, "steps": steps})
    for lr in (1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2)
    for steps in (5, 50)
)


@dataclass(frozen=True)
class _FinetuneGroups(_Finetune):
    """Fine-tune every parameter where-to-edit chooses among (the 1x1 convolutions of the last
    ``blocks`` blocks, or the groups of ``locator``) with a penalty to the original weights: the
    paper's FT-L1 / FT-L2 baselines, so a locator's front is compared with a dense edit of the
    same parameters that only a penalty keeps small.

    Grid: SGD at ``lr`` 1e-7 to 1e-2 for 5 or 50 steps, the penalty weight fixed.
    """

    grid: ClassVar[tuple[Candidate, ...]] = _PENALISED_GRID
    blocks: int = 2
    locator: str | None = None

    def trained(self, model: nn.Module, layer: str) -> list[str]:
        from pipeline.editing.locate import load_locator, parameter_groups

        if self.locator:
            return load_locator(self.locator).layout.param_names
        return parameter_groups(model, self.blocks).param_names


@register
@dataclass(frozen=True)
class FinetuneGroupsL1(_FinetuneGroups):
    """The where-to-edit groups fine-tuned densely with an L1 penalty (weight 1e-4)."""

    name: ClassVar[str] = "finetune-l1"
    penalty: str | None = "l1"
    penalty_weight: float = 1e-4


@register
@dataclass(frozen=True)
class FinetuneGroupsL2(_FinetuneGroups):
    """The where-to-edit groups fine-tuned densely with an L2 penalty (weight 1e-2)."""

    name: ClassVar[str] = "finetune-l2"
    penalty: str | None = "l2"
    penalty_weight: float = 1e-2


# -- locate, then edit (Yang et al. 2024) ------------------------------------------------------
@register
@dataclass(frozen=True)
class WhereToEdit(EditingMethod):
    """A trained locator masks parameter groups of the last blocks; only those are fine-tuned
    on the exemplars by plain SGD (:mod:`pipeline.editing.locate`).

    ``locator``: the trained locator's folder, file or name (``conceptswap train-locator``);
    required unless ``mask`` is a control: ``gradient`` (the top gradient scores, the locator
    before training) or ``random`` (groups drawn at the same sparsity, ``seed``). Without a
    locator the groups are the last ``blocks`` blocks' of the architecture's declaration; with
    one, the groups it was trained on. ``sparsity``: the share of groups left untouched.

    The layer the runner cuts the model at should lie at or before the first edited block, so
    that the cached prefix is reused (otherwise the edit runs the whole network, still exact).

    Grid: ``sparsity`` 0.99, 0.95, 0.9 x ``steps`` 1, 5, 20 x ``lr`` 1e-3, 1e-2, from a one-step
    nudge of 1 % of the groups to 20 steps on 10 %; below it, the one-step nudge scaled by 0.1
    and 0.3 (one SGD step at lr 1e-4 and 3e-4), so that the curve starts at no change even
    where a single step at 1e-3 already moves the clean predictions.
    """

    name: ClassVar[str] = "where-to-edit"
    grid: ClassVar[tuple[Candidate, ...]] = (
        *(Candidate({"sparsity": 0.99, "steps": 1, "lr": 1e-3}, s) for s in (0.1, 0.3)),
        *(
            Candidate({"sparsity": sparsity, "steps": steps, "lr": lr})
            for sparsity in (0.99, 0.95, 0.9)
            for steps in (1, 5, 20)
            for lr in (1e-3, 1e-2)
        ),
    )
    locator: str | None = None
    mask: str = "locator"
    sparsity: float = 0.95
    steps: int = 5
    lr: float = 1e-2
    blocks: int = 2
    seed: int = 0

    def layout_and_locator(self, model: nn.Module) -> tuple[Any, Any]:
        """The group layout and the locator network (``None`` for the controls)."""
        from pipeline.editing.covariance import weights_digest
        from pipeline.editing.locate import load_locator, parameter_groups

        if self.mask == "locator":
            if not self.locator:
                raise ValueError(
                    "where-to-edit needs a trained locator: set `locator: PATH_OR_NAME` in the "
                    "method's settings (methods: [{name: where-to-edit, settings: {locator: "
                    "...}}]; train one with `conceptswap train-locator -c locator.yaml`), or "
                    "`mask: gradient` / `mask: random` for the controls"
                )
            artifact = load_locator(self.locator)
            expected = artifact.weights_hash
            if expected and weights_digest(model) != expected:
                raise ValueError(
                    f"locator {self.locator!r} was trained on {artifact.model_id} with weights "
                    f"{expected}; this model's weights differ: train a locator for it"
                )
            return artifact.layout, artifact.locator
        if self.locator:
            from pipeline.editing.locate import load_locator

            return load_locator(self.locator).layout, None
        return parameter_groups(model, self.blocks), None

    def settings(self) -> dict[str, Any]:
        """As every method's, plus the locator's weights sha256: a locator retrained in place
        changes the run key, so results and deltas of the old one are never reused."""
        settings = super().settings()
        if self.locator:
            from pipeline.editing.locate import load_locator

            record = load_locator(self.locator).record
            settings["locator_sha256"] = str(record.get("weights_sha256", ""))
        return settings

    def deltas(self, model: nn.Module, layer: str, case: EditInputs) -> dict[str, Tensor]:
        deltas, mask = self.locate(model, case)
        seen = _WHERE_TO_EDIT_MASKS.get()
        if seen is not None:
            seen.append(mask)
        return deltas

    def locate(self, model: nn.Module, case: EditInputs) -> tuple[dict[str, Tensor], Tensor]:
        """The deltas and the ``(G,)`` mask of one edit."""
        from pipeline.editing.locate import locate_and_edit

        layout, locator = self.layout_and_locator(model)
        located = locate_and_edit(
            model,
            layout,
            case.exemplars,
            kind=self.mask,
            sparsity=self.sparsity,
            lr=self.lr,
            steps=self.steps,
            locator=locator,
            seed=self.seed,
        )
        return located.deltas, located.mask

    def edit(self, model: nn.Module, layer: str, case: EditInputs) -> EditResult:
        """As every method's, with the mask's active groups (indices into the layout) in the
        metadata (``mask``)."""
        masks: list[Tensor] = []
        token = _WHERE_TO_EDIT_MASKS.set(masks)
        try:
            result = super().edit(model, layer, case)
        finally:
            _WHERE_TO_EDIT_MASKS.reset(token)
        result.metadata["mask"] = json.dumps(masks[-1].nonzero().flatten().tolist())
        return result


@dataclass(frozen=True)
class _WhereToEditControl(WhereToEdit):
    """where-to-edit with a control mask, under a name of its own: a config lists a method once,
    so the ablations run beside the locator in one experiment. ``locator`` (optional) gives the
    groups the locator was trained on; the same grid, so the fronts compare at equal sparsity."""

    def __post_init__(self) -> None:
        if self.mask != type(self).mask:
            raise ValueError(f"{self.name} is the {type(self).mask!r} mask; got mask={self.mask!r}")


@register
@dataclass(frozen=True)
class WhereToEditRandom(_WhereToEditControl):
    """Groups drawn at random at the grid's sparsity (``seed``): what any mask of that size
    achieves."""

    name: ClassVar[str] = "where-to-edit-random"
    mask: str = "random"


@register
@dataclass(frozen=True)
class WhereToEditGradient(_WhereToEditControl):
    """The top groups by the exemplars' gradient energy: the ranking an untrained locator
    starts from, so its gap to ``where-to-edit`` is what meta-training added."""

    name: ClassVar[str] = "where-to-edit-gradient"
    mask: str = "gradient"


# where WhereToEdit.deltas hands its mask to WhereToEdit.edit (the base class builds the result)
_WHERE_TO_EDIT_MASKS: contextvars.ContextVar[list[Tensor] | None] = contextvars.ContextVar(
    "where_to_edit_masks", default=None
)
