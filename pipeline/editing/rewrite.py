"""The rewrite math on plain matrices: keys ``(n, D)``, values ``(n, O)``, ``W`` ``(O, D)``.

Notation (row convention): a key ``k`` is mapped to ``W k + b``; the *residual* of a key is
``r = v − (W k + b)``, what the edit must add. ``C`` is the key second moment and ``C⁻¹`` its
(safe) inverse.

* Rank one (Bau et al. 2020, eq. 6): ``ΔW = Λ dᵀ`` with ``d = C⁻¹ k* / (k*ᵀ C⁻¹ k*)``.
  Among all updates that change the output on ``k*`` by ``Λ``, it has the least effect on keys
  distributed like ``C`` (minimum ``tr(ΔW C ΔWᵀ)``), and it leaves every key ``x`` with
  ``k*ᵀ C⁻¹ x = 0`` untouched. ``Λ`` is fitted by weighted least squares on the masked keys.
* Multi-key: ``ΔW = R Kᵀ (λC + K Kᵀ)⁻¹`` (columns are keys) minimises
  ``Σ w_i ‖r_i − ΔW k_i‖² + λ tr(ΔW C ΔWᵀ)``; as ``λ → 0`` it interpolates every key.
* Gradient (Santurkar et al. 2021): ``ΔW = Λ Dᵀ`` with fixed directions ``D`` and ``Λ`` fitted by
  Adam on the layer's actual output maps, optionally after later modules (``post``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from pipeline.editing.covariance import Covariance, regularized_spectrum, safe_inverse
from pipeline.editing.layers import EditableLayer, PostFn, layer_forward, output_positions


def _weights(weights: Tensor | None, n: int, like: Tensor) -> Tensor:
    if weights is None:
        return torch.ones(n, dtype=like.dtype, device=like.device)
    weights = weights.reshape(-1).to(like)
    if weights.shape[0] != n:
        raise ValueError(f"{weights.shape[0]} weights for {n} keys")
    return weights


def residuals(weight: Tensor, keys: Tensor, values: Tensor, bias: Tensor | None = None) -> Tensor:
    """``r_i = v_i − (W k_i + b)``: what each key's output is missing, ``(n, O)``."""
    outputs = keys @ weight.T
    if bias is not None:
        outputs = outputs + bias
    return values - outputs


def summarize_keys(keys: Tensor, weights: Tensor | None = None, mode: str = "mean") -> Tensor:
    """One key ``k*`` for several: the weighted mean, or the top right singular vector.

    ``svd`` picks the direction carrying most of the keys' weighted energy, which is more robust
    than the mean when keys of several exemplars point in different directions; its sign is
    arbitrary, which does not matter because ``d(−k) = −d(k)`` and ``Λ`` absorbs the sign.
    """
    keys = keys.double()
    w = _weights(weights, keys.shape[0], keys)
    if mode == "mean":
        return (keys * w[:, None]).sum(0) / w.sum()
    if mode == "svd":
        _, _, vh = torch.linalg.svd(keys * w.sqrt()[:, None], full_matrices=False)
        return vh[0]
    raise ValueError(f"unknown key summary {mode!r}; use 'mean' or 'svd'")


def rank_one_direction(k_star: Tensor, c_inv: Tensor | None = None) -> Tensor:
    """``d = C⁻¹ k* / (k*ᵀ C⁻¹ k*)``, scaled so that ``dᵀ k* = 1`` (``C⁻¹ = I`` if None)."""
    k_star = k_star.double()
    direction = k_star if c_inv is None else c_inv.to(k_star) @ k_star
    norm = k_star @ direction
    if norm <= 0:
        raise ValueError("k*ᵀ C⁻¹ k* must be positive; is the key zero?")
    return direction / norm


def fit_lambda(res: Tensor, projections: Tensor, weights: Tensor | None = None) -> Tensor:
    """Least-squares ``Λ`` for ``Λ s_i ≈ r_i``: ``Λ = Σ w s r / Σ w s²`` (``(O,)``)."""
    res, s = res.double(), projections.double()
    w = _weights(weights, s.shape[0], s)
    denom = (w * s * s).sum()
    if denom <= 0:
        return res.new_zeros(res.shape[1])
    return ((w * s)[:, None] * res).sum(0) / denom


def fit_lambda_matrix(res: Tensor, projections: Tensor, weights: Tensor | None = None) -> Tensor:
    """Least-squares ``Λ`` ``(O, r)`` for ``Λ s_i ≈ r_i`` with ``s_i = Dᵀ k_i`` ``(r,)``.

    ``Λ = Rᵀ W S (Sᵀ W S)⁻¹``; the r x r system is solved with :func:`safe_inverse` so that
    directions the keys never excite get a zero (not an infinite) coefficient.
    """
    res, s = res.double(), projections.double()
    w = _weights(weights, s.shape[0], s)
    gram = (s * w[:, None]).T @ s
    return (res.T @ (s * w[:, None])) @ safe_inverse(gram, floor=1e-12)


@dataclass
class RankOneUpdate:
    """``ΔW = outer(lam, direction)`` and the key ``k*`` it was built from (all float64)."""

    lam: Tensor
    direction: Tensor
    k_star: Tensor

    @property
    def delta(self) -> Tensor:
        return torch.outer(self.lam, self.direction)


def rank_one_closed_form(
    weight: Tensor,
    keys: Tensor,
    values: Tensor,
    weights: Tensor | None = None,
    bias: Tensor | None = None,
    c_inv: Tensor | None = None,
    key_summary: str = "mean",
) -> RankOneUpdate:
    """Closed-form rank-one rewrite of ``W`` so that ``(W + Λ dᵀ) k_i + b ≈ v_i``.

    With one key this is exact; with several, ``Λ`` is the weighted least-squares fit along the
    single direction ``d`` (a rank-one edit cannot interpolate arbitrary residuals).
    """
    weight, keys, values = weight.double(), keys.double(), values.double()
    bias = None if bias is None else bias.double()
    k_star = summarize_keys(keys, weights, key_summary)
    direction = rank_one_direction(k_star, c_inv)
    lam = fit_lambda(residuals(weight, keys, values, bias), keys @ direction, weights)
    return RankOneUpdate(lam=lam, direction=direction, k_star=k_star)


def multikey_update(
    weight: Tensor,
    keys: Tensor,
    values: Tensor,
    weights: Tensor | None = None,
    bias: Tensor | None = None,
    covariance: Covariance | None = None,
    lam: float = 1e-2,
    cov_floor: float = 1e-6,
    cov_ridge: float = 0.0,
    solve_floor: float = 1e-12,
) -> Tensor:
    """``ΔW = R Kᵀ (λC + K Kᵀ)⁻¹`` (keys as columns, weighted), float64 ``(O, D)``.

    It minimises ``Σ w_i ‖r_i − ΔW k_i‖² + λ tr(ΔW C ΔWᵀ)``. ``C`` is first regularised like
    in :func:`safe_inverse` (``None`` means ``I``; a :class:`CovarianceFactor` skips the
    eigendecomposition) and rescaled so that ``tr(C)`` equals the
    mean weighted energy ``‖k‖²`` of the given keys: ``λ`` is then scale-free, in units of
    "keys" (``λ = 1`` weighs the prior like one average key), whatever ``C`` or the key
    magnitudes are. With ``A = diag(√w) K`` and ``R̃ = diag(√w) R`` it is solved in the n x n
    "kernel" form ``ΔW = R̃ᵀ (λI + A C⁻¹ Aᵀ)⁻¹ A C⁻¹`` (push-through identity) when ``n ≤ D``
    — exact at ``λ = 0``, where every independent key is interpolated — and in the D x D form
    otherwise.
    """
    weight, keys, values = weight.double(), keys.double(), values.double()
    bias = None if bias is None else bias.double()
    n, dim = keys.shape
    w = _weights(weights, n, keys)
    a = keys * w.sqrt()[:, None]
    r = residuals(weight, keys, values, bias) * w.sqrt()[:, None]
    if covariance is None:
        covariance = torch.eye(dim, dtype=torch.float64, device=keys.device)
    spectrum, vectors = regularized_spectrum(covariance, cov_floor, cov_ridge)
    spectrum, vectors = spectrum.to(keys), vectors.to(keys)
    energy = float((a * a).sum() / w.sum())
    if energy > 0:
        spectrum = spectrum * (energy / float(spectrum.sum()))
    if n <= dim:
        a_cinv = a @ ((vectors / spectrum) @ vectors.T)
        gram = a_cinv @ a.T + lam * torch.eye(n, dtype=torch.float64, device=keys.device)
        return (safe_inverse(gram, floor=solve_floor) @ r).T @ a_cinv
    prior = (vectors * spectrum) @ vectors.T
    return (r.T @ a) @ safe_inverse(lam * prior + a.T @ a, floor=solve_floor)


def low_rank_directions(
    keys: Tensor, weights: Tensor | None, c_inv: Tensor | None, rank: int
) -> Tensor:
    """``D`` ``(D, r)``: top-``r`` right singular vectors of the ``C⁻¹``-whitened keys ``K C⁻¹``.

    As in Bau et al., each row ``C⁻¹ k_i`` is the rank-one direction for key ``k_i``; the SVD
    keeps the ``r`` directions that serve the (weighted) keys best. Each column is rescaled so
    that its weighted RMS projection on the keys is 1, so ``Λ`` is in units of the values.
    """
    keys = keys.double()
    w = _weights(weights, keys.shape[0], keys)
    whitened = keys if c_inv is None else keys @ c_inv.to(keys)
    _, _, vh = torch.linalg.svd(whitened * w.sqrt()[:, None], full_matrices=False)
    if rank > vh.shape[0]:
        raise ValueError(f"rank {rank} exceeds the {vh.shape[0]} available key directions")
    directions = vh[:rank].T
    rms = (((keys @ directions) ** 2) * w[:, None]).sum(0).div(w.sum()).sqrt()
    return directions / rms.clamp_min(torch.finfo(torch.float64).tiny)


def span_projector(directions: Tensor) -> Tensor:
    """``P = D (DᵀD)⁻¹ Dᵀ``: ``ΔW P`` keeps only the part of ``ΔW`` acting along span(D)."""
    directions = directions.double()
    return directions @ torch.linalg.solve(directions.T @ directions, directions.T)


def weighted_output_loss(
    outputs: Tensor, targets: Tensor, weights: Tensor, loss: str = "l2"
) -> Tensor:
    """Mask-weighted mean over positions of the per-position L1 / squared-L2 channel mean.

    ``outputs``/``targets``: ``(B, L, O)``, ``weights``: ``(B, L)``.
    """
    diff = outputs - targets
    if loss == "l2":
        per_position = diff.pow(2).mean(-1)
    elif loss == "l1":
        per_position = diff.abs().mean(-1)
    else:
        raise ValueError(f"unknown loss {loss!r}; use 'l1' or 'l2'")
    return (per_position * weights).sum() / weights.sum()


@torch.enable_grad()
def optimise_update(
    layer: EditableLayer,
    weight: Tensor,
    inputs: Tensor,
    target: Tensor,
    weights: Tensor,
    directions: Tensor,
    *,
    post: PostFn | None = None,
    loss: str = "l2",
    lr: float = 1e-2,
    steps: int = 400,
    schedule: str = "cosine",
    parametrization: str = "low-rank",
    project_every: int = 1,
    patience: int = 0,
    min_improvement: float = 1e-3,
) -> Tensor:
    """Fit ``ΔW`` (matrix ``(O, D)``) by Adam so the edited layer reproduces ``target``.

    ``inputs`` are the layer inputs on the transformed images, ``target`` the layer outputs on
    the originals (raw layout), ``weights`` ``(B, L)`` mask weights per position. ``post``
    (e.g. the following BatchNorm + ReLU) is applied to both before the loss, so the values
    are compared where they matter downstream; it must keep the spatial / token layout.

    ``parametrization='low-rank'`` optimises ``Λ`` in ``ΔW = Λ Dᵀ`` (constrained by
    construction); ``'full'`` optimises a full ``ΔW`` by projected gradient descent as in Bau et
    al.: the gradient is projected onto span(D) at every step and ``ΔW`` itself every
    ``project_every`` steps (Adam's per-coordinate scaling lets it drift out of the span) and
    after the last step; its learning rate is rescaled by ``mean‖d_j‖ / √D`` so ``lr`` has
    about the same meaning in both forms. Runs in the layer's dtype; returns a detached ``ΔW``.

    ``patience > 0``: stop early on a loss plateau — when the best loss has not fallen by a
    relative ``min_improvement`` within the last ``patience`` steps (so ``steps`` can be set
    for convergence, thousands, without paying for them once the fit has settled).
    """
    if project_every < 1:
        raise ValueError("project_every must be at least 1")
    dtype = layer.weight.dtype
    base = weight.detach().to(dtype)
    dirs = directions.detach().to(dtype=dtype, device=base.device)
    with torch.no_grad():
        goal = output_positions(layer, post(target) if post is not None else target)
    weights = weights.to(dtype)
    if parametrization == "low-rank":
        param = torch.zeros(base.shape[0], dirs.shape[1], dtype=dtype, device=base.device)
    elif parametrization == "full":
        param = torch.zeros_like(base)
        # x ↦ x P with P = D (DᵀD)⁻¹ Dᵀ, applied as (x D)((DᵀD)⁻¹Dᵀ): O(O·D·r) per step
        # instead of O(O·D²) for the dense D x D projector (same result up to rounding).
        coefficients = torch.linalg.solve(dirs.double().T @ dirs.double(), dirs.double().T)
        coefficients = coefficients.to(dtype)

        def project(matrix: Tensor) -> Tensor:
            return (matrix @ dirs) @ coefficients

        # Adam moves every one of the D entries of a row by ~lr, a row change of norm
        # ~lr·√D, where the low-rank form moves a row by ~lr·‖d‖; rescale so that ``lr``
        # means about the same output change in both parametrizations.
        lr = lr * float(dirs.norm(dim=0).mean()) / math.sqrt(base.shape[1])
    else:
        raise ValueError(f"unknown parametrization {parametrization!r}; use 'low-rank' or 'full'")
    param.requires_grad_(True)

    def delta() -> Tensor:
        return param @ dirs.T if parametrization == "low-rank" else param

    optimizer = torch.optim.Adam([param], lr=lr)
    scheduler = _scheduler(optimizer, schedule, steps)
    best, best_step = math.inf, 0
    for step in range(steps):
        out = layer_forward(layer, inputs, base + delta())
        out = post(out) if post is not None else out
        value = weighted_output_loss(output_positions(layer, out), goal, weights, loss)
        current = float(value.detach())
        if current < best * (1.0 - min_improvement):
            best, best_step = current, step
        elif patience and step - best_step >= patience:
            if parametrization == "full":
                with torch.no_grad():
                    param.copy_(project(param))
            break
        (grad,) = torch.autograd.grad(value, [param])
        # Projected gradient: at the constrained optimum the projected gradient vanishes, so
        # Adam (whose per-coordinate scaling would otherwise leave the span) settles there.
        param.grad = project(grad) if parametrization == "full" else grad
        optimizer.step()
        scheduler.step()
        if parametrization == "full" and ((step + 1) % project_every == 0 or step + 1 == steps):
            with torch.no_grad():
                param.copy_(project(param))
    return delta().detach()


def _scheduler(
    optimizer: torch.optim.Optimizer, schedule: str, steps: int
) -> torch.optim.lr_scheduler.LRScheduler:
    """Constant or cosine-to-zero learning rate; cosine lets Adam settle on the minimum."""
    if schedule == "constant":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _step: 1.0)
    if schedule == "cosine":
        total = max(steps, 1)
        return torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * min(step, total) / total))
        )
    raise ValueError(f"unknown schedule {schedule!r}; use 'constant' or 'cosine'")
