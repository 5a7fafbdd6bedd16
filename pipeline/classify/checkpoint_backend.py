"""`checkpoint:<path>`: a user's own classifier with its class names.

Two forms:
- a TorchScript file (`torch.jit.save`): the whole model, no Python class needed;
- a weights file (safetensors, or a state dict loaded with `weights_only=True`) plus
  `arch=timm:<name>` or `arch=torchvision:<name>` to build the network it belongs to.

Class names come from `class_names_file` (one per line) or, next to the checkpoint, a
`<file>.classes.txt`; ImageNet's are used for 1000 outputs. Preprocessing: resize the short side
to `resize`, centre crop `input_size`, normalise with `mean`/`std` (ImageNet defaults).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from pipeline.classify.base import resolve_device
from pipeline.classify.batched import BatchedTorchClassifier, eval_transform, load_class_names
from pipeline.classify.weights import load_state_dict_file
from pipeline.hashing import sha256_file


def _build_arch(arch: str, num_classes: int) -> torch.nn.Module:
    backend, _, name = arch.partition(":")
    if backend == "timm":
        import timm

        return timm.create_model(name, pretrained=False, num_classes=num_classes)
    if backend == "torchvision":
        from torchvision.models import get_model

        return get_model(name, weights=None, num_classes=num_classes)
    raise ValueError(f"arch must be 'timm:<name>' or 'torchvision:<name>', got {arch!r}")


class CheckpointClassifier(BatchedTorchClassifier):
    def __init__(
        self,
        path: str,
        arch: str | None = None,
        num_classes: int | None = None,
        class_names_file: str | None = None,
        input_size: int = 224,
        resize: int | None = None,
        mean: Sequence[float] = (0.485, 0.456, 0.406),
        std: Sequence[float] = (0.229, 0.224, 0.225),
        interpolation: str = "bilinear",
        device: str = "auto",
        batch_size: int = 32,
    ) -> None:
        checkpoint = Path(path).expanduser()
        if not checkpoint.is_file():
            raise FileNotFoundError(f"checkpoint not found: {checkpoint}")
        self.device = resolve_device(device)
        self.batch_size = batch_size
        if arch is None:
            try:
                model = torch.jit.load(str(checkpoint), map_location="cpu")
            except RuntimeError as error:
                raise ValueError(
                    f"{checkpoint} is not a TorchScript model; for a weights file pass "
                    f"arch=timm:<name> or arch=torchvision:<name> ({error})"
                ) from None
        else:
            state = load_state_dict_file(checkpoint)
            if num_classes is None:
                last = [t for k, t in state.items() if k.endswith("weight") and t.ndim == 2]
                num_classes = int(last[-1].shape[0]) if last else 1000
            model = _build_arch(arch, num_classes)
            model.load_state_dict(state, strict=True)
        self.model = model.eval().to(self.device)
        probe = torch.zeros(1, 3, input_size, input_size, device=self.device)
        with torch.inference_mode():
            outputs = int(self.model(probe).shape[1])
        sidecar = checkpoint.with_name(checkpoint.name + ".classes.txt")
        names_file = class_names_file or (str(sidecar) if sidecar.is_file() else None)
        self.class_names = load_class_names(names_file, outputs)
        self.transform = eval_transform(input_size, resize, mean, std, interpolation)
        self.id = f"checkpoint:{checkpoint.name}@{sha256_file(checkpoint)[:16]}"
