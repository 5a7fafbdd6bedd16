"""Edit exemplars and the keys / values / mask weights they induce at one layer.

An exemplar is a pair of preprocessed model inputs: the *transformed* image (a concept
re-textured, e.g. wheels covered in snow) and the *original* image, with a mask of the concept's
pixels. The edit wants the layer to map the transformed image's keys at the masked positions to
the values it produced there on the original image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pipeline.editing.layers import (
    EditableLayer,
    eval_mode,
    layer_io,
    output_positions,
    resolve_layer,
    unfold_keys,
)


@dataclass
class EditExemplars:
    """Preprocessed exemplar images, concept masks at image resolution, and class labels.

    ``transformed`` and ``original``: ``(N, 3, H, W)`` model inputs; ``masks``: ``(N, 1, H, W)``
    floats in ``[0, 1]`` (soft masks allowed); ``labels``: ``(N,)`` long, the class the model
    should predict for the transformed images (used by the fine-tuning baselines).
    """

    transformed: Tensor
    original: Tensor
    masks: Tensor
    labels: Tensor

    def __post_init__(self) -> None:
        if self.transformed.dim() != 4 or self.transformed.shape[1] != 3:
            raise ValueError(
                f"transformed must be (N, 3, H, W), got {tuple(self.transformed.shape)}"
            )
        if self.original.shape != self.transformed.shape:
            raise ValueError(
                f"original {tuple(self.original.shape)} and transformed "
                f"{tuple(self.transformed.shape)} differ in shape"
            )
        n, _, h, w = self.transformed.shape
        if self.masks.shape != (n, 1, h, w):
            raise ValueError(f"masks must be ({n}, 1, {h}, {w}), got {tuple(self.masks.shape)}")
        if not self.masks.is_floating_point():
            raise ValueError("masks must be floating point in [0, 1]")
        if self.masks.numel() and (self.masks.min() < 0 or self.masks.max() > 1):
            raise ValueError("masks must lie in [0, 1]")
        if self.labels.shape != (n,) or self.labels.dtype != torch.long:
            raise ValueError(f"labels must be a ({n},) long tensor")

    def __len__(self) -> int:
        return self.transformed.shape[0]

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> EditExemplars:
        """Move to ``device``; ``dtype`` (if given) applies to images and masks, not labels."""
        return EditExemplars(
            self.transformed.to(device, dtype),
            self.original.to(device, dtype),
            self.masks.to(device, dtype),
            self.labels.to(device),
        )


def token_layout(model: nn.Module, num_tokens: int) -> tuple[int, tuple[int, int]]:
    """(number of prefix tokens, patch grid) of a token sequence of length ``num_tokens``.

    timm ViTs expose ``patch_embed.grid_size`` and ``num_prefix_tokens`` (CLS, registers);
    otherwise the grid is assumed square and the leftover leading tokens are prefix tokens.
    """
    patch_embed = getattr(model, "patch_embed", None)
    grid = getattr(patch_embed, "grid_size", None)
    if grid is not None:
        grid_hw = (int(grid[0]), int(grid[1]))
        prefix = num_tokens - grid_hw[0] * grid_hw[1]
        declared = getattr(model, "num_prefix_tokens", prefix)
        if prefix == declared and prefix >= 0:
            return prefix, grid_hw
    side = math.isqrt(num_tokens)
    return num_tokens - side * side, (side, side)


def downsample_mask(masks: Tensor, size: tuple[int, int]) -> Tensor:
    """Area-average ``(N, 1, H, W)`` masks to ``size``: the share of each cell that is concept."""
    return F.interpolate(masks.float(), size=size, mode="area")


def position_weights(
    model: nn.Module, layer: EditableLayer, outputs: Tensor, masks: Tensor
) -> Tensor:
    """Mask weight of every key position, ``(B, L)``, in the order of :func:`unfold_keys`.

    Conv layers use their output grid. Token layers (``(B, T, C)``) use the patch grid and give
    prefix tokens (CLS, registers) weight 0, since they do not belong to any pixel region.
    Channels-last maps ``(B, H, W, C)`` use ``(H, W)``; a ``(B, C)`` vector gets the mask mean.
    """
    batch = outputs.shape[0]
    if isinstance(layer, nn.Conv2d):
        return downsample_mask(masks, tuple(outputs.shape[-2:])).reshape(batch, -1)
    if outputs.dim() == 2:
        return masks.float().mean(dim=(1, 2, 3)).reshape(batch, 1)
    if outputs.dim() == 4:
        return downsample_mask(masks, tuple(outputs.shape[1:3])).reshape(batch, -1)
    if outputs.dim() == 3:
        prefix, grid = token_layout(model, outputs.shape[1])
        patches = downsample_mask(masks, grid).reshape(batch, -1)
        return torch.cat([patches.new_zeros(batch, prefix), patches], dim=1)
    raise ValueError(f"cannot place mask weights on outputs of shape {tuple(outputs.shape)}")


@dataclass
class EditData:
    """Everything the rewrite methods need, at one layer, for a set of exemplars.

    ``inputs``: layer inputs on the transformed images (for re-running the layer);
    ``keys``: ``(B, L, D)`` unfolded from ``inputs``; ``target``: raw layer outputs on the
    original images; ``values``: ``target`` as ``(B, L, O)``; ``weights``: ``(B, L)``.
    """

    inputs: Tensor
    keys: Tensor
    target: Tensor
    values: Tensor
    weights: Tensor

    def masked(self) -> tuple[Tensor, Tensor, Tensor]:
        """(keys ``(n, D)``, values ``(n, O)``, weights ``(n,)``) over positions with weight > 0."""
        keep = self.weights.reshape(-1) > 0
        keys = self.keys.reshape(-1, self.keys.shape[-1])[keep]
        values = self.values.reshape(-1, self.values.shape[-1])[keep]
        return keys, values, self.weights.reshape(-1)[keep]


def collect_edit_data(model: nn.Module, layer_name: str, exemplars: EditExemplars) -> EditData:
    """Run the (eval-mode) model on both image sets and gather keys, values and weights."""
    layer = resolve_layer(model, layer_name)
    with eval_mode(model):
        inputs, _ = layer_io(model, layer_name, exemplars.transformed)
        _, target = layer_io(model, layer_name, exemplars.original)
    keys = unfold_keys(layer, inputs)
    values = output_positions(layer, target)
    weights = position_weights(model, layer, target, exemplars.masks).to(keys.dtype)
    if weights.sum() <= 0:
        raise ValueError(f"the masks cover no position of layer {layer_name!r}")
    return EditData(inputs=inputs, keys=keys, target=target, values=values, weights=weights)
