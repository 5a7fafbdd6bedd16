"""`transformers-panoptic` and `clipseg`: segmenters from Hugging Face `transformers`.

* `transformers-panoptic`: Mask2Former / OneFormer (`task: panoptic` or `semantic`) and SegFormer
  (`semantic`), any checkpoint with an `id2label` (COCO panoptic: things and stuff such as
  `sky-other-merged`; ADE20K: `road, route`). Labels map to concepts through the vocabulary
  (`label_concepts`); labels it does not know are dropped.
* `clipseg`: open vocabulary, one text prompt per concept (the concept's name with spaces, or
  `prompts: {concept: text}`); a pixel belongs to a concept where sigmoid(logit) ≥ `threshold`.

Weights come from the Hugging Face cache or a local folder, never downloaded unless
`allow_download: true` (`from_pretrained(..., local_files_only=True)`). Backends return raw
detections, one per segment; the segment stage merges them. The conversion of model outputs into
detections is in pure functions (`panoptic_to_detections`, `semantic_to_detections`,
`text_logits_to_detections`, `crop_padding`) tested on hand-built tensors.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.segment.base import ConceptDetection
from pipeline.segment.label_maps import concept_of
from pipeline.segment.quality import to_numpy
from pipeline.segment.vocabulary import canonical, load_vocabulary

VERSION = "v1"
TASKS = ("panoptic", "semantic")


# ------------------------------------------------------------------ pure conversion


def label_concepts(id2label: Mapping[Any, str]) -> dict[int, str]:
    """Model class id → canonical concept, for the labels the vocabulary knows.

    ADE20K lists synonyms (`road, route`; `person;individual`): the first the vocabulary knows
    wins. COCO panoptic suffixes (`-merged`, `-other`) are stripped by `canonical`."""
    known = load_vocabulary().concepts
    table: dict[int, str] = {}
    for key, name in id2label.items():
        concept = concept_of(str(name).replace(",", ";"))
        if concept in known:
            table[int(key)] = concept
    return table


def panoptic_to_detections(
    segmentation: Any,
    segments_info: Sequence[Mapping[str, Any]],
    concepts_by_id: Mapping[int, str],
    wanted: Collection[str] | None = None,
) -> list[ConceptDetection]:
    """One detection per panoptic segment: `segmentation` (H x W segment ids) and
    `segments_info` ({id, label_id, score}) as `post_process_panoptic_segmentation` returns."""
    ids = to_numpy(segmentation).astype(np.int64)
    found = []
    for segment in segments_info:
        concept = concepts_by_id.get(int(segment["label_id"]))
        if concept is None or (wanted is not None and concept not in wanted):
            continue
        mask = ids == int(segment["id"])
        if mask.any():
            found.append(ConceptDetection(concept, mask, float(segment.get("score", 1.0))))
    return found


def semantic_to_detections(
    probabilities: Any,
    concepts_by_id: Mapping[int, str],
    wanted: Collection[str] | None = None,
) -> list[ConceptDetection]:
    """One detection per class that wins some pixel of `probabilities` (C x H x W, summing to 1
    over C): its argmax region, scored by the class's mean probability there."""
    probs = to_numpy(probabilities).astype(np.float64)
    winners = probs.argmax(axis=0)
    found = []
    for class_id in np.unique(winners):
        concept = concepts_by_id.get(int(class_id))
        if concept is None or (wanted is not None and concept not in wanted):
            continue
        mask = winners == class_id
        found.append(ConceptDetection(concept, mask, float(probs[class_id][mask].mean())))
    return found


def text_logits_to_detections(
    logits: Any, concepts: Sequence[str], size: tuple[int, int], threshold: float
) -> list[ConceptDetection]:
    """CLIPSeg logits (K x h x w, one map per concept) → masks at `size` (H, W): bilinear
    upsampling of the probabilities, cut at `threshold`; score = the mean probability inside."""
    tensor = torch.as_tensor(logits, dtype=torch.float32).reshape(len(concepts), *logits.shape[-2:])
    probs = torch.nn.functional.interpolate(
        tensor.sigmoid()[None], size=size, mode="bilinear", align_corners=False
    )[0]
    found = []
    for concept, prob in zip(concepts, to_numpy(probs), strict=True):
        mask = prob >= threshold
        if mask.any():
            found.append(ConceptDetection(concept, mask, float(prob[mask].mean())))
    return found


def crop_padding(maps: torch.Tensor, pixel_mask: torch.Tensor | None) -> torch.Tensor:
    """Cut from low-resolution maps (... x h x w) the part that covers the unpadded image of
    `pixel_mask` (H x W, 1 = image): processors pad a batch to its largest image, bottom/right."""
    if pixel_mask is None:
        return maps
    rows = int(pixel_mask.any(dim=1).sum())
    cols = int(pixel_mask.any(dim=0).sum())
    height, width = maps.shape[-2:]
    keep_h = max(1, round(height * rows / pixel_mask.shape[0]))
    keep_w = max(1, round(width * cols / pixel_mask.shape[1]))
    return maps[..., :keep_h, :keep_w]


# ------------------------------------------------------------------ loading


def _device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def load_pretrained(loader: Any, model: str, allow_download: bool, backend: str) -> Any:
    """`loader.from_pretrained(model)`, offline unless `allow_download`; a missing checkpoint
    raises FileNotFoundError naming the model and where it was looked for."""
    from huggingface_hub.constants import HF_HUB_CACHE

    try:
        return loader.from_pretrained(model, local_files_only=not allow_download)
    except (OSError, ValueError) as error:  # absent files; a folder with no processor
        where = f"the local folder {model}" if Path(model).exists() else f"{HF_HUB_CACHE}"
        raise FileNotFoundError(
            f"{backend}: cannot load {model!r} from {where} (local_files_only="
            f"{not allow_download}): {error}. Download it on a machine with network "
            "(`huggingface-cli download MODEL`) or pass a local folder; see docs/segmentation.md"
        ) from None


def weights_id(model: Any, source: str) -> str:
    """The checkpoint name and its revision: the hub commit hash, else the sha256 of the local
    weights file (a folder written by `save_pretrained`)."""
    revision = getattr(model.config, "_commit_hash", None)
    folder = Path(source)
    for name in ("model.safetensors", "pytorch_model.bin"):
        if revision is None and (folder / name).is_file():
            from pipeline.hashing import sha256_file

            revision = sha256_file(folder / name)[:12]
    return f"{source}@{revision or 'unknown'}"


def _check_images(images: Sequence[np.ndarray], labels: Sequence[int | None], name: str) -> None:
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    for image in images:
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"{name}: expected HxWx3 uint8 images, got {image.shape}")


# ------------------------------------------------------------------ backends


class TransformersPanopticSegmenter:
    """Mask2Former / OneFormer / SegFormer through `transformers`; loads once, runs batched."""

    def __init__(
        self,
        concepts: Sequence[str] = ("road", "sky"),
        model: str = "facebook/mask2former-swin-large-coco-panoptic",
        task: str = "panoptic",
        threshold: float = 0.5,
        mask_threshold: float = 0.5,
        overlap_threshold: float = 0.8,
        device: str = "auto",
        batch_size: int = 4,
        allow_download: bool = False,
    ) -> None:
        from transformers import AutoConfig, AutoImageProcessor, AutoProcessor

        name = "transformers-panoptic"
        if task not in TASKS:
            raise ValueError(f"{name}: task must be one of {TASKS}, got {task!r}")
        self.concepts: tuple[str, ...] = tuple(dict.fromkeys(canonical(c) for c in concepts))
        config = load_pretrained(AutoConfig, model, allow_download, name)
        self.family = config.model_type
        if self.family == "segformer" and task == "panoptic":
            raise ValueError(f"{name}: {model} is SegFormer, semantic only; set task: semantic")
        self.concepts_by_id = label_concepts(config.id2label)
        missing = [c for c in self.concepts if c not in self.concepts_by_id.values()]
        if missing:
            raise ValueError(f"{name}: {model} has no label for {', '.join(missing)}")
        loader = self._model_class(self.family)
        proc_loader = AutoProcessor if self.family == "oneformer" else AutoImageProcessor
        self.processor = load_pretrained(proc_loader, model, allow_download, name)
        self.device = _device(device)
        self.model = load_pretrained(loader, model, allow_download, name).eval().to(self.device)
        self.task, self.batch_size = task, int(batch_size)
        self.threshold, self.mask_threshold = float(threshold), float(mask_threshold)
        self.overlap_threshold = float(overlap_threshold)
        self.id = (
            f"{name}@{VERSION}({weights_id(self.model, model)},task={task},"
            f"threshold={threshold:g},mask={mask_threshold:g},overlap={overlap_threshold:g})"
        )

    @staticmethod
    def _model_class(family: str) -> Any:
        import transformers

        if family == "segformer":
            return transformers.SegformerForSemanticSegmentation
        if family == "oneformer":
            return transformers.OneFormerForUniversalSegmentation
        if family == "mask2former":
            return transformers.Mask2FormerForUniversalSegmentation
        raise ValueError(f"transformers-panoptic: unsupported model type {family!r}")

    @torch.no_grad()
    def _detect(self, images: Sequence[np.ndarray]) -> list[list[ConceptDetection]]:
        extra = {"task_inputs": [self.task] * len(images)} if self.family == "oneformer" else {}
        inputs = self.processor(images=list(images), return_tensors="pt", **extra)
        inputs = {k: v.to(self.device) for k, v in inputs.items()}
        outputs = self.model(**inputs)
        pixel_masks = inputs.get("pixel_mask")
        wanted = set(self.concepts)
        results = []
        for index, image in enumerate(images):
            size = image.shape[:2]
            valid = None if pixel_masks is None else pixel_masks[index]
            if self.family == "segformer":
                logits = crop_padding(outputs.logits[index], valid)
                probs = self._resize(logits, size).softmax(dim=0)
                results.append(semantic_to_detections(probs, self.concepts_by_id, wanted))
                continue
            classes = outputs.class_queries_logits[index : index + 1]
            masks = crop_padding(outputs.masks_queries_logits[index : index + 1], valid)
            if self.task == "semantic":
                class_probs = classes.softmax(dim=-1)[0, :, :-1]  # drop the "no object" class
                mask_probs = self._resize(masks[0], size).sigmoid()
                scores = torch.einsum("qc,qhw->chw", class_probs, mask_probs)
                probs = scores / scores.sum(dim=0, keepdim=True).clamp_min(1e-12)
                results.append(semantic_to_detections(probs, self.concepts_by_id, wanted))
                continue
            single = type(outputs)(class_queries_logits=classes, masks_queries_logits=masks)
            panoptic = self.processor.post_process_panoptic_segmentation(
                single,
                threshold=self.threshold,
                mask_threshold=self.mask_threshold,
                overlap_mask_area_threshold=self.overlap_threshold,
                label_ids_to_fuse=set(),
                target_sizes=[size],
            )[0]
            results.append(
                panoptic_to_detections(
                    panoptic["segmentation"], panoptic["segments_info"], self.concepts_by_id, wanted
                )
            )
        return results

    @staticmethod
    def _resize(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        return torch.nn.functional.interpolate(
            maps[None].float(), size=size, mode="bilinear", align_corners=False
        )[0]

    def segment(
        self, images: Sequence[np.ndarray], labels: Sequence[int | None]
    ) -> list[list[ConceptDetection]]:
        _check_images(images, labels, "transformers-panoptic")
        results: list[list[ConceptDetection]] = []
        for start in range(0, len(images), self.batch_size):
            results.extend(self._detect(images[start : start + self.batch_size]))
        return results


class CLIPSegSegmenter:
    """Open-vocabulary masks from text with CLIPSeg: any concept, asked for by name."""

    def __init__(
        self,
        concepts: Sequence[str] = ("wheel",),
        model: str = "CIDAS/clipseg-rd64-refined",
        prompts: Mapping[str, str] | None = None,
        threshold: float = 0.4,
        device: str = "auto",
        batch_size: int = 4,
        allow_download: bool = False,
    ) -> None:
        from transformers import AutoProcessor, CLIPSegForImageSegmentation

        name = "clipseg"
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"{name}: threshold must be in (0, 1), got {threshold}")
        # any concept: names the vocabulary knows are canonicalised, others kept normalised
        self.concepts: tuple[str, ...] = tuple(
            dict.fromkeys(canonical(c, strict=False) for c in concepts)
        )
        given = {canonical(k, strict=False): str(v) for k, v in (prompts or {}).items()}
        self.prompts = [given.get(c, c.replace("_", " ")) for c in self.concepts]
        self.processor = load_pretrained(AutoProcessor, model, allow_download, name)
        self.device = _device(device)
        loaded = load_pretrained(CLIPSegForImageSegmentation, model, allow_download, name)
        self.model = loaded.eval().to(self.device)
        self.threshold, self.batch_size = float(threshold), int(batch_size)
        prompt_text = ";".join(f"{c}={p}" for c, p in zip(self.concepts, self.prompts, strict=True))
        self.id = (
            f"{name}@{VERSION}({weights_id(self.model, model)},threshold={threshold:g},"
            f"prompts={prompt_text})"
        )

    @torch.no_grad()
    def segment(
        self, images: Sequence[np.ndarray], labels: Sequence[int | None]
    ) -> list[list[ConceptDetection]]:
        _check_images(images, labels, "clipseg")
        per_call = max(1, self.batch_size)
        results: list[list[ConceptDetection]] = []
        count = len(self.prompts)
        for start in range(0, len(images), per_call):
            batch = list(images[start : start + per_call])
            # every image paired with every prompt: (image, concept) pairs in one forward pass
            inputs = self.processor(
                text=self.prompts * len(batch),
                images=[image for image in batch for _ in range(count)],
                padding=True,
                return_tensors="pt",
            )
            logits = self.model(**{k: v.to(self.device) for k, v in inputs.items()}).logits
            logits = logits.reshape(len(batch), count, *logits.shape[-2:])
            for image, image_logits in zip(batch, logits, strict=True):
                results.append(
                    text_logits_to_detections(
                        image_logits.cpu(), self.concepts, image.shape[:2], self.threshold
                    )
                )
        return results


__all__ = [
    "CLIPSegSegmenter",
    "TransformersPanopticSegmenter",
    "crop_padding",
    "label_concepts",
    "load_pretrained",
    "panoptic_to_detections",
    "semantic_to_detections",
    "text_logits_to_detections",
    "weights_id",
]
