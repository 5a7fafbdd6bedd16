"""Key statistics: streaming equals batch, masking, cache round trip, safe inverse."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.editing.covariance import (
    CovarianceFactor,
    KeyStatistics,
    batch_second_moment,
    cached_key_statistics,
    collect_key_statistics,
    covariance_cache_path,
    safe_inverse,
    safe_solve,
    weights_digest,
)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors gain nothing from intra-op threads, and on a busy 2-core machine OpenMP
    barriers make them many times slower; restored after this module."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 5, 3, stride=2))


def _batches(count: int = 3, size: int = 8) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    return [torch.randn(2, 3, size, size, generator=gen) for _ in range(count)]


def test_streamed_statistics_equal_one_batch_computation() -> None:
    model = _model()
    batches = _batches()
    stats = collect_key_statistics(model, "2", batches)

    inputs = model[1](model[0](torch.cat(batches)))
    keys = F.unfold(inputs, 3, stride=2).transpose(1, 2).reshape(-1, 36).double()
    torch.testing.assert_close(stats.covariance(), keys.T @ keys / keys.shape[0])
    torch.testing.assert_close(stats.mean(), keys.mean(0))
    assert stats.count == keys.shape[0]


def test_masked_statistics_weight_keys_by_mask_area() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 1))
    images = _batches(2, size=4)
    masks = [torch.zeros(2, 1, 4, 4), torch.ones(2, 1, 4, 4)]
    masks[0][:, :, :2] = 1.0
    masks[0][1] = 0.5
    stats = collect_key_statistics(model, "0", list(zip(images, masks, strict=True)))

    keys = torch.cat(images).permute(0, 2, 3, 1).reshape(-1, 3)
    weights = torch.cat(masks).reshape(-1)
    moment, total = batch_second_moment(keys, weights)
    torch.testing.assert_close(stats.covariance(), moment / total)
    assert stats.count == pytest.approx(float(weights.sum()))


def test_update_order_does_not_matter_and_checks_shapes() -> None:
    gen = torch.Generator().manual_seed(2)
    keys = torch.randn(50, 6, generator=gen)
    forward, backward = KeyStatistics(6), KeyStatistics(6)
    for chunk in keys.split(7):
        forward.update(chunk)
    for chunk in reversed(keys.split(7)):
        backward.update(chunk)
    torch.testing.assert_close(forward.covariance(), backward.covariance(), rtol=1e-14, atol=0)
    with pytest.raises(ValueError):
        forward.update(torch.randn(3, 5))
    with pytest.raises(ValueError):
        KeyStatistics(6).covariance()


def test_cache_path_depends_on_every_key_part(tmp_path: Path) -> None:
    base = covariance_cache_path(tmp_path, "resnet50", "layer4.0.conv2", "imagenet-val-1k")
    assert base.suffix == ".safetensors" and base.is_relative_to(tmp_path)
    assert base == covariance_cache_path(tmp_path, "resnet50", "layer4.0.conv2", "imagenet-val-1k")
    others = {
        covariance_cache_path(tmp_path, "resnet18", "layer4.0.conv2", "imagenet-val-1k"),
        covariance_cache_path(tmp_path, "resnet50", "layer4.1.conv2", "imagenet-val-1k"),
        covariance_cache_path(tmp_path, "resnet50", "layer4.0.conv2", "coco"),
        covariance_cache_path(
            tmp_path, "resnet50", "layer4.0.conv2", "imagenet-val-1k", weights_hash="abc"
        ),
    }
    assert base not in others and len(others) == 4


def test_cache_round_trip_and_cached_statistics(tmp_path: Path) -> None:
    model = _model()
    stats = collect_key_statistics(model, "2", _batches())
    path = stats.save(tmp_path / "c" / "cov.safetensors", {"layer": "2"})
    loaded, metadata = KeyStatistics.load(path, expect={"layer": "2"})
    assert torch.equal(loaded.second_moment_sum, stats.second_moment_sum)
    assert torch.equal(loaded.key_sum, stats.key_sum)
    assert loaded.count == stats.count and metadata["layer"] == "2"
    with pytest.raises(ValueError, match="layer"):
        KeyStatistics.load(path, expect={"layer": "0"})

    first = cached_key_statistics(
        model, "2", _batches(), cache_dir=tmp_path, model_id="toy", image_set_id="rand"
    )
    # Second call must come from the cache: no batches are given at all.
    second = cached_key_statistics(
        model, "2", [], cache_dir=tmp_path, model_id="toy", image_set_id="rand"
    )
    assert torch.equal(first.covariance(), second.covariance())
    digest = weights_digest(model)
    with torch.no_grad():
        model[0].bias.add_(1.0)
    assert weights_digest(model) != digest
    # Other weights, other cache entry: nothing cached, and nothing to compute it from.
    with pytest.raises(ValueError, match="no batches"):
        cached_key_statistics(
            model, "2", [], cache_dir=tmp_path, model_id="toy", image_set_id="rand"
        )


def test_safe_inverse_is_exact_when_invertible_and_finite_when_singular() -> None:
    gen = torch.Generator().manual_seed(3)
    a = torch.randn(6, 6, generator=gen, dtype=torch.float64)
    spd = a @ a.T + 0.5 * torch.eye(6, dtype=torch.float64)
    torch.testing.assert_close(safe_inverse(spd, floor=0.0), torch.linalg.inv(spd))

    low_rank = a[:, :2] @ a[:, :2].T  # rank 2
    inverse = safe_inverse(low_rank)
    assert torch.isfinite(inverse).all()
    torch.testing.assert_close(inverse, inverse.T)
    # On its range the floored inverse still inverts the matrix.
    range_basis = torch.linalg.eigh(low_rank).eigenvectors[:, -2:]
    torch.testing.assert_close(low_rank @ inverse @ range_basis, range_basis)
    # The floor is relative: the largest inverse eigenvalue is 1 / (floor · λ_max).
    lam_max = float(torch.linalg.eigvalsh(low_rank).max())
    assert float(torch.linalg.eigvalsh(inverse).max()) == pytest.approx(1e6 / lam_max, rel=1e-6)

    factor = CovarianceFactor.of(low_rank)  # one eigendecomposition, reusable
    torch.testing.assert_close(safe_inverse(factor), inverse)
    torch.testing.assert_close(factor.matrix(), low_rank)

    assert torch.isfinite(safe_inverse(torch.zeros(3, 3))).all()
    ridge = safe_inverse(low_rank, floor=0.0, ridge=0.1)
    assert torch.isfinite(ridge).all()
    torch.testing.assert_close(
        safe_solve(spd, torch.ones(6), floor=0.0), torch.linalg.solve(spd, torch.ones(6).double())
    )
