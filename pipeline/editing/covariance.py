"""Key statistics ``C = E[k kᵀ]`` of one layer, streamed, cached, and inverted safely.

The rewrite update ``ΔW = Λ dᵀ`` with ``d ∝ C⁻¹ k*`` changes the layer's output by
``Λ (dᵀ k)`` on any key ``k``; whitening by ``C`` makes that change small on the keys the layer
usually sees (Bau et al. 2020). ``C`` is the *uncentred* second moment, as in the paper: the
bias of the layer is not edited, so the mean of the keys must be affected like any direction.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from pipeline.editing.exemplars import position_weights
from pipeline.editing.layers import eval_mode, layer_io, model_device, resolve_layer, unfold_keys
from pipeline.hashing import stable_key
from pipeline.store.atomic import atomic_write_bytes

COVARIANCE_FORMAT = "conceptswap.key-covariance.v1"


def batch_second_moment(keys: Tensor, weights: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """(Σ w k kᵀ, Σ w) in float64 for keys ``(n, D)`` and optional weights ``(n,)``."""
    keys = keys.reshape(-1, keys.shape[-1]).double()
    if weights is None:
        return keys.T @ keys, torch.tensor(float(keys.shape[0]), dtype=torch.float64)
    weights = weights.reshape(-1).double()
    return (keys * weights[:, None]).T @ keys, weights.sum()


@dataclass
class KeyStatistics:
    """Running ``Σ w k kᵀ``, ``Σ w k`` and ``Σ w`` in float64; ``covariance()`` is their ratio.

    Summing in float64 keeps the statistics of millions of keys exact to ~1e-12 relative,
    independent of the batch order, so streamed and one-shot results agree.
    """

    dim: int
    second_moment_sum: Tensor = field(init=False)
    key_sum: Tensor = field(init=False)
    count: float = 0.0

    def __post_init__(self) -> None:
        self.second_moment_sum = torch.zeros(self.dim, self.dim, dtype=torch.float64)
        self.key_sum = torch.zeros(self.dim, dtype=torch.float64)

    def update(self, keys: Tensor, weights: Tensor | None = None) -> None:
        """Add keys ``(..., D)`` with optional per-key weights (mask values) of shape ``(...)``."""
        if keys.shape[-1] != self.dim:
            raise ValueError(f"keys have dimension {keys.shape[-1]}, statistics {self.dim}")
        flat = keys.reshape(-1, self.dim).double()
        w = None if weights is None else weights.reshape(-1).to(flat)
        if w is not None and w.shape[0] != flat.shape[0]:
            raise ValueError(f"{w.shape[0]} weights for {flat.shape[0]} keys")
        moment, total = batch_second_moment(flat, w)
        key_sum = flat.sum(0) if w is None else (flat * w[:, None]).sum(0)
        self.second_moment_sum += moment.cpu()
        self.key_sum += key_sum.cpu()
        self.count += float(total)

    def covariance(self) -> Tensor:
        """``C = E[k kᵀ]`` (float64). Raises if no key (or only zero weight) was added."""
        if self.count <= 0:
            raise ValueError("no keys were accumulated")
        return self.second_moment_sum / self.count

    def mean(self) -> Tensor:
        if self.count <= 0:
            raise ValueError("no keys were accumulated")
        return self.key_sum / self.count

    def save(self, path: str | Path, metadata: dict[str, str] | None = None) -> Path:
        """Write the running sums to a ``.safetensors`` file, atomically (parents created)."""
        from safetensors.torch import save

        tensors = {
            "second_moment_sum": self.second_moment_sum.contiguous(),
            "key_sum": self.key_sum.contiguous(),
            "count": torch.tensor(self.count, dtype=torch.float64),
        }
        meta = {"format": COVARIANCE_FORMAT, **(metadata or {})}
        data = save(tensors, metadata={k: str(v) for k, v in meta.items()})
        return atomic_write_bytes(path, data)

    @classmethod
    def load(
        cls, path: str | Path, expect: dict[str, str] | None = None
    ) -> tuple[KeyStatistics, dict[str, str]]:
        """Read statistics saved by :meth:`save`; ``expect`` entries must match the metadata."""
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as handle:
            metadata = dict(handle.metadata() or {})
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
        if metadata.get("format") != COVARIANCE_FORMAT:
            raise ValueError(f"{path}: not a key-covariance file ({metadata.get('format')!r})")
        for key, value in (expect or {}).items():
            if metadata.get(key) != str(value):
                raise ValueError(
                    f"{path}: metadata {key}={metadata.get(key)!r} does not match {value!r}"
                )
        stats = cls(int(tensors["key_sum"].shape[0]))
        stats.second_moment_sum = tensors["second_moment_sum"]
        stats.key_sum = tensors["key_sum"]
        stats.count = float(tensors["count"])
        return stats, metadata


def collect_key_statistics(
    model: nn.Module,
    layer_name: str,
    batches: Iterable[Tensor | tuple[Tensor, Tensor]],
    *,
    stats: KeyStatistics | None = None,
) -> KeyStatistics:
    """Stream ``C`` over image batches, or ``(images, masks)`` batches for masked statistics.

    Masks ``(B, 1, H, W)`` weight each key by the area share of its position that the mask
    covers (see :func:`pipeline.editing.exemplars.position_weights`). The model runs in eval
    mode under ``no_grad`` and stops right after the layer.
    """
    layer = resolve_layer(model, layer_name)
    device = model_device(model)
    with eval_mode(model):
        for batch in batches:
            images, masks = batch if isinstance(batch, tuple | list) else (batch, None)
            inputs, outputs = layer_io(model, layer_name, images.to(device))
            keys = unfold_keys(layer, inputs)
            weights = None
            if masks is not None:
                weights = position_weights(model, layer, outputs, masks.to(device))
            if stats is None:
                stats = KeyStatistics(keys.shape[-1])
            stats.update(keys, weights)
    if stats is None:
        raise ValueError("no batches were given")
    return stats


def weights_digest(model: nn.Module, length: int = 16) -> str:
    """Hash of the model's state dict (names, dtypes, shapes, bytes): the cache's weights key."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        data = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{data.dtype}:{tuple(data.shape)}:".encode())
        digest.update(data.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:length]


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "_"


def covariance_cache_path(
    cache_dir: str | Path,
    model_id: str,
    layer: str,
    image_set_id: str,
    *,
    weights_hash: str = "",
) -> Path:
    """Cache file of ``C`` keyed by (model id, weights hash, layer, image-set id).

    Readable prefix for humans, hash suffix for uniqueness: two models with the same id but
    different weights (fine-tuned, edited) never share a file.
    """
    key = stable_key(model_id, weights_hash, layer, image_set_id, length=16)
    return (
        Path(cache_dir)
        / _slug(model_id)
        / f"{_slug(layer)}__{_slug(image_set_id)}__{key}.safetensors"
    )


def cached_key_statistics(
    model: nn.Module,
    layer_name: str,
    batches: Iterable[Tensor | tuple[Tensor, Tensor]],
    *,
    cache_dir: str | Path,
    model_id: str,
    image_set_id: str,
    weights_hash: str | None = None,
) -> KeyStatistics:
    """Load ``C`` from the cache, or stream it over ``batches`` and save it."""
    weights_hash = weights_digest(model) if weights_hash is None else weights_hash
    path = covariance_cache_path(
        cache_dir, model_id, layer_name, image_set_id, weights_hash=weights_hash
    )
    meta = {
        "model_id": model_id,
        "weights_hash": weights_hash,
        "layer": layer_name,
        "image_set_id": image_set_id,
    }
    if path.is_file():
        return KeyStatistics.load(path, expect=meta)[0]
    stats = collect_key_statistics(model, layer_name, batches)
    stats.save(path, meta)
    return stats


@dataclass(frozen=True)
class CovarianceFactor:
    """Eigendecomposition of a symmetric ``C`` (float64), computed once per layer.

    ``eigh`` of a D x D matrix costs O(D³) (seconds for D = 4608, a ResNet-50 layer4 3x3
    conv); every edit of the same layer can reuse the factor instead of ``C`` itself.
    """

    eigenvalues: Tensor
    eigenvectors: Tensor

    @classmethod
    def of(cls, matrix: Tensor) -> CovarianceFactor:
        matrix = matrix.double()
        values, vectors = torch.linalg.eigh((matrix + matrix.T) / 2)
        return cls(values, vectors)

    @property
    def dim(self) -> int:
        return int(self.eigenvalues.shape[0])

    def matrix(self) -> Tensor:
        return (self.eigenvectors * self.eigenvalues) @ self.eigenvectors.T

    def to(self, device: torch.device | str) -> CovarianceFactor:
        return CovarianceFactor(self.eigenvalues.to(device), self.eigenvectors.to(device))


Covariance = Tensor | CovarianceFactor


def as_factor(covariance: Covariance) -> CovarianceFactor:
    """``covariance`` as a :class:`CovarianceFactor` (eigendecomposed if it is a matrix)."""
    if isinstance(covariance, CovarianceFactor):
        return covariance
    return CovarianceFactor.of(covariance)


def regularized_spectrum(
    matrix: Covariance, floor: float = 1e-6, ridge: float = 0.0
) -> tuple[Tensor, Tensor]:
    """(eigenvalues, eigenvectors) of the symmetrised matrix after ridge shift and floor."""
    factor = as_factor(matrix)
    values, vectors = factor.eigenvalues, factor.eigenvectors
    scale = float(values.max()) if values.numel() and float(values.max()) > 0 else 1.0
    values = values + ridge * scale
    return values.clamp_min(max(floor * scale, torch.finfo(torch.float64).tiny)), vectors


def safe_inverse(matrix: Covariance, floor: float = 1e-6, ridge: float = 0.0) -> Tensor:
    """Inverse of a symmetric PSD matrix that stays finite when it is singular.

    Eigenvalues are shifted by ``ridge·λ_max`` and clamped below at ``floor·λ_max`` (both
    relative to the largest eigenvalue, so the result does not depend on the keys' scale).
    With ``floor=0`` and ``ridge=0`` this is the exact inverse of an invertible matrix. A zero
    matrix is treated as having scale 1. Computed in float64; accepts a precomputed
    :class:`CovarianceFactor` to skip the eigendecomposition.
    """
    values, vectors = regularized_spectrum(matrix, floor, ridge)
    return (vectors / values) @ vectors.T


def safe_solve(matrix: Covariance, rhs: Tensor, floor: float = 1e-6, ridge: float = 0.0) -> Tensor:
    """``safe_inverse(matrix) @ rhs`` (float64)."""
    return safe_inverse(matrix, floor=floor, ridge=ridge) @ rhs.double()
