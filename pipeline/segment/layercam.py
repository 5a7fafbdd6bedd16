"""LayerCAM over several blocks and scales: the `object` evidence map of the `cam` segmenter.

Grad-CAM on the last feature map alone is 7-10 cells across and localises the single most
discriminative part; on COCO photos its GrabCut masks barely beat a centred ellipse (see
docs/segment_cam.md, "Measured mask quality"). LayerCAM (Jiang et al., 2021) weights every
activation by its own positive gradient, `relu(grad) * A`, so shallower, finer blocks give
usable maps too; averaging the per-block maps (each normalised to peak 1) of blocks 3-6 of an
EfficientNet at two input sizes gives a map that covers whole objects and several objects.

The target is the sum of the top-`top_k` logits (or the label's logit plus the next best):
scenes hold several things and ImageNet spreads one object over neighbouring classes, and one
backward pass of the sum costs the same as one class.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from pipeline.segment.refine import resize_longer, resize_map


def feature_blocks(model: Any, blocks: Sequence[int]) -> list[torch.nn.Module]:
    """The modules whose outputs LayerCAM reads: `model.blocks[i]` (timm EfficientNet, MobileNet,
    ...); a clear error for a model without numbered blocks."""
    stages = getattr(model, "blocks", None)
    if stages is None or not hasattr(stages, "__getitem__"):
        raise ValueError(
            f"layercam needs a model with numbered `blocks` (timm EfficientNet/MobileNet); "
            f"{type(model).__name__} has none: use object_method='gradcam'"
        )
    count = len(stages)
    bad = [b for b in blocks if not -count <= b < count]
    if bad:
        raise ValueError(f"layercam: blocks {bad} outside the model's {count} blocks")
    return [stages[b] for b in blocks]


def layercam_map(
    model: Any,
    normalise: Callable[[Sequence[np.ndarray]], torch.Tensor],
    image: np.ndarray,
    sizes: Sequence[int],
    blocks: Sequence[int],
    top_k: int = 5,
    label: int | None = None,
    out_shape: tuple[int, int] | None = None,
) -> tuple[np.ndarray, int, float]:
    """(map on an `out_shape` grid (default: `image`'s) normalised to peak 1, class, p(class)
    at the first size).

    Per size in `sizes` (the longer side), one forward and one backward pass; per block, the
    LayerCAM map `relu(sum_c relu(dY/dA_c) * A_c)` normalised to peak 1 and resized to the
    image; the result is the mean over blocks and sizes, normalised to peak 1. `class` is the
    label when given, else the top-1 class at the first size.
    """
    modules = feature_blocks(model, blocks)
    height, width = out_shape if out_shape is not None else image.shape[:2]
    total = np.zeros((height, width), np.float32)
    cls, prob = -1, 0.0
    for number, size in enumerate(sizes):
        work, _ = resize_longer(image, int(size))
        captured: list[torch.Tensor] = []
        hooks = [
            module.register_forward_hook(lambda _m, _i, out, into=captured: into.append(out))
            for module in modules
        ]
        try:
            with torch.inference_mode(False), torch.enable_grad():
                x = normalise([work]).requires_grad_(True)  # frozen weights: grads via x
                logits = model(x).float()[0]
                probs = torch.softmax(logits.detach(), dim=0)
                order = torch.argsort(probs, descending=True)
                picked = [int(c) for c in order[:top_k]]
                if label is not None:
                    rest = [c for c in picked if c != int(label)][: top_k - 1]
                    picked = [int(label), *rest]
                if number == 0:
                    cls = picked[0]
                    prob = float(probs[cls])
                target = logits[picked].sum()
                grads = torch.autograd.grad(target, captured)
        finally:
            for hook in hooks:
                hook.remove()
        for activation, grad in zip(captured, grads, strict=True):
            layer = torch.relu((torch.relu(grad) * activation).sum(dim=1))[0]
            layer_map = layer.detach().float().cpu().numpy()
            peak = float(layer_map.max())
            if peak > 0:
                total += resize_map(layer_map / peak, (height, width))
    peak = float(total.max())
    return (total / peak if peak > 0 else total), cls, prob
