"""A layer as a linear associative memory: resolve it, read its keys and values, run it edited.

Editing (Bau et al. 2020; Santurkar et al. 2021) views a convolution or linear layer as a matrix
``W`` (out x in·k·k) that maps a *key* ``k`` (the layer input seen by one output position, i.e.
an unfolded patch for a kxk convolution, or a token's feature vector for a linear layer) to a
*value* ``v = W k + b`` (the layer output at that position). Everything here is expressed in that
form so the rewrite math can work on plain 2-D matrices:

* :func:`weight_matrix` / :func:`matrix_to_weight` convert between a parameter and ``W``;
* :func:`unfold_keys` / :func:`output_positions` turn layer inputs / outputs into ``(B, L, D)``
  and ``(B, L, O)`` so that ``outputs[:, l] == keys[:, l] @ W.T + b`` for every position ``l``;
* :func:`capture` and :func:`layer_io` record a layer's input and output with forward hooks that
  are always removed;
* :func:`layer_forward`, :func:`functional_forward` and :func:`replaced_weight` run a layer or a
  whole model with a replacement weight without touching the model's own parameters.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

EditableLayer = nn.Conv2d | nn.Linear


class UnsupportedLayerError(TypeError):
    """The named module is not a layer the editing math can treat as one matrix."""


def resolve_layer(model: nn.Module, name: str) -> EditableLayer:
    """Return the editable layer ``name`` of ``model`` (a ``get_submodule`` path).

    Only ``nn.Conv2d`` with ``groups == 1`` and ``nn.Linear`` are accepted: a grouped or
    depthwise convolution is a block-diagonal matrix, and a rank-one update of the dense
    ``W`` would not be representable in its parameter.
    """
    try:
        layer = model.get_submodule(name)
    except AttributeError as error:
        raise KeyError(f"model has no submodule named {name!r}") from error
    check_layer(layer, name)
    return layer  # type: ignore[return-value]


def check_layer(layer: nn.Module, name: str = "layer") -> None:
    """Raise :class:`UnsupportedLayerError` unless ``layer`` is a dense conv or linear layer."""
    if isinstance(layer, nn.Conv2d):
        if layer.groups != 1:
            raise UnsupportedLayerError(
                f"{name}: grouped/depthwise Conv2d (groups={layer.groups}) is not supported; "
                "its weight is block-diagonal, so a dense rank-one update cannot be stored in it. "
                "Pick a dense conv (groups=1), e.g. a 1x1 projection or a ResNet 3x3 conv."
            )
        return
    if isinstance(layer, nn.Linear):
        return
    raise UnsupportedLayerError(
        f"{name}: {type(layer).__name__} is not supported; expected nn.Conv2d (groups=1) or "
        "nn.Linear"
    )


def weight_param_name(layer_name: str) -> str:
    """Parameter name of the layer's weight in ``model.named_parameters()``."""
    return f"{layer_name}.weight" if layer_name else "weight"


def weight_matrix(layer: EditableLayer, weight: Tensor | None = None) -> Tensor:
    """``W`` as a 2-D matrix (out x in·kh·kw), in the column order of :func:`unfold_keys`.

    ``F.unfold`` orders a patch channel-major then row-major over the kernel, which is exactly
    the memory order of a conv weight ``(out, in, kh, kw)``, so a reshape suffices.
    """
    weight = layer.weight if weight is None else weight
    return weight.reshape(weight.shape[0], -1)


def matrix_to_weight(layer: EditableLayer, matrix: Tensor) -> Tensor:
    """Inverse of :func:`weight_matrix`: reshape ``W`` (or ``ΔW``) to the parameter's shape."""
    shape = layer.weight.shape
    if matrix.shape != (shape[0], shape[1:].numel()):
        raise ValueError(
            f"matrix of shape {tuple(matrix.shape)} does not fit a weight of shape {tuple(shape)}"
        )
    return matrix.reshape(shape)


def _pad_for_unfold(layer: nn.Conv2d, inputs: Tensor) -> tuple[Tensor, tuple[int, int]]:
    """Inputs and the padding to pass to ``F.unfold`` so patches match the conv's own padding.

    Zero padding with explicit sizes is left to ``unfold``; string padding (``'same'``) and
    non-zero padding modes are applied beforehand exactly as ``nn.Conv2d`` does.
    """
    if layer.padding_mode == "zeros" and not isinstance(layer.padding, str):
        return inputs, tuple(layer.padding)  # type: ignore[return-value]
    mode = "constant" if layer.padding_mode == "zeros" else layer.padding_mode
    pad = layer._reversed_padding_repeated_twice
    return F.pad(inputs, pad, mode=mode), (0, 0)


def unfold_keys(layer: EditableLayer, inputs: Tensor) -> Tensor:
    """Keys per output position / token as ``(B, L, D)``.

    For a conv, ``L = H_out·W_out`` (row-major) and ``D = in·kh·kw``; for a linear layer on
    ``(B, ..., C)`` inputs, ``L`` is the product of the middle dims (1 for ``(B, C)``) and
    ``D = C``. By construction ``output_positions(layer, layer(inputs)) == keys @ W.T + b``.
    """
    if isinstance(layer, nn.Conv2d):
        if inputs.dim() != 4:
            raise ValueError(f"conv keys need (B, C, H, W) inputs, got {tuple(inputs.shape)}")
        padded, padding = _pad_for_unfold(layer, inputs)
        patches = F.unfold(
            padded,
            kernel_size=layer.kernel_size,
            dilation=layer.dilation,
            padding=padding,
            stride=layer.stride,
        )
        return patches.transpose(1, 2)
    if isinstance(layer, nn.Linear):
        if inputs.dim() < 2:
            raise ValueError(f"linear keys need (B, ..., C) inputs, got {tuple(inputs.shape)}")
        return inputs.reshape(inputs.shape[0], -1, inputs.shape[-1])
    raise UnsupportedLayerError(f"{type(layer).__name__} is not supported")


def output_positions(layer: EditableLayer, outputs: Tensor) -> Tensor:
    """Layer outputs (or any tensor laid out like them) as ``(B, L, O)``, matching the keys."""
    if isinstance(layer, nn.Conv2d):
        if outputs.dim() != 4:
            raise ValueError(f"conv outputs must be (B, O, H, W), got {tuple(outputs.shape)}")
        return outputs.flatten(2).transpose(1, 2)
    return outputs.reshape(outputs.shape[0], -1, outputs.shape[-1])


def layer_forward(
    layer: EditableLayer, inputs: Tensor, weight: Tensor, bias: Tensor | None = None
) -> Tensor:
    """The layer's forward pass with ``weight`` (parameter shape or matrix) instead of its own.

    Gradients flow into ``weight``; the layer's parameters are read, never written. ``bias``
    defaults to the layer's own bias.
    """
    if weight.dim() == 2 and layer.weight.dim() != 2:
        weight = matrix_to_weight(layer, weight)
    bias = layer.bias if bias is None else bias
    if isinstance(layer, nn.Conv2d):
        return layer._conv_forward(inputs, weight, bias)
    return F.linear(inputs, weight, bias)


@dataclass
class Capture:
    """Inputs and outputs a hooked layer saw, one entry per forward call."""

    inputs: list[Tensor] = field(default_factory=list)
    outputs: list[Tensor] = field(default_factory=list)

    @property
    def input(self) -> Tensor:
        """Input of the last call (the usual case: one forward per capture)."""
        if not self.inputs:
            raise RuntimeError("the captured layer was not called")
        return self.inputs[-1]

    @property
    def output(self) -> Tensor:
        if not self.outputs:
            raise RuntimeError("the captured layer was not called")
        return self.outputs[-1]


class _StopForward(Exception):
    """Raised by a hook to skip the rest of the network once the layer's I/O is recorded."""


@contextmanager
def capture(model: nn.Module, layer_name: str, *, detach: bool = True) -> Iterator[Capture]:
    """Record the first positional input and the output of ``layer_name`` while inside.

    The hook is removed in a ``finally`` block, so an exception in the block (or in the model)
    never leaves a stale hook that would silently keep recording on later forwards.
    """
    layer = model.get_submodule(layer_name)
    record = Capture()

    def hook(_module: nn.Module, args: tuple[Any, ...], output: Tensor) -> None:
        value_in, value_out = args[0], output
        if detach:
            value_in, value_out = value_in.detach(), value_out.detach()
        record.inputs.append(value_in)
        record.outputs.append(value_out)

    handle = layer.register_forward_hook(hook)
    try:
        yield record
    finally:
        handle.remove()


def layer_io(
    model: nn.Module, layer_name: str, images: Tensor, *, stop_early: bool = True
) -> tuple[Tensor, Tensor]:
    """Run ``model`` on ``images`` under ``no_grad`` and return the layer's (input, output).

    With ``stop_early`` a hook aborts the forward right after the layer, so the rest of the
    network is not computed (the result is identical: later modules cannot affect the layer).
    """
    layer = model.get_submodule(layer_name)
    stop_handle = None
    if stop_early:

        def stop(_module: nn.Module, _args: tuple[Any, ...], _output: Tensor) -> None:
            raise _StopForward

    with capture(model, layer_name) as record, torch.no_grad():
        # Registered after capture's hook, so it runs after the I/O has been recorded.
        if stop_early:
            stop_handle = layer.register_forward_hook(stop)
        try:
            model(images)
        except _StopForward:
            pass
        finally:
            if stop_handle is not None:
                stop_handle.remove()
    return record.input, record.output


def functional_forward(
    model: nn.Module, replacements: dict[str, Tensor], *args: Any, **kwargs: Any
) -> Any:
    """``model(*args, **kwargs)`` with some parameters replaced (``name -> tensor``).

    Uses ``torch.func.functional_call``: the model's parameters are neither modified nor
    re-registered, and gradients flow into the replacement tensors only if they require grad.
    """
    return torch.func.functional_call(model, replacements, args, kwargs)


@contextmanager
def replaced_weight(model: nn.Module, layer_name: str, weight: Tensor) -> Iterator[None]:
    """Inside the block, ``layer_name`` computes with ``weight`` instead of its own parameter.

    Implemented as a forward hook that recomputes the layer's output with ``weight`` (so the
    layer is evaluated twice, a small cost); the parameter itself is never written, and the
    hook is removed on exit, also after an exception.
    """
    layer = resolve_layer(model, layer_name)
    weight = weight.reshape(layer.weight.shape) if weight.dim() == 2 else weight

    def hook(module: nn.Module, args: tuple[Any, ...], _output: Tensor) -> Tensor:
        return layer_forward(module, args[0], weight)  # type: ignore[arg-type]

    handle = layer.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put every module in eval mode and restore each module's own ``training`` flag after.

    Editing treats the network as a fixed function (BatchNorm uses its running statistics and
    its buffers are not updated, dropout is off).
    """
    flags = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, flag in flags:
            module.training = flag


def model_device(model: nn.Module) -> torch.device:
    """Device of the model's first parameter (CPU for a model without parameters)."""
    for param in model.parameters():
        return param.device
    return torch.device("cpu")


PostFn = Callable[[Tensor], Tensor]


def norm_after(model: nn.Module, layer: str) -> list[str]:
    """``[name]`` of the normalisation module right after ``layer`` in the same parent (e.g.
    ``blocks.6.0.bn3`` after ``blocks.6.0.conv_pwl``), or ``[]`` if the next sibling is not a
    norm layer: where the rewrite compares values by default."""
    parent, _, leaf = layer.rpartition(".")
    container = model.get_submodule(parent) if parent else model
    names = [name for name, _ in container.named_children()]
    if leaf not in names or names.index(leaf) + 1 >= len(names):
        return []
    following = names[names.index(leaf) + 1]
    if "Norm" not in type(container.get_submodule(following)).__name__:
        return []
    return [f"{parent}.{following}" if parent else following]
