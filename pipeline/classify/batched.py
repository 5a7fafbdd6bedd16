"""Shared batching for torch classifiers: preprocess with the model's own transform, run the
no-gradient passes on the engine chosen at load (`pipeline.classify.engines`), return
probabilities as numpy.

`predict_proba` prepares the next batch (decode to PIL, resize, crop, normalise) in a worker
thread while the current one runs in the model, so the model never waits for preprocessing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from PIL import Image

from pipeline.classify.engines import Engine, EngineInfo, TorchEngine, select_engine

# (PIL resize/crop steps, mean, std) of a transform that `preprocess` batches
_BatchTransform = tuple[list[Callable[[Image.Image], Image.Image]], torch.Tensor, torch.Tensor]


class _Forward(torch.nn.Module):
    """A classifier's own `forward` as a module, for exporting classifiers that override it."""

    def __init__(self, classifier: BatchedTorchClassifier) -> None:
        super().__init__()
        self.model = classifier.model
        self._forward = classifier.forward

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        return self._forward(batch)


class BatchedTorchClassifier:
    """Base of the torch backends. Subclasses set `model`, `device`, `transform`, `batch_size`,
    `class_names` and `id`, and may override `forward` (e.g. CLIP's image-text logits).

    `create_classifier` calls `configure_engine` with its engine (by default `auto`); until
    then, and for `engine="eager"`, the passes run in torch eager at `batch_size` and
    `engine_info` is None.
    """

    model: torch.nn.Module
    device: torch.device
    transform: Callable[[Image.Image], torch.Tensor]
    batch_size: int
    class_names: list[str]
    id: str
    engine_info: EngineInfo | None = None
    _engine: Engine | None = None
    _split_of: tuple[Callable, _BatchTransform | None] | None = None

    def preprocess(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        split = self._batch_transform()
        if split is not None:
            # the PIL steps per image, then to-tensor and normalise once for the whole batch:
            # the same float32 operations as the per-image transform, at a fraction of its cost
            pil_steps, mean, std = split
            crops = [_apply(pil_steps, image) for image in images]
            if all(crop.ndim == 3 and crop.shape[2] == 3 for crop in crops):
                batch = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float().div_(255)
                return batch.sub_(mean).div_(std).contiguous()
        return torch.stack([self.transform(Image.fromarray(image)) for image in images])

    def _batch_transform(self) -> _BatchTransform | None:
        """`transform` split for batching, worked out once per transform object."""
        if self._split_of is None or self._split_of[0] is not self.transform:
            self._split_of = (self.transform, _pil_steps_then_normalise(self.transform))
        return self._split_of[1]

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        return self.model(batch)

    @torch.inference_mode()
    def logits(self, batch: torch.Tensor) -> torch.Tensor:
        return self.forward(batch.to(self.device))

    def input_shape(self) -> tuple[int, ...]:
        """C x H x W of the model's input, as this classifier's preprocessing produces it."""
        return tuple(self.preprocess([np.zeros((256, 256, 3), np.uint8)]).shape[1:])

    def configure_engine(self, engine: str) -> EngineInfo:
        """Choose the engine of the no-grad passes now (`auto` times a short probe)."""
        exported = self.model if type(self).forward is BatchedTorchClassifier.forward else None
        self._engine, self.engine_info = select_engine(
            engine,
            forward=self.forward,
            module=exported if exported is not None else _Forward(self),
            input_shape=self.input_shape(),
            device=self.device,
            model_id=self.id,
            batch_size=self.batch_size,
        )
        return self.engine_info

    def _runner(self) -> tuple[Engine, int]:
        if self._engine is None or self.engine_info is None:
            return TorchEngine(self.forward, self.device), self.batch_size
        return self._engine, self.engine_info.batch_size

    def predict_proba(self, images: Sequence[np.ndarray]) -> np.ndarray:
        if not len(images):
            return np.zeros((0, len(self.class_names)), dtype=np.float32)
        _, size = self._runner()
        chunks = [images[start : start + size] for start in range(0, len(images), size)]
        outputs = []
        with ThreadPoolExecutor(max_workers=1) as prefetch:
            pending = prefetch.submit(self.preprocess, chunks[0])
            for index in range(len(chunks)):
                batch = pending.result()
                if index + 1 < len(chunks):  # the next batch is prepared while this one runs
                    pending = prefetch.submit(self.preprocess, chunks[index + 1])
                outputs.append(self.predict_proba_tensor(batch))
        return np.concatenate(outputs)

    def predict_proba_tensor(self, batch: torch.Tensor) -> np.ndarray:
        """Probabilities of a batch `preprocess` made, in the engine's batch size: callers that
        prepare their next batch themselves (the build, one batch ahead) skip `predict_proba`'s
        own prefetch, which only overlaps within one call."""
        engine, size = self._runner()
        outputs = []
        for start in range(0, len(batch), size):
            logits = torch.from_numpy(engine(batch[start : start + size]))
            outputs.append(torch.softmax(logits.float(), dim=1).numpy())
        if not outputs:
            return np.zeros((0, len(self.class_names)), dtype=np.float32)
        return np.concatenate(outputs).astype(np.float32)


def _apply(steps: list[Callable[[Image.Image], Image.Image]], image: np.ndarray) -> np.ndarray:
    pil = Image.fromarray(image)
    for step in steps:
        pil = step(pil)
    return np.asarray(pil)


def _pil_steps_then_normalise(
    transform: Callable[[Image.Image], torch.Tensor],
) -> _BatchTransform | None:
    """(PIL steps, mean, std) when `transform` is a torchvision `Compose` of PIL resize/crop
    steps, a PIL-to-float tensor step and `Normalize` (timm's and torchvision's eval
    transforms); None for anything else, which then runs as it is."""
    from torchvision import transforms as T

    steps = getattr(transform, "transforms", None)
    if not isinstance(transform, T.Compose) or not steps or len(steps) < 3:
        return None
    *pil_steps, to_tensor, normalise = steps
    if not all(isinstance(step, (T.Resize, T.CenterCrop)) for step in pil_steps):
        return None
    if type(to_tensor).__name__ not in ("ToTensor", "MaybeToTensor"):
        return None
    if not isinstance(normalise, T.Normalize) or normalise.inplace:
        return None
    mean = torch.as_tensor(normalise.mean, dtype=torch.float32).view(1, -1, 1, 1)
    std = torch.as_tensor(normalise.std, dtype=torch.float32).view(1, -1, 1, 1)
    return pil_steps, mean, std


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
