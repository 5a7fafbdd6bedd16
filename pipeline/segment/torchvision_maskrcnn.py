"""`torchvision-maskrcnn`: Mask R-CNN v2 (ResNet-50 FPN) from torchvision, the 80 COCO things.

Weights, never downloaded here:

* `weights="DEFAULT"` (default): torchvision's COCO checkpoint, read from the torch hub cache
  (`<torch.hub.get_dir()>/checkpoints/maskrcnn_resnet50_fpn_v2_coco-73cbd019.pth`). If the file
  is not there the constructor says where to put it.
* `weights=PATH`: a local state dict (`.pth`/`.pt` loaded with `weights_only=True`, or
  `.safetensors`) for the same architecture and 91 COCO labels.
* `pretrained=False`: random initialisation (seeded by `seed`), for tests of the plumbing; its
  masks mean nothing.

COCO labels are mapped to canonical concepts through the vocabulary (`traffic light` →
`traffic_light`, `tv` → `tv`...). Instances below `score_threshold` are dropped, instance masks
(probabilities) are cut at `mask_threshold`, and by default the instances of one concept are
merged (union, max score) — see `pipeline.segment.quality`. `proposals` (RPN boxes kept per
image, torchvision's default 1000) and `detections_per_image` bound the cost per image.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.segment.base import ConceptDetection
from pipeline.segment.quality import instances_to_detections
from pipeline.segment.vocabulary import (
    backends_for,
    canonical,
    coco_label_names,
    coverage,
    label_map,
)

VERSION = "v1"
BACKEND = "torchvision-maskrcnn"


def default_weights_path() -> Path:
    """Where torchvision keeps the COCO checkpoint of `maskrcnn_resnet50_fpn_v2`."""
    from torchvision.models.detection import MaskRCNN_ResNet50_FPN_V2_Weights

    filename = Path(MaskRCNN_ResNet50_FPN_V2_Weights.DEFAULT.url).name
    return Path(torch.hub.get_dir()) / "checkpoints" / filename


def _resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _file_digest(path: Path) -> str:
    from pipeline.hashing import sha256_file

    return sha256_file(path)[:12]


class TorchvisionMaskRCNNSegmenter:
    """COCO thing masks from torchvision's Mask R-CNN v2; the model loads once, runs batched."""

    def __init__(
        self,
        concepts: Sequence[str] = ("person", "car"),
        weights: str | None = "DEFAULT",
        pretrained: bool = True,
        score_threshold: float = 0.5,
        mask_threshold: float = 0.5,
        device: str = "auto",
        batch_size: int = 4,
        min_size: int = 800,
        max_size: int = 1333,
        detections_per_image: int = 100,
        proposals: int = 1000,
        seed: int = 0,
    ) -> None:
        wanted = tuple(dict.fromkeys(canonical(c) for c in concepts))
        covered = coverage()[BACKEND]
        unknown = [c for c in wanted if c not in covered]
        if unknown:
            hints = "; ".join(f"{c}: {', '.join(backends_for(c))}" for c in unknown)
            raise ValueError(
                f"{BACKEND} finds COCO things only; not {', '.join(unknown)} "
                f"(backends that do — {hints})"
            )
        if not wanted:
            raise ValueError(f"{BACKEND}: no concepts requested")
        if not 0.0 <= score_threshold <= 1.0 or not 0.0 < mask_threshold < 1.0:
            raise ValueError(f"{BACKEND}: score_threshold in [0, 1], mask_threshold in (0, 1)")
        if batch_size < 1 or min_size < 32 or max_size < min_size or proposals < 1:
            raise ValueError(f"{BACKEND}: batch_size ≥ 1, proposals ≥ 1, 32 ≤ min_size ≤ max_size")

        from torchvision.models.detection import maskrcnn_resnet50_fpn_v2

        self.concepts: tuple[str, ...] = wanted
        self.score_threshold = float(score_threshold)
        self.mask_threshold = float(mask_threshold)
        self.batch_size = int(batch_size)
        self.device = _resolve_device(device)
        self.class_names = coco_label_names()
        self.vocabulary = label_map(self.class_names)

        weights_path = self._weights_file(weights) if pretrained else None
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = maskrcnn_resnet50_fpn_v2(
                weights=None,
                weights_backbone=None,
                num_classes=len(self.class_names),
                min_size=min_size,
                max_size=max_size,
                box_score_thresh=self.score_threshold,
                box_detections_per_img=detections_per_image,
                rpn_pre_nms_top_n_test=proposals,
                rpn_post_nms_top_n_test=proposals,
            )
        if weights_path is None:
            weights_id = f"random(seed={seed})"
        else:
            self._load_state_dict(model, weights_path)
            weights_id = f"{weights_path.name}:{_file_digest(weights_path)}"
        self.model = model.eval().to(self.device)
        self.id = (
            f"{BACKEND}@{VERSION}(weights={weights_id},score={self.score_threshold:g},"
            f"mask={self.mask_threshold:g},size={min_size}-{max_size},rpn={proposals})"
        )

    @staticmethod
    def _weights_file(weights: str | None) -> Path:
        if weights is None:
            raise ValueError(f"{BACKEND}: weights=None; pass pretrained=False for random init")
        if weights == "DEFAULT":
            path = default_weights_path()
            if not path.is_file():
                raise FileNotFoundError(
                    f"{BACKEND}: the COCO weights are not in torchvision's cache; nothing is "
                    f"downloaded. Put {path.name} at {path} (from torchvision's model zoo: "
                    "MaskRCNN_ResNet50_FPN_V2_Weights.DEFAULT.url), or pass weights=PATH to a "
                    "local copy. See docs/segmentation.md."
                )
            return path
        path = Path(weights).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"{BACKEND}: weights file not found: {path}")
        return path

    @staticmethod
    def _load_state_dict(model: torch.nn.Module, path: Path) -> None:
        from pipeline.classify.weights import load_state_dict_file

        state = load_state_dict_file(path)
        expected = model.state_dict()
        missing = [key for key in expected if key not in state]
        unexpected = [key for key in state if key not in expected]
        wrong = [k for k in expected if k in state and state[k].shape != expected[k].shape]
        if missing or unexpected or wrong:
            raise ValueError(
                f"{BACKEND}: {path} is not a maskrcnn_resnet50_fpn_v2 state dict with 91 COCO "
                f"labels ({len(missing)} missing keys, e.g. {missing[:2]}; {len(unexpected)} "
                f"unexpected, e.g. {unexpected[:2]}; {len(wrong)} of another shape, e.g. "
                f"{wrong[:2]})"
            )
        model.load_state_dict(state)

    def _to_tensor(self, image: np.ndarray) -> torch.Tensor:
        array = np.asarray(image)
        if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
            raise ValueError(
                f"{BACKEND}: expected HxWx3 uint8 images, got {array.shape} {array.dtype}"
            )
        tensor = torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1)
        return tensor.to(self.device, dtype=torch.float32).div_(255.0)

    @torch.no_grad()
    def predict(self, images: Sequence[np.ndarray]) -> list[dict[str, torch.Tensor]]:
        """Raw torchvision outputs (boxes, labels, scores, masks) per image, batched."""
        outputs: list[dict[str, torch.Tensor]] = []
        for start in range(0, len(images), self.batch_size):
            batch = [self._to_tensor(image) for image in images[start : start + self.batch_size]]
            outputs.extend(self.model(batch))
        return outputs

    def segment(
        self, images: Sequence[np.ndarray], labels: Sequence[int | None]
    ) -> list[list[ConceptDetection]]:
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        results = []
        for output in self.predict(images):
            results.append(
                instances_to_detections(
                    output["labels"],
                    output["scores"],
                    output["masks"],
                    self.class_names,
                    self.vocabulary,
                    concepts=self.concepts,
                    score_threshold=self.score_threshold,
                    mask_threshold=self.mask_threshold,
                )
            )
        return results


def create(**options: Any) -> TorchvisionMaskRCNNSegmenter:
    return TorchvisionMaskRCNNSegmenter(**options)
