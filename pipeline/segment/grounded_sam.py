"""`grounded-sam`: open-vocabulary instance masks, Grounding DINO boxes refined by SAM.

Grounding DINO reads the concepts as one lower-case text prompt (`wheel. traffic light. snow.`)
and returns boxes with a probability per text token; each box is labelled with the concept whose
tokens score highest. SAM turns every box into a mask, one SAM call per image with all its
boxes (the image embeddings of a batch are computed once). One detection per box, score =
Grounding DINO's probability of the concept × SAM's predicted IoU; the segment stage merges
the instances of a concept, as for every backend.

Labels come from token positions, not from the decoded phrase of
`post_process_grounded_object_detection`: the phrase joins every token above `text_threshold`,
so a box that matches two concepts, or the `.` separators, yields text such as
`wheel. road.` that names no single concept. Boxes and the keep rule are the processor's
(`max_token_probability > box_threshold`); the tests check both agree on a real output.

The conversions (`token_concepts`, `prompt_groups`, `grounding_to_boxes`, `box_prompts`,
`sam_to_detections`) are pure functions tested on hand-built tensors.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from pipeline.segment.base import ConceptDetection
from pipeline.segment.quality import to_numpy
from pipeline.segment.transformers_backend import (
    _check_images,
    _device,
    load_pretrained,
    weights_id,
)
from pipeline.segment.vocabulary import canonical

VERSION = "v1"
NAME = "grounded-sam"
SEPARATORS = (".", "?")  # Grounding DINO splits its text into phrases at these tokens


@dataclass(frozen=True)
class GroundedBox:
    """One Grounding DINO box: the concept it names (index into the prompts), its probability
    and the box in image pixels (x0, y0, x1, y1)."""

    concept: int
    score: float
    box: tuple[float, float, float, float]


# ------------------------------------------------------------------ pure conversion


def prompt_text(prompts: Sequence[str]) -> str:
    """Grounding DINO's text: lower-case phrases, each ending with `.` (`wheel. road.`)."""
    return " ".join(f"{p.strip().lower()}." for p in prompts)


def prompt_groups(lengths: Sequence[int], limit: int) -> list[list[int]]:
    """Split prompts (their token counts, separator included) into consecutive groups whose
    text fits `limit` tokens with [CLS] and [SEP]: the model cuts longer text silently."""
    groups: list[list[int]] = []
    used = limit
    for index, length in enumerate(lengths):
        if length + 2 > limit:
            raise ValueError(f"{NAME}: prompt {index} has {length} tokens; the model reads {limit}")
        if used + length > limit:
            groups.append([])
            used = 2
        groups[-1].append(index)
        used += length
    return groups


def token_concepts(
    input_ids: Sequence[int] | torch.Tensor,
    separator_ids: Sequence[int],
    special_ids: Sequence[int],
    count: int,
) -> torch.Tensor:
    """Per token of the prompt, the index of the concept it belongs to, or -1 for
    `special_ids` ([CLS], [SEP], padding) and the `.` separators: the k-th phrase is the k-th
    concept, multi-word and word-piece phrases included (`traffic light`, `winds ##hield`)."""
    ids = torch.as_tensor(input_ids).reshape(-1).tolist()
    positions = torch.full((len(ids),), -1, dtype=torch.long)
    separators, specials = set(separator_ids), set(special_ids)
    phrase = 0
    for position, token in enumerate(ids):
        if token in separators:
            phrase += 1
        elif token not in specials and phrase < count:
            positions[position] = phrase
    if phrase != count:
        raise ValueError(f"{NAME}: the prompt has {phrase} phrases for {count} concepts")
    return positions


def grounding_to_boxes(
    logits: torch.Tensor,
    pred_boxes: torch.Tensor,
    positions: torch.Tensor,
    count: int,
    size: tuple[int, int],
    box_threshold: float,
    text_threshold: float,
    max_boxes: int,
) -> list[GroundedBox]:
    """One image's Grounding DINO output (`logits` Q x T, `pred_boxes` Q x 4 as relative
    cx, cy, w, h) → labelled boxes in pixels of `size` (H, W), best first.

    A query is kept when its highest token probability exceeds `box_threshold` (the
    processor's rule); its concept is the one with the highest probability over its own
    tokens, which must exceed `text_threshold`; that probability is the box's score. Boxes are
    clipped to the image; empty ones are dropped; at most `max_boxes` are kept."""
    probs = logits.float().sigmoid()
    width = min(probs.shape[-1], positions.shape[0])
    probs, positions = probs[:, :width], positions[:width]
    keep = probs.max(dim=-1).values > box_threshold
    per_concept = torch.full((probs.shape[0], count), -1.0)
    for concept in range(count):
        tokens = positions == concept
        if tokens.any():
            per_concept[:, concept] = probs[:, tokens].max(dim=-1).values
    scores, concepts = per_concept.max(dim=-1)
    keep &= scores > text_threshold
    height, width_px = size
    cx, cy, w, h = pred_boxes.float().unbind(-1)
    corners = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1)
    corners = corners * torch.tensor([width_px, height, width_px, height], dtype=torch.float32)
    corners[:, 0::2] = corners[:, 0::2].clamp(0, width_px)
    corners[:, 1::2] = corners[:, 1::2].clamp(0, height)
    keep &= (corners[:, 2] > corners[:, 0]) & (corners[:, 3] > corners[:, 1])
    order = [int(i) for i in torch.argsort(scores, descending=True) if keep[i]][:max_boxes]
    return [
        GroundedBox(int(concepts[i]), float(scores[i]), tuple(float(v) for v in corners[i]))
        for i in order
    ]


def box_prompts(
    boxes: Sequence[Sequence[float]], original_size: tuple[int, int], longest_edge: int
) -> torch.Tensor:
    """Boxes in image pixels → SAM's input frame (the image resized so its longest side is
    `longest_edge`, rounded as `SamImageProcessor` rounds), shaped 1 x N x 4 float32."""
    old_h, old_w = original_size
    scale = longest_edge / max(old_h, old_w)
    new_h, new_w = int(old_h * scale + 0.5), int(old_w * scale + 0.5)
    factor = torch.tensor([new_w / old_w, new_h / old_h] * 2, dtype=torch.float32)
    return (torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4) * factor)[None]


def sam_to_detections(
    masks: Any, iou_scores: Any, boxes: Sequence[GroundedBox], concepts: Sequence[str]
) -> list[ConceptDetection]:
    """SAM's post-processed masks (N x 1 x H x W, bool) and predicted IoUs (N x 1) for the
    `boxes` it was prompted with → one detection per non-empty mask, scored
    box score × IoU (SAM's IoU head is unbounded, so it is clipped to [0, 1])."""
    mask_array = to_numpy(masks).astype(bool).reshape(len(boxes), *np.shape(masks)[-2:])
    ious = np.clip(to_numpy(iou_scores).astype(np.float64).reshape(len(boxes), -1)[:, 0], 0, 1)
    found = []
    for box, mask, iou in zip(boxes, mask_array, ious, strict=True):
        if mask.any():
            found.append(ConceptDetection(concepts[box.concept], mask, box.score * float(iou)))
    return found


# ------------------------------------------------------------------ backend


class GroundedSAMSegmenter:
    """Any concept by name: Grounding DINO finds boxes from text, SAM draws their masks."""

    def __init__(
        self,
        concepts: Sequence[str] = ("wheel",),
        detector: str = "IDEA-Research/grounding-dino-tiny",
        sam: str = "facebook/sam-vit-base",
        prompts: Mapping[str, str] | None = None,
        box_threshold: float = 0.35,
        text_threshold: float = 0.25,
        max_boxes: int = 50,
        device: str = "auto",
        batch_size: int = 4,
        allow_download: bool = False,
    ) -> None:
        from transformers import AutoProcessor, GroundingDinoForObjectDetection, SamModel

        for label, value in (("box_threshold", box_threshold), ("text_threshold", text_threshold)):
            if not 0.0 <= value < 1.0:
                raise ValueError(f"{NAME}: {label} must be in [0, 1), got {value}")
        if max_boxes < 1:
            raise ValueError(f"{NAME}: max_boxes must be at least 1, got {max_boxes}")
        # any concept: names the vocabulary knows are canonicalised, others kept normalised
        self.concepts: tuple[str, ...] = tuple(
            dict.fromkeys(canonical(c, strict=False) for c in concepts)
        )
        given = {canonical(k, strict=False): str(v) for k, v in (prompts or {}).items()}
        self.prompts = [given.get(c, c.replace("_", " ")).strip().lower() for c in self.concepts]
        for concept, prompt in zip(self.concepts, self.prompts, strict=True):
            if not prompt or any(s in prompt for s in SEPARATORS):
                raise ValueError(f"{NAME}: prompt {prompt!r} for {concept} is empty or has . or ?")
        self.device = _device(device)
        self.detector_processor = load_pretrained(AutoProcessor, detector, allow_download, NAME)
        loaded = load_pretrained(GroundingDinoForObjectDetection, detector, allow_download, NAME)
        self.detector = loaded.eval().to(self.device)
        self.sam_processor = load_pretrained(AutoProcessor, sam, allow_download, NAME)
        self.sam = load_pretrained(SamModel, sam, allow_download, NAME).eval().to(self.device)
        self.box_threshold, self.text_threshold = float(box_threshold), float(text_threshold)
        self.max_boxes, self.batch_size = int(max_boxes), int(batch_size)
        self.groups = self._prompt_groups()
        prompt_list = ";".join(f"{c}={p}" for c, p in zip(self.concepts, self.prompts, strict=True))
        self.id = (
            f"{NAME}@{VERSION}({weights_id(self.detector, detector)},"
            f"{weights_id(self.sam, sam)},box={box_threshold:g},text={text_threshold:g},"
            f"max_boxes={max_boxes},prompts={prompt_list})"
        )

    def _prompt_groups(self) -> list[list[int]]:
        tokenizer = self.detector_processor.tokenizer
        lengths = [len(tokenizer.tokenize(prompt_text([p]))) for p in self.prompts]
        return prompt_groups(lengths, int(self.detector.config.max_text_len))

    @torch.no_grad()
    def _boxes(self, batch: Sequence[np.ndarray]) -> list[list[GroundedBox]]:
        """Grounding DINO, one call per prompt group (one for short vocabularies)."""
        tokenizer = self.detector_processor.tokenizer
        separator_ids = tokenizer.convert_tokens_to_ids(list(SEPARATORS))
        # not [UNK]: a word the tokenizer does not know still belongs to its phrase
        specials = [tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id]
        found: list[list[GroundedBox]] = [[] for _ in batch]
        for group in self.groups:
            text = prompt_text([self.prompts[i] for i in group])
            inputs = self.detector_processor(
                images=list(batch), text=[text] * len(batch), return_tensors="pt"
            )
            outputs = self.detector(**{k: v.to(self.device) for k, v in inputs.items()})
            positions = token_concepts(inputs["input_ids"][0], separator_ids, specials, len(group))
            for index, image in enumerate(batch):
                boxes = grounding_to_boxes(
                    outputs.logits[index].cpu(), outputs.pred_boxes[index].cpu(), positions,
                    len(group), image.shape[:2], self.box_threshold, self.text_threshold,
                    self.max_boxes,
                )  # fmt: skip
                found[index].extend(GroundedBox(group[b.concept], b.score, b.box) for b in boxes)
        return [sorted(b, key=lambda x: -x.score)[: self.max_boxes] for b in found]

    @torch.no_grad()
    def _masks(
        self, batch: Sequence[np.ndarray], boxes: list[list[GroundedBox]]
    ) -> list[list[ConceptDetection]]:
        """SAM: image embeddings once per batch, then one prompt call per image."""
        results: list[list[ConceptDetection]] = [[] for _ in batch]
        wanted = [i for i, image_boxes in enumerate(boxes) if image_boxes]
        if not wanted:
            return results
        inputs = self.sam_processor(images=[batch[i] for i in wanted], return_tensors="pt")
        embeddings = self.sam.get_image_embeddings(inputs["pixel_values"].to(self.device))
        longest_edge = int(self.sam_processor.image_processor.size["longest_edge"])
        for row, index in enumerate(wanted):
            size = tuple(int(v) for v in inputs["original_sizes"][row])
            prompts = box_prompts([b.box for b in boxes[index]], size, longest_edge)
            outputs = self.sam(
                image_embeddings=embeddings[row : row + 1],
                input_boxes=prompts.to(self.device),
                multimask_output=False,
            )
            masks = self.sam_processor.post_process_masks(
                outputs.pred_masks.cpu(),
                inputs["original_sizes"][row : row + 1],
                inputs["reshaped_input_sizes"][row : row + 1],
            )[0]
            results[index] = sam_to_detections(
                masks, outputs.iou_scores[0].cpu(), boxes[index], self.concepts
            )
        return results

    def segment(
        self, images: Sequence[np.ndarray], labels: Sequence[int | None]
    ) -> list[list[ConceptDetection]]:
        _check_images(images, labels, NAME)
        per_call = max(1, self.batch_size)
        results: list[list[ConceptDetection]] = []
        for start in range(0, len(images), per_call):
            batch = list(images[start : start + per_call])
            results.extend(self._masks(batch, self._boxes(batch)))
        return results


__all__ = [
    "GroundedBox",
    "GroundedSAMSegmenter",
    "box_prompts",
    "grounding_to_boxes",
    "prompt_groups",
    "prompt_text",
    "sam_to_detections",
    "token_concepts",
]
