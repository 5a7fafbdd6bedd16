"""`torchvision:<name>` classifiers (resnet50, vgg16, vit_b_16, ...).

Weights: an explicit local file (`weights=PATH`, safetensors or a state dict read with
`weights_only=True`), or `weights=DEFAULT` (torchvision's own checkpoint, read from the torch hub
cache only: nothing is downloaded; a clear error says where the file must be), or
`pretrained=False` for a randomly initialised model. Preprocessing is torchvision's transform for
the named weights, or the standard ImageNet eval transform.
"""

from __future__ import annotations

from pathlib import Path

import torch

from pipeline.classify.base import resolve_device
from pipeline.classify.batched import BatchedTorchClassifier, eval_transform, load_class_names
from pipeline.classify.weights import load_state_dict_file
from pipeline.hashing import sha256_file


def cached_default_weights(model_name: str) -> tuple[Path, object]:
    """The torch hub cache path of torchvision's DEFAULT weights for a model, and the enum."""
    from torchvision.models import get_model_weights

    default = get_model_weights(model_name).DEFAULT
    path = Path(torch.hub.get_dir()) / "checkpoints" / Path(default.url).name
    if not path.is_file():
        raise FileNotFoundError(
            f"torchvision:{model_name}: DEFAULT weights are not in the torch hub cache; put "
            f"{Path(default.url).name} at {path} or pass weights=/path/to/file (no download here)"
        )
    return path, default


class TorchvisionClassifier(BatchedTorchClassifier):
    def __init__(
        self,
        model_name: str,
        weights: str | None = "DEFAULT",
        pretrained: bool = True,
        device: str = "auto",
        batch_size: int = 32,
        class_names_file: str | None = None,
        num_classes: int = 1000,
    ) -> None:
        from torchvision.models import get_model

        self.device = resolve_device(device)
        self.batch_size = batch_size
        model = get_model(model_name, weights=None, num_classes=num_classes)
        transform = eval_transform()
        if not pretrained or weights is None:
            digest = "random-init"
        else:
            if weights == "DEFAULT":
                path, enum = cached_default_weights(model_name)
                transform = enum.transforms()  # type: ignore[attr-defined]
            else:
                path = Path(weights)
            model.load_state_dict(load_state_dict_file(path), strict=True)
            digest = sha256_file(path)[:16]
        self.model = model.eval().to(self.device)
        self.transform = transform
        self.class_names = load_class_names(class_names_file, num_classes)
        self.id = f"torchvision:{model_name}@{digest}"
