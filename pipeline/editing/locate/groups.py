"""Structured parameter groups: the units a locator switches on or off.

A *group* is one slice of one or more parameters along one dimension: an output channel of a
1x1 convolution (``weight[o]``), a row of a ViT FFN's ``fc1`` (``weight[i, :]`` and
``bias[i]``), a column of its ``fc2`` (``weight[:, i]``). A :class:`GroupSet` holds the groups
of one module; a :class:`GroupLayout` concatenates the sets of the last ``blocks`` blocks of a
model in registration order, so a mask is one flat ``(G,)`` vector and
:meth:`GroupLayout.expand` turns it into per-parameter masks broadcastable to each parameter.

Which modules hold groups is declared per architecture: an :class:`Architecture` is a
predicate on the model and a function listing its blocks' group sets; adding an architecture is
one :func:`register_architecture` call. The predicates read module names only, so they also
match a :class:`~pipeline.editing.split.SplitModel` of the same network (it registers the
model's own children under their names).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn


@dataclass(frozen=True)
class GroupSet:
    """The ``size`` groups of one module: slice ``i`` of every ``(parameter, dim)`` in
    ``params`` is group ``i`` (e.g. ``fc1.weight`` rows and ``fc1.bias`` entries)."""

    module: str
    params: tuple[tuple[str, int], ...]
    size: int

    def to_dict(self) -> dict[str, Any]:
        return {"module": self.module, "params": [list(p) for p in self.params], "size": self.size}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GroupSet:
        params = tuple((str(name), int(dim)) for name, dim in data["params"])
        return cls(str(data["module"]), params, int(data["size"]))


@dataclass(frozen=True)
class GroupLayout:
    """The group sets a mask covers, in order; ``architecture`` names the registry entry."""

    sets: tuple[GroupSet, ...]
    architecture: str = ""

    def __post_init__(self) -> None:
        names = [name for group_set in self.sets for name, _ in group_set.params]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"parameters in two group sets: {repeated}")

    @property
    def size(self) -> int:
        """``G``: the number of groups, the length of a mask."""
        return sum(group_set.size for group_set in self.sets)

    @property
    def param_names(self) -> list[str]:
        return [name for group_set in self.sets for name, _ in group_set.params]

    @property
    def first_module(self) -> str:
        """The earliest module with groups: the model is cut before it."""
        return self.sets[0].module

    def slices(self) -> list[slice]:
        """Where each set's groups lie in a flat mask."""
        out, start = [], 0
        for group_set in self.sets:
            out.append(slice(start, start + group_set.size))
            start += group_set.size
        return out

    def expand(self, mask: Tensor, like: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Per-parameter masks from a flat ``(G,)`` mask, each shaped to broadcast against the
        parameter in ``like`` (size along the group dim, 1 elsewhere); differentiable."""
        if mask.shape != (self.size,):
            raise ValueError(f"mask of shape {tuple(mask.shape)}, layout has {self.size} groups")
        out = {}
        for group_set, part in zip(self.sets, self.slices(), strict=True):
            for name, dim in group_set.params:
                shape = [1] * like[name].dim()
                shape[dim] = group_set.size
                out[name] = mask[part].reshape(shape)
        return out

    def energy(self, grads: Mapping[str, Tensor]) -> Tensor:
        """``(G,)``: per group, the squared norm of ``grads`` over its slices."""
        parts = []
        for group_set in self.sets:
            total = None
            for name, dim in group_set.params:
                grad = grads[name].double()
                dims = [d for d in range(grad.dim()) if d != dim]
                value = grad.pow(2).sum(dim=dims) if dims else grad.pow(2)
                total = value if total is None else total + value
            parts.append(total)
        return torch.cat(parts)

    def check(self, model: nn.Module) -> None:
        """Raise ``ValueError`` unless every parameter exists with the declared group size."""
        params = dict(model.named_parameters())
        for group_set in self.sets:
            for name, dim in group_set.params:
                if name not in params:
                    raise ValueError(f"model has no parameter {name!r} (group set {group_set})")
                if params[name].shape[dim] != group_set.size:
                    raise ValueError(
                        f"{name}: {params[name].shape[dim]} slices along dim {dim}, the layout "
                        f"declares {group_set.size}"
                    )

    def to_dict(self) -> dict[str, Any]:
        return {"architecture": self.architecture, "sets": [s.to_dict() for s in self.sets]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GroupLayout:
        sets = tuple(GroupSet.from_dict(s) for s in data["sets"])
        return cls(sets, str(data.get("architecture", "")))


# -- architectures -----------------------------------------------------------------------------
BlockGroups = Callable[[nn.Module], list[tuple[str, list[GroupSet]]]]


@dataclass(frozen=True)
class Architecture:
    """How to find a model family's edit groups: ``matches(model)``, and ``blocks(model)``:
    ``(block name, its group sets)`` in forward order."""

    name: str
    matches: Callable[[nn.Module], bool]
    blocks: BlockGroups


ARCHITECTURES: dict[str, Architecture] = {}


def register_architecture(architecture: Architecture) -> Architecture:
    """Add an architecture (first registered, first matched)."""
    if architecture.name in ARCHITECTURES:
        raise ValueError(f"architecture {architecture.name!r} is registered already")
    ARCHITECTURES[architecture.name] = architecture
    return architecture


def _output_groups(module_name: str, module: nn.Module) -> GroupSet:
    """Output channels / rows of a conv or linear layer (weight dim 0, bias too)."""
    params = [(f"{module_name}.weight", 0)]
    if getattr(module, "bias", None) is not None:
        params.append((f"{module_name}.bias", 0))
    return GroupSet(module_name, tuple(params), int(module.weight.shape[0]))


def _is_pointwise(module: nn.Module) -> bool:
    return isinstance(module, nn.Conv2d) and module.kernel_size == (1, 1) and module.groups == 1


def _blocks_by_pattern(
    model: nn.Module, pattern: str, make: Callable[[str, nn.Module], GroupSet | None]
) -> list[tuple[str, list[GroupSet]]]:
    """Group sets of the modules whose names match ``pattern`` (group 1: the block name),
    gathered per block in registration order."""
    compiled = re.compile(pattern)
    blocks: dict[str, list[GroupSet]] = {}
    for name, module in model.named_modules():
        found = compiled.fullmatch(name)
        if found is None:
            continue
        group_set = make(name, module)
        if group_set is not None:
            blocks.setdefault(found.group(1), []).append(group_set)
    return list(blocks.items())


def _has(model: nn.Module, pattern: str) -> bool:
    compiled = re.compile(pattern)
    return any(compiled.fullmatch(name) for name, _ in model.named_modules())


def _pointwise_groups(name: str, module: nn.Module) -> GroupSet | None:
    return _output_groups(name, module) if _is_pointwise(module) else None


def _vit_groups(name: str, module: nn.Module) -> GroupSet | None:
    if not isinstance(module, nn.Linear):
        return None
    if name.endswith("fc1"):
        return _output_groups(name, module)
    # fc2: its input columns, one per hidden unit
    return GroupSet(name, ((f"{name}.weight", 1),), int(module.weight.shape[1]))


_EFFICIENTNET = r"(blocks\.\d+\.\d+)\.(conv_pw|conv_pwl)"
_RESNET = r"(layer\d+\.\d+)\.(conv1|conv3)"
_VIT = r"(blocks\.\d+)\.mlp\.(fc1|fc2)"

register_architecture(
    Architecture(
        "efficientnet",  # timm EfficientNet / -Lite / MobileNet: conv_pw and conv_pwl
        matches=lambda model: _has(model, _EFFICIENTNET),
        blocks=lambda model: _blocks_by_pattern(model, _EFFICIENTNET, _pointwise_groups),
    )
)
register_architecture(
    Architecture(
        "resnet-bottleneck",  # timm / torchvision ResNet-50+: the bottleneck's 1x1 convs
        matches=lambda model: _has(model, r"layer\d+\.\d+\.conv3"),
        blocks=lambda model: _blocks_by_pattern(model, _RESNET, _pointwise_groups),
    )
)
register_architecture(
    Architecture(
        "vit",  # timm vit_*: FFN fc1 rows and fc2 columns
        matches=lambda model: _has(model, _VIT),
        blocks=lambda model: _blocks_by_pattern(model, _VIT, _vit_groups),
    )
)


def architecture_of(model: nn.Module, name: str | None = None) -> Architecture:
    """The registered architecture ``name``, or the first whose predicate matches ``model``."""
    if name is not None:
        if name not in ARCHITECTURES:
            raise ValueError(f"unknown architecture {name!r}; registered: {sorted(ARCHITECTURES)}")
        return ARCHITECTURES[name]
    for architecture in ARCHITECTURES.values():
        if architecture.matches(model):
            return architecture
    raise ValueError(
        f"no parameter groups declared for {type(model).__name__}; registered architectures: "
        f"{sorted(ARCHITECTURES)} (add one with register_architecture)"
    )


def parameter_groups(
    model: nn.Module, blocks: int = 2, architecture: str | None = None
) -> GroupLayout:
    """The group sets of the last ``blocks`` blocks of ``model`` that hold groups.

    Args:
        model: the classifier (or a ``SplitModel`` of it).
        blocks: how many of the last blocks are edited (``K``).
        architecture: a registered name; default: the first whose predicate matches.
    """
    if blocks < 1:
        raise ValueError(f"blocks must be >= 1, got {blocks}")
    found = architecture_of(model, architecture)
    listed = [(block, sets) for block, sets in found.blocks(model) if sets]
    if not listed:
        raise ValueError(f"{found.name}: no group found in {type(model).__name__}")
    sets = tuple(group_set for _, block_sets in listed[-blocks:] for group_set in block_sets)
    return GroupLayout(sets, found.name)


def layout_params(model: nn.Module, layout: GroupLayout) -> dict[str, Tensor]:
    """The model's (detached) tensors of the layout's parameters, by name."""
    params = dict(model.named_parameters())
    return {name: params[name].detach() for name in layout.param_names}


def group_names(layout: GroupLayout) -> Iterable[str]:
    """``module[i]`` per group, in mask order (for reports)."""
    for group_set in layout.sets:
        for index in range(group_set.size):
            yield f"{group_set.module}[{index}]"
