"""Shared batching for torch classifiers: preprocess with the model's own transform, run in
batches under inference mode, return probabilities as numpy."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from PIL import Image


class BatchedTorchClassifier:
    """Base of the torch backends. Subclasses set `model`, `device`, `transform`, `batch_size`,
    `class_names` and `id`, and may override `forward` (e.g. CLIP's image-text logits)."""

    model: torch.nn.Module
    device: torch.device
    transform: Callable[[Image.Image], torch.Tensor]
    batch_size: int
    class_names: list[str]
    id: str

    def preprocess(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        return torch.stack([self.transform(Image.fromarray(image)) for image in images])

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        return self.model(batch)

    @torch.inference_mode()
    def logits(self, batch: torch.Tensor) -> torch.Tensor:
        return self.forward(batch.to(self.device))

    def predict_proba(self, images: Sequence[np.ndarray]) -> np.ndarray:
        outputs = []
        for start in range(0, len(images), self.batch_size):
            batch = self.preprocess(images[start : start + self.batch_size])
            outputs.append(torch.softmax(self.logits(batch).float(), dim=1).cpu().numpy())
        if not outputs:
            return np.zeros((0, len(self.class_names)), dtype=np.float32)
        return np.concatenate(outputs).astype(np.float32)


def eval_transform(
    size: int = 224,
    resize: int | None = None,
    mean=(0.485, 0.456, 0.406),
    std=(0.229, 0.224, 0.225),
    interpolation: str = "bilinear",
) -> Callable[[Image.Image], torch.Tensor]:
    """The standard ImageNet eval transform: resize the short side, centre crop, normalise."""
    from torchvision.transforms import v2

    modes = {"bilinear": v2.InterpolationMode.BILINEAR, "bicubic": v2.InterpolationMode.BICUBIC}
    return v2.Compose(
        [
            v2.PILToTensor(),
            v2.Resize(
                resize or round(size / 0.875), interpolation=modes[interpolation], antialias=True
            ),
            v2.CenterCrop(size),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(list(mean), list(std)),
        ]
    )


def load_class_names(path: str | None, count: int) -> list[str]:
    """Class names from a text file (one per line), else ImageNet's for 1000 outputs, else ids."""
    from pathlib import Path

    from pipeline.classify.imagenet import class_names as imagenet

    if path:
        names = [line.strip() for line in Path(path).read_text().splitlines() if line.strip()]
        if len(names) != count:
            raise ValueError(
                f"{path} lists {len(names)} class names; the model has {count} outputs"
            )
        return names
    return imagenet() if count == 1000 else [str(i) for i in range(count)]
