"""Layer activations in one batched pass for several layers, and the model's input format.

Activations are taken with forward hooks on named modules (`blocks.5`, `layer3.1`), every layer
of one batch in the same forward pass, without gradients.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

DEFAULT_INPUT_SIZE = 224


def module(model: torch.nn.Module, name: str) -> torch.nn.Module:
    """The submodule `name` of `model`; the error lists a few valid names."""
    modules = dict(model.named_modules())
    if name not in modules:
        sample = ", ".join(n for n in list(modules)[1:12] if n)
        raise KeyError(f"model has no layer {name!r}; layers are named like {sample} ...")
    return modules[name]


def input_size(classifier: Any) -> int:
    """The side of the classifier's square input (its timm data config, else 224)."""
    config = getattr(classifier, "data_config", None) or {}
    size = config.get("input_size")
    return int(size[-1]) if size else DEFAULT_INPUT_SIZE


def mean_colour(classifier: Any) -> np.ndarray:
    """The RGB colour that normalises to zero: what neutralised pixels are filled with."""
    config = getattr(classifier, "data_config", None) or {}
    mean = config.get("mean", (0.485, 0.456, 0.406))
    return np.round(np.asarray(mean, np.float64) * 255).astype(np.uint8)


def to_input(classifier: Any, images: Sequence[np.ndarray]) -> torch.Tensor:
    """Images already at the input size → the model's batch. With a timm data config this is
    only the normalisation (the classifier's own `preprocess` would resize and centre-crop
    again, cutting the border of a crop); otherwise the classifier's `preprocess`."""
    config = getattr(classifier, "data_config", None)
    if not config:
        return classifier.preprocess(list(images))
    batch = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float().div_(255)
    mean = torch.tensor(config["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(config["std"]).view(1, 3, 1, 1)
    return (batch - mean) / std


@contextmanager
def _capture(model: torch.nn.Module, layers: Sequence[str]) -> Iterator[dict[str, torch.Tensor]]:
    captured: dict[str, torch.Tensor] = {}
    handles = []
    for name in layers:

        def hook(_m: torch.nn.Module, _i: Any, output: Any, name: str = name) -> None:
            captured[name] = output.detach()

        handles.append(module(model, name).register_forward_hook(hook))
    try:
        yield captured
    finally:
        for handle in handles:
            handle.remove()


def layer_activations(
    model: torch.nn.Module, layers: Sequence[str], inputs: torch.Tensor, batch_size: int = 32
) -> dict[str, torch.Tensor]:
    """Activations of every layer in `layers` for `inputs` (N x 3 x H x W), batched: one
    forward pass per batch serves all layers. Returns layer → N x C x h x w (CPU, float32)."""
    device = next(model.parameters()).device
    parts: dict[str, list[torch.Tensor]] = {name: [] for name in layers}
    with torch.no_grad(), _capture(model, layers) as captured:
        for start in range(0, len(inputs), batch_size):
            model(inputs[start : start + batch_size].to(device))
            for name in layers:
                parts[name].append(captured[name].float().cpu())
    return {name: torch.cat(chunks) if chunks else torch.empty(0) for name, chunks in parts.items()}


@contextmanager
def replaced_output(model: torch.nn.Module, layer: str, value: torch.Tensor) -> Iterator[None]:
    """Within the block, `layer` outputs `value` (broadcast over the batch) instead of what it
    computes: the rest of the network evaluated on edited activations."""

    def hook(_m: torch.nn.Module, _i: Any, output: torch.Tensor) -> torch.Tensor:
        return value.to(output.device, output.dtype).expand_as(output)

    handle = module(model, layer).register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()
