"""`open_clip:<model>`: zero-shot CLIP classification over ImageNet (or given) class names.

Each class's text embedding is the normalised mean of its prompts (`a photo of a {}.` ... the
templates of the CLIP paper, configurable), computed once at load. Weights: `pretrained=<tag>`
from open_clip's cache / a local file path, or None for a randomly initialised model (tests).
Install with `pip install -e '.[clip]'` (open_clip_torch).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from pipeline.classify.base import resolve_device
from pipeline.classify.batched import BatchedTorchClassifier
from pipeline.classify.imagenet import class_names as imagenet_class_names
from pipeline.hashing import stable_key

DEFAULT_TEMPLATES = (
    "a photo of a {}.",
    "a bad photo of a {}.",
    "a photo of the large {}.",
    "a photo of the small {}.",
    "a close-up photo of a {}.",
    "a low resolution photo of a {}.",
    "a bright photo of a {}.",
    "a cropped photo of a {}.",
)


class OpenClipClassifier(BatchedTorchClassifier):
    def __init__(
        self,
        model_name: str,
        pretrained: str | None = None,
        class_names: Sequence[str] | None = None,
        templates: Sequence[str] = DEFAULT_TEMPLATES,
        device: str = "auto",
        batch_size: int = 32,
    ) -> None:
        try:
            import open_clip
        except ImportError:
            raise ImportError(
                "open_clip classifiers need open_clip_torch: pip install -e '.[clip]'"
            ) from None
        self.device = resolve_device(device)
        self.batch_size = batch_size
        model, _, transform = open_clip.create_model_and_transforms(
            model_name, pretrained=pretrained, device=self.device
        )
        self.model = model.eval()
        self.transform = transform
        self.class_names = list(class_names) if class_names else imagenet_class_names()
        tokenizer = open_clip.get_tokenizer(model_name)
        embeddings = []
        with torch.inference_mode():
            for name in self.class_names:
                prompts = [template.format(name.replace("_", " ")) for template in templates]
                text = model.encode_text(tokenizer(prompts).to(self.device))
                text = torch.nn.functional.normalize(text, dim=-1).mean(dim=0)
                embeddings.append(torch.nn.functional.normalize(text, dim=0))
        self.text_embeddings = torch.stack(embeddings)
        weights = pretrained or "random-init"
        self.id = f"open_clip:{model_name}@{weights}({stable_key(list(templates), length=8)})"

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        image = torch.nn.functional.normalize(self.model.encode_image(batch), dim=-1)
        return self.model.logit_scale.exp() * image @ self.text_embeddings.T
