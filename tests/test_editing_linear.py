"""Exact checks of the rewrite math on linear layers with known keys (float64)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pipeline.editing.covariance import safe_inverse
from pipeline.editing.exemplars import EditExemplars
from pipeline.editing.layers import weight_matrix
from pipeline.editing.methods import EditInputs, RewriteClosed
from pipeline.editing.rewrite import (
    fit_lambda_matrix,
    low_rank_directions,
    multikey_update,
    optimise_update,
    rank_one_closed_form,
    rank_one_direction,
    residuals,
    span_projector,
    summarize_keys,
)

DTYPE = torch.float64


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors gain nothing from intra-op threads, and on a busy 2-core machine OpenMP
    barriers make them many times slower; restored after this module."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _spd(dim: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    a = torch.randn(dim, dim, generator=gen, dtype=DTYPE)
    return a @ a.T / dim + 0.1 * torch.eye(dim, dtype=DTYPE)


def _problem(n: int, dim: int = 7, out: int = 5, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    weight = torch.randn(out, dim, generator=gen, dtype=DTYPE)
    bias = torch.randn(out, generator=gen, dtype=DTYPE)
    keys = torch.randn(n, dim, generator=gen, dtype=DTYPE)
    values = torch.randn(n, out, generator=gen, dtype=DTYPE)
    return weight, bias, keys, values


def test_rank_one_maps_key_to_value_and_spares_c_orthogonal_keys() -> None:
    weight, bias, keys, values = _problem(n=1)
    cov = _spd(7, seed=1)
    c_inv = safe_inverse(cov, floor=0.0)
    update = rank_one_closed_form(weight, keys, values, bias=bias, c_inv=c_inv)
    delta = update.delta

    edited = keys @ (weight + delta).T + bias
    torch.testing.assert_close(edited, values, rtol=0, atol=1e-12)
    assert torch.linalg.matrix_rank(delta) == 1
    assert float(update.direction @ update.k_star) == pytest.approx(1.0, abs=1e-12)

    # Any x with k*ᵀ C⁻¹ x = 0 is left exactly where it was.
    k_star = keys[0]
    gen = torch.Generator().manual_seed(2)
    for _ in range(5):
        y = torch.randn(7, generator=gen, dtype=DTYPE)
        x = y - (k_star @ c_inv @ y) / (k_star @ c_inv @ k_star) * k_star
        assert abs(float(k_star @ c_inv @ x)) < 1e-12
        assert float((delta @ x).abs().max()) < 1e-12


def test_rank_one_lambda_is_weighted_least_squares_along_d() -> None:
    weight, bias, keys, values = _problem(n=6)
    weights = torch.linspace(0.2, 1.0, 6, dtype=DTYPE)
    update = rank_one_closed_form(weight, keys, values, weights, bias, key_summary="svd")
    res = residuals(weight, keys, values, bias)
    s = keys @ update.direction

    def loss(lam: torch.Tensor) -> torch.Tensor:
        return (weights[:, None] * (res - s[:, None] * lam) ** 2).sum()

    lam = update.lam.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(loss(lam), [lam])
    assert float(grad.abs().max()) < 1e-10
    assert float(summarize_keys(keys, weights, "svd").norm()) == pytest.approx(1.0)


def test_gradient_rewrite_converges_to_closed_form() -> None:
    weight, bias, keys, values = _problem(n=6, seed=3)
    weights = torch.tensor([[1.0, 0.5, 0.0, 1.0, 0.25, 1.0]], dtype=DTYPE)
    cov = _spd(7, seed=4)
    c_inv = safe_inverse(cov, floor=0.0)
    layer = nn.Linear(7, 5).double()
    with torch.no_grad():
        layer.weight.copy_(weight)
        layer.bias.copy_(bias)
    keep = weights[0] > 0
    closed = rank_one_closed_form(
        weight, keys[keep], values[keep], weights[0][keep], bias, c_inv
    ).delta
    direction = rank_one_direction(summarize_keys(keys[keep], weights[0][keep]), c_inv)

    for parametrization in ("low-rank", "full"):
        delta = optimise_update(
            layer,
            weight,
            keys[None],
            values[None],
            weights,
            direction[:, None],
            loss="l2",
            lr=0.05,
            steps=600,
            parametrization=parametrization,
        )
        error = float((delta - closed).norm() / closed.norm())
        assert error < 1e-3, (parametrization, error)
        assert torch.linalg.matrix_rank(delta, atol=1e-9) == 1
    assert torch.equal(layer.weight, weight)  # the layer was only read


def test_multikey_interpolates_every_key_as_lambda_vanishes() -> None:
    weight, bias, keys, values = _problem(n=3, dim=8, seed=5)
    cov = _spd(8, seed=6)
    for lam in (1e-6, 0.0):
        delta = multikey_update(weight, keys, values, bias=bias, covariance=cov, lam=lam)
        edited = keys @ (weight + delta).T + bias
        torch.testing.assert_close(edited, values, rtol=0, atol=1e-5 if lam else 1e-9)
    # Large λ: the prior wins and the update shrinks towards zero.
    big = multikey_update(weight, keys, values, bias=bias, covariance=cov, lam=1e6)
    assert float(big.norm()) < 1e-4 * float(weight.norm())


def test_multikey_matches_the_normal_equations_in_both_forms() -> None:
    cov = _spd(6, seed=7)
    lam = 0.3
    for n in (4, 10):  # n ≤ D: kernel form; n > D: D x D form
        weight, bias, keys, values = _problem(n=n, dim=6, seed=8 + n)
        weights = torch.linspace(0.3, 1.0, n, dtype=DTYPE)
        delta = multikey_update(weight, keys, values, weights, bias, cov, lam=lam, cov_floor=0.0)
        # λ is scale-free: the prior C is rescaled to the keys' mean weighted energy.
        energy = (weights[:, None] * keys**2).sum() / weights.sum()
        prior = cov * energy / cov.trace()
        res = residuals(weight, keys, values, bias)
        kwk = (keys * weights[:, None]).T @ keys
        expected = (res * weights[:, None]).T @ keys @ torch.linalg.inv(lam * prior + kwk)
        torch.testing.assert_close(delta, expected, rtol=1e-9, atol=1e-10)


def test_rank_r_closed_form_is_exact_for_r_keys_and_spares_orthogonal_keys() -> None:
    weight, bias, keys, values = _problem(n=3, dim=8, seed=9)
    cov = _spd(8, seed=10)
    c_inv = safe_inverse(cov, floor=0.0)
    directions = low_rank_directions(keys, None, c_inv, rank=3)
    lam = fit_lambda_matrix(residuals(weight, keys, values, bias), keys @ directions)
    delta = lam @ directions.T
    torch.testing.assert_close(keys @ (weight + delta).T + bias, values, rtol=0, atol=1e-10)
    assert torch.linalg.matrix_rank(delta) == 3
    # x with k_iᵀ C⁻¹ x = 0 for every key is not affected.
    basis = torch.linalg.svd(keys @ c_inv).Vh[3:]
    assert float((basis @ delta.T).abs().max()) < 1e-10
    # The projector onto span(D) is idempotent and fixes D.
    proj = span_projector(directions)
    torch.testing.assert_close(proj @ proj, proj)
    torch.testing.assert_close(proj @ directions, directions)


def test_edit_on_a_toy_pointwise_model_maps_transformed_key_to_original_value() -> None:
    """End to end through ``edit``: a 1x1 conv model, one masked pixel, exact rewrite."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.Flatten(), nn.Linear(4 * 9, 3)).double()
    original = torch.randn(1, 3, 3, 3, dtype=DTYPE)
    transformed = original.clone()
    transformed[0, :, 1, 1] = torch.tensor([2.0, -1.0, 0.5], dtype=DTYPE)
    masks = torch.zeros(1, 1, 3, 3, dtype=DTYPE)
    masks[0, 0, 1, 1] = 1.0
    exemplars = EditExemplars(transformed, original, masks, torch.tensor([1]))
    before = {k: v.clone() for k, v in model.state_dict().items()}

    result = RewriteClosed().edit(model, "0", EditInputs(exemplars, case_id="toy"))

    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert set(result.deltas) == {"0.weight"}
    assert result.metadata["case_id"] == "toy" and result.metadata["layer"] == "0"
    conv = model[0]
    new_weight = weight_matrix(conv) + result.deltas["0.weight"].reshape(4, 3)
    key, value = transformed[0, :, 1, 1], conv(original)[0, :, 1, 1]
    torch.testing.assert_close(new_weight @ key + conv.bias, value, rtol=0, atol=1e-12)
