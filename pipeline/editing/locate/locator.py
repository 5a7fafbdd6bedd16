"""The locator: a small hypernetwork from a case's exemplars to scores over parameter groups.

Its input (:class:`LocatorInputs`), computed once per exemplar set on the unedited model:

- ``pooled`` ``(2C,)``: the input of the first edited module, averaged over positions (conv
  maps) or tokens (ViT) and over exemplars, for the transformed images, and the same minus its
  value on the original images — what the texture changed in the representation the edited
  blocks read. Each half is layer-normalised, so the scale of a network's activations does not
  matter.
- ``grad_score`` ``(G,)``: per group, the log of the squared norm of the exemplars'
  cross-entropy gradient over the group's slice, standardised within each module. It is what
  a first-order account of "which groups can fix these exemplars" would use; the network is
  initialised to rank groups by it alone (its last layer starts at zero), and meta-training
  learns where that ranking breaks locality or generalisation.

The output is one logit per group: ``MLP(pooled) + a · grad_score + b`` (``a``, ``b``
learnt). A mask at sparsity ``s`` keeps the top ``(1 − s)·G`` logits
(:func:`~pipeline.editing.locate.masks.top_mask`).

The reference implementation of Yang et al. runs a ViT hypernetwork on the image itself; a
features-in, logits-out MLP keeps meta-training within minutes on CPU, and works the same for
conv nets, whose groups a ViT hypernetwork over patches has no natural tokens for.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pipeline.editing.locate.groups import GroupLayout

Forward = Callable[[Mapping[str, Tensor]], Tensor]


@dataclass(frozen=True)
class LocatorInputs:
    """What the locator sees of one exemplar set (see the module's docstring)."""

    pooled: Tensor
    grad_score: Tensor


def pool_positions(activation: Tensor) -> Tensor:
    """``(B, C, H, W)`` / ``(B, T, C)`` / ``(B, C)`` activations → ``(B, C)`` means."""
    activation = activation.float()
    if activation.dim() == 4:
        return activation.mean(dim=(2, 3))
    if activation.dim() == 3:
        return activation.mean(dim=1)
    if activation.dim() == 2:
        return activation
    raise ValueError(f"cannot pool an activation of shape {tuple(activation.shape)}")


def pooled_features(transformed: Tensor, original: Tensor) -> Tensor:
    """``(2C,)``: mean pooled transformed activations and their change from the originals,
    from per-exemplar ``(B, C)`` pooled activations."""
    edited = transformed.float().mean(dim=0)
    return torch.cat([edited, edited - original.float().mean(dim=0)])


def gradient_scores(layout: GroupLayout, grads: Mapping[str, Tensor]) -> Tensor:
    """``(G,)``: log squared gradient norm per group, standardised within each group set."""
    energy = layout.energy(grads)
    logs = torch.log(energy + 1e-30)
    parts = []
    for part in layout.slices():
        values = logs[part]
        spread = values.std() if values.numel() > 1 else values.new_ones(())
        parts.append((values - values.mean()) / spread.clamp_min(1e-6))
    return torch.cat(parts).float()


def exemplar_gradients(
    forward: Forward, params: Mapping[str, Tensor], labels: Tensor
) -> dict[str, Tensor]:
    """Gradient of the exemplars' mean cross-entropy w.r.t. ``params`` (unedited model)."""
    leaves = {name: tensor.detach().requires_grad_(True) for name, tensor in params.items()}
    with torch.enable_grad():
        loss = F.cross_entropy(forward(leaves), labels)
        grads = torch.autograd.grad(loss, list(leaves.values()))
    return {name: grad.detach() for name, grad in zip(leaves, grads, strict=True)}


class Locator(nn.Module):
    """Exemplar features → one logit per parameter group.

    Args:
        feature_dim: ``C``, the channels (or token width) at the first edited module's input.
        n_groups: ``G``, the layout's number of groups.
        hidden: width of the MLP's hidden layer.
    """

    def __init__(self, feature_dim: int, n_groups: int, hidden: int = 256) -> None:
        super().__init__()
        self.feature_dim = int(feature_dim)
        self.n_groups = int(n_groups)
        self.hidden = int(hidden)
        self.mlp = nn.Sequential(
            nn.Linear(2 * self.feature_dim, self.hidden),
            nn.GELU(),
            nn.Linear(self.hidden, self.n_groups),
        )
        # at initialisation the ranking is the gradient score's alone
        nn.init.zeros_(self.mlp[2].weight)
        nn.init.zeros_(self.mlp[2].bias)
        self.gradient_weight = nn.Parameter(torch.ones(()))
        self.bias = nn.Parameter(torch.zeros(self.n_groups))

    def forward(self, inputs: LocatorInputs) -> Tensor:
        pooled = inputs.pooled.float()
        if pooled.shape != (2 * self.feature_dim,):
            raise ValueError(
                f"locator expects pooled features of {2 * self.feature_dim}, got "
                f"{tuple(pooled.shape)}"
            )
        if inputs.grad_score.shape != (self.n_groups,):
            raise ValueError(
                f"locator expects {self.n_groups} group scores, got "
                f"{tuple(inputs.grad_score.shape)}"
            )
        edited, change = pooled.split(self.feature_dim)
        normed = torch.cat(
            [F.layer_norm(edited, (self.feature_dim,)), F.layer_norm(change, (self.feature_dim,))]
        )
        return self.mlp(normed) + self.gradient_weight * inputs.grad_score.float() + self.bias
