"""Binary masks over parameter groups: top-k at a sparsity, random controls, their overlap.

``sparsity`` is the share of groups left untouched: at 0.95 a mask switches on
``max(1, round(0.05·G))`` groups. Every mask here has exactly that many ones, so methods and
ablations compared at one sparsity edit the same number of groups.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor


def active_count(n_groups: int, sparsity: float) -> int:
    """How many of ``n_groups`` a mask at ``sparsity`` switches on (at least one)."""
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity must lie in [0, 1), got {sparsity}")
    return max(1, min(n_groups, round((1.0 - sparsity) * n_groups)))


def top_mask(scores: Tensor, sparsity: float) -> Tensor:
    """``(G,)`` bool: the highest-scoring groups at ``sparsity`` (ties: lower index first)."""
    count = active_count(scores.numel(), sparsity)
    order = torch.argsort(-scores.detach().double(), stable=True)
    mask = torch.zeros(scores.numel(), dtype=torch.bool, device=scores.device)
    mask[order[:count]] = True
    return mask


def random_mask(n_groups: int, sparsity: float, seed: int = 0) -> Tensor:
    """``(G,)`` bool: groups drawn uniformly at ``sparsity`` (the equal-sparsity control)."""
    generator = torch.Generator().manual_seed(int(seed))
    order = torch.randperm(n_groups, generator=generator)
    mask = torch.zeros(n_groups, dtype=torch.bool)
    mask[order[: active_count(n_groups, sparsity)]] = True
    return mask


def straight_through(logits: Tensor, sparsity: float, temperature: float = 1.0) -> Tensor:
    """A hard top-k mask in the forward pass, differentiable through the selected groups.

    The value is exactly :func:`top_mask` (so training sees the declared sparsity); the
    gradient of each selected group is that of ``sigmoid(logits / T)``: a selected group the
    outer loss would rather weaken is pushed down and, below the k-th logit, swapped for the
    next. Unselected groups get no gradient: passing it to them too (``hard + soft −
    sg(soft)``) rates a group's inclusion by the slope at "off", which with a few large inner
    steps misjudged it and raised the outer loss on a synthetic task (see the tests).
    """
    soft = torch.sigmoid(logits / temperature)
    hard = top_mask(logits, sparsity).to(soft.dtype)
    return hard * (1.0 + soft - soft.detach())


def mask_iou(first: Tensor, second: Tensor) -> float:
    """Intersection over union of two boolean masks (1.0 when both are empty)."""
    first, second = first.bool(), second.bool()
    union = int((first | second).sum())
    return 1.0 if union == 0 else int((first & second).sum()) / union


@dataclass(frozen=True)
class Specificity:
    """Mean IoU of masks of the same (concept, texture) pair and of different pairs, with
    the numbers of mask pairs each mean is over."""

    same: float
    different: float
    n_same: int
    n_different: int

    @property
    def gap(self) -> float:
        """``same − different``: how much more the masks of one pair agree."""
        return self.same - self.different


def mask_specificity(masks: Sequence[Tensor], pairs: Sequence[Hashable]) -> Specificity:
    """How specific masks are to their pair: mean IoU within pairs vs across pairs.

    Args:
        masks: one boolean ``(G,)`` mask per exemplar (or per exemplar set).
        pairs: the (concept, texture) pair of each mask, in the same order.

    A locator that maps exemplars of a pair to the same groups and other pairs elsewhere has a
    large gap; a mask that ignores its input (gradient-free, random) has none. NaN where no
    two masks share (or differ in) a pair.
    """
    if len(masks) != len(pairs):
        raise ValueError(f"{len(masks)} masks for {len(pairs)} pairs")
    same: list[float] = []
    different: list[float] = []
    for i in range(len(masks)):
        for j in range(i + 1, len(masks)):
            (same if pairs[i] == pairs[j] else different).append(mask_iou(masks[i], masks[j]))

    def mean(values: list[float]) -> float:
        return sum(values) / len(values) if values else float("nan")

    return Specificity(mean(same), mean(different), len(same), len(different))
