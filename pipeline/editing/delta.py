"""An edit as data: parameter deltas plus metadata, saved, applied and reverted exactly.

An edit never touches the base model by itself: :func:`apply` is the only function here that
writes parameters, and it keeps copies of the originals so :meth:`AppliedEdit.revert` restores
them bit for bit (subtracting the delta again would not, in floating point).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from pipeline.store.atomic import atomic_write_bytes

EDIT_FORMAT = "conceptswap.edit-delta.v1"


def _as_metadata(metadata: dict[str, Any]) -> dict[str, str]:
    """Metadata as strings (safetensors only stores strings): non-strings become JSON."""
    return {
        str(key): value
        if isinstance(value, str)
        else json.dumps(value, sort_keys=True, default=str)
        for key, value in metadata.items()
    }


@dataclass
class EditResult:
    """``deltas``: parameter name → ΔW in the parameter's shape; ``metadata``: strings.

    ``metadata`` describes the edit (model, layer, method, config as JSON, case id, ...); values
    that are not strings are JSON-encoded when the result is built or saved.
    """

    deltas: dict[str, Tensor]
    metadata: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.metadata = _as_metadata(self.metadata)

    def save(self, path: str | Path) -> Path:
        """Write deltas and metadata to one ``.safetensors`` file, atomically (parents
        created)."""
        from safetensors.torch import save

        if "format" in self.metadata and self.metadata["format"] != EDIT_FORMAT:
            raise ValueError("metadata key 'format' is reserved")
        tensors = {name: delta.detach().cpu().contiguous() for name, delta in self.deltas.items()}
        data = save(tensors, metadata={**self.metadata, "format": EDIT_FORMAT})
        return atomic_write_bytes(path, data)

    @classmethod
    def load(cls, path: str | Path) -> EditResult:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as handle:
            metadata = dict(handle.metadata() or {})
            deltas = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
        if metadata.pop("format", None) != EDIT_FORMAT:
            raise ValueError(f"{path}: not an edit-delta file")
        return cls(deltas=deltas, metadata=metadata)

    def scaled(self, scale: float) -> EditResult:
        """The same edit with every delta multiplied by ``scale`` (metadata records it)."""
        deltas = {name: delta * scale for name, delta in self.deltas.items()}
        return EditResult(deltas, {**self.metadata, "scale": json.dumps(scale)})


def stack(results: Iterable[EditResult]) -> EditResult:
    """Sum of several edits (deltas added per parameter; metadata lists the parts)."""
    results = list(results)
    if not results:
        raise ValueError("nothing to stack")
    deltas: dict[str, Tensor] = {}
    for result in results:
        for name, delta in result.deltas.items():
            if name in deltas:
                if deltas[name].shape != delta.shape:
                    raise ValueError(
                        f"{name}: deltas of shapes {deltas[name].shape}, {delta.shape}"
                    )
                deltas[name] = deltas[name] + delta.to(deltas[name])
            else:
                deltas[name] = delta.clone()
    metadata = {"method": "stack", "parts": [result.metadata for result in results]}
    return EditResult(deltas, metadata)


class AppliedEdit:
    """Handle of an edit applied to a model; :meth:`revert` restores the exact originals.

    Usable as a context manager: ``with apply(model, result): ...`` reverts on exit, also after
    an exception. Reverting twice is a no-op. Several edits applied on top of each other must
    be reverted in reverse order (as nested ``with`` blocks do): each handle restores the
    weights exactly as it found them.
    """

    def __init__(self, model: nn.Module, originals: dict[str, Tensor]) -> None:
        self.model = model
        self._originals = originals

    @property
    def active(self) -> bool:
        return bool(self._originals)

    def revert(self) -> None:
        with torch.no_grad():
            for name, original in self._originals.items():
                self.model.get_parameter(name).copy_(original)
        self._originals = {}

    def __enter__(self) -> AppliedEdit:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.revert()


def apply(model: nn.Module, result: EditResult, scale: float = 1.0) -> AppliedEdit:
    """Add ``scale·Δ`` to the model's parameters in place and return a handle to revert.

    All names and shapes are checked before any parameter is written, so a bad edit leaves the
    model unchanged. The delta is cast to the parameter's dtype and device.
    """
    params = {}
    for name, delta in result.deltas.items():
        try:
            param = model.get_parameter(name)
        except AttributeError as error:
            raise KeyError(f"model has no parameter {name!r}") from error
        if param.shape != delta.shape:
            raise ValueError(f"{name}: delta {tuple(delta.shape)} vs param {tuple(param.shape)}")
        params[name] = param
    originals = {name: param.detach().clone() for name, param in params.items()}
    with torch.no_grad():
        for name, param in params.items():
            param.add_(result.deltas[name].to(device=param.device, dtype=param.dtype), alpha=scale)
    return AppliedEdit(model, originals)


@contextmanager
def applied(model: nn.Module, result: EditResult, scale: float = 1.0) -> Iterator[nn.Module]:
    """``with applied(model, result): ...`` — the model is edited inside and exact after."""
    handle = apply(model, result, scale)
    try:
        yield model
    finally:
        handle.revert()
