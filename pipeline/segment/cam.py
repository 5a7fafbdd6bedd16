"""`cam`: the offline concept segmenter, built on nothing but an ImageNet classifier.

Two mechanisms, chosen per concept (see docs/segment_cam.md for measurements and limits):

* `object` / `background`: Grad-CAM of the image's class (its label, else the classifier's top-1
  on the whole image) on the last convolutional feature map, upsampled to the working image,
  used to initialise OpenCV GrabCut (sure foreground at the CAM peak, sure background where the
  CAM is near zero), then cleaned (components touching the peak, holes filled). `background` is
  exactly the complement of the `object` mask. At 7-10 cells across, a CAM localises objects,
  not parts. `object_method="layercam"` uses LayerCAM of blocks 3-6 at two sizes instead
  (layercam.py; measured in docs/segment_cam.md), keeping every GrabCut component.
* part / thing concepts (`wheel`, `helmet`, ... see `cam_concepts.py`): square windows of
  `windows` pixels slide over the image resized to `work_size` (longer side), with a stride of
  `stride_frac` × window; every crop is cut from the full-resolution image, resized to
  `crop_size` and classified. Crops of all images in a call are classified together, in
  batches of the classifier's own batch size. p(concept) = summed probability of the concept's
  ImageNet classes. Each crop votes for the pixels it covers; `aggregate="mean"` weights the
  votes with a Gaussian centred on the window (σ = side / 4) and averages them, `"max"` keeps
  the per-pixel maximum (blockier: a confident window paints all of itself). The heat map is
  thresholded at `threshold` and snapped to SLIC superpixels (a superpixel is in when its mean
  heat exceeds the threshold). No pixel above the threshold → no detection.

Scores (in [0, 1]):

* `object`: p(class) × agreement, where p(class) is the softmax probability of the CAM's class
  on the working image and agreement is the IoU between the final mask and the thresholded CAM
  it started from (low when GrabCut had to move far away from the CAM's evidence).
* `background`: the same score as `object` (it is the same cut).
* part concepts: the maximum of the heat map (the most confident local p(concept)).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from pipeline.segment.base import ConceptDetection
from pipeline.segment.cam_engine import CamEngines

if TYPE_CHECKING:
    from pipeline.classify import Classifier
from pipeline.segment.cam_concepts import (
    BACKGROUND,
    CAM_CONCEPT_CLASSES,
    OBJECT,
    concept_class_indices,
    supported_concepts,
)
from pipeline.segment.layercam import layercam_map
from pipeline.segment.refine import (
    as_rgb,
    fill_holes,
    gaussian_window,
    grabcut_from_cam,
    keep_seeded_components,
    resize_longer,
    resize_map,
    resize_mask,
    superpixel_mask,
)

VERSION = "v1"

# CAM → GrabCut initialisation, on the CAM normalised to a peak of 1 (part of VERSION).
CAM_FG = 0.25  # probable foreground at or above this
CAM_SURE_FG = 0.6  # sure foreground (the peak region) at or above this
CAM_SURE_BG = 0.05  # sure background below this

# LayerCAM (`object_method: layercam`, see layercam.py): settings tuned on the even half of the
# sorted COCO panoptic sample with tf_efficientnet_lite2 (benchmarks/mask_quality.py)
LAYERCAM_VERSION = "v1"
LAYERCAM_SIZES = (320, 448)
LAYERCAM_BLOCKS = (3, 4, 5, 6)
OBJECT_METHODS = ("gradcam", "layercam")
# (probable fg, sure fg, sure bg) seeding GrabCut, per method
OBJECT_THRESHOLDS = {
    "gradcam": (CAM_FG, CAM_SURE_FG, CAM_SURE_BG),
    "layercam": (0.3, 0.6, 0.1),
}

Box = tuple[int, int, int, int]  # x, y, width, height on the working image


def window_positions(length: int, window: int, stride: int) -> list[int]:
    """Start offsets of a window sliding over `length` pixels, the last one flush with the end."""
    if length <= window:
        return [0]
    starts = list(range(0, length - window + 1, stride))
    if starts[-1] != length - window:
        starts.append(length - window)
    return starts


class CamSegmenter:
    """Concept masks from an ImageNet classifier alone (CAM + GrabCut, crop classification).

    `classifier` is the loaded classifier whose evidence it uses (the build passes its own, or
    the one the `classifier` option names); crops go through it in batches of its
    `batch_size`. `concepts`: `object`, `background` and the names in
    `cam_concepts.CAM_CONCEPT_CLASSES`. `work_size`, `windows`, `stride_frac`, `crop_size`,
    `aggregate`, `threshold` and `superpixels` shape part masks; `grabcut_iters` shapes object
    masks. Everything that changes a mask is in `id`. `engine` (`auto`: ONNX Runtime where it
    matches torch, else torch; `torch`) runs the no-gradient passes (cam_engine.py), not in `id`.
    """

    def __init__(
        self,
        concepts: Sequence[str] = (OBJECT, BACKGROUND),
        classifier: Classifier | None = None,
        work_size: int = 320,
        windows: Sequence[int] = (80, 120),
        stride_frac: float = 0.5,
        threshold: float = 0.4,
        crop_size: int = 160,
        aggregate: str = "mean",
        superpixels: int = 200,
        grabcut_iters: int = 5,
        object_method: str = "gradcam",
        layercam_sizes: Sequence[int] = LAYERCAM_SIZES,
        layercam_blocks: Sequence[int] = LAYERCAM_BLOCKS,
        layercam_top_k: int = 5,
        engine: str = "auto",
    ) -> None:
        concepts = tuple(dict.fromkeys(concepts))
        unknown = [c for c in concepts if c not in supported_concepts()]
        if unknown:
            raise ValueError(
                f"cam segmenter: unknown concept(s) {', '.join(map(repr, unknown))}; "
                f"supported: {', '.join(supported_concepts())}"
            )
        if not concepts:
            raise ValueError("cam segmenter: no concepts requested")
        windows = tuple(int(w) for w in windows)
        if not windows or min(windows) < 8:
            raise ValueError(f"cam segmenter: windows must be ≥ 8 px, got {windows}")
        if not 0.0 < stride_frac <= 1.0:
            raise ValueError(f"cam segmenter: stride_frac must be in (0, 1], got {stride_frac}")
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"cam segmenter: threshold must be in (0, 1), got {threshold}")
        if aggregate not in ("mean", "max"):
            raise ValueError(f"cam segmenter: aggregate must be 'mean' or 'max', got {aggregate!r}")
        if work_size < 32 or crop_size < 32:
            raise ValueError("cam segmenter: work_size ≥ 32, crop_size ≥ 32")
        if classifier is None:
            raise ValueError("cam segmenter: needs a loaded classifier (`classifier=`)")
        if object_method not in OBJECT_METHODS:
            raise ValueError(
                f"cam segmenter: object_method must be one of {', '.join(OBJECT_METHODS)}, "
                f"got {object_method!r}"
            )
        if not layercam_sizes or min(layercam_sizes) < 32 or layercam_top_k < 1:
            raise ValueError("cam segmenter: layercam_sizes ≥ 32 px and layercam_top_k ≥ 1")
        self.object_method = object_method
        self.layercam_sizes = tuple(int(v) for v in layercam_sizes)
        self.layercam_blocks = tuple(int(v) for v in layercam_blocks)
        self.layercam_top_k = int(layercam_top_k)
        self._thresholds = OBJECT_THRESHOLDS[object_method]
        self.classifier = classifier
        self.concepts: tuple[str, ...] = concepts
        self.batch_size = int(getattr(classifier, "batch_size", 32))
        self.work_size = int(work_size)
        self.windows = windows
        self.stride_frac = float(stride_frac)
        self.threshold = float(threshold)
        self.crop_size = int(crop_size)
        self.aggregate = aggregate
        self.superpixels = int(superpixels)
        self.grabcut_iters = int(grabcut_iters)
        self.parts = tuple(c for c in concepts if c in CAM_CONCEPT_CLASSES)
        self._part_classes = [list(concept_class_indices(c)) for c in self.parts]

        config = getattr(classifier, "data_config", None) or {}
        mean = np.asarray(config.get("mean", (0.485, 0.456, 0.406)), np.float32) * 255.0
        std = np.asarray(config.get("std", (0.229, 0.224, 0.225)), np.float32) * 255.0
        self._mean, self._std = mean, std
        gradcam = object_method == "gradcam" and bool({OBJECT, BACKGROUND} & set(concepts))
        passes = ("features",) * gradcam + ("crops",) * bool(self.parts)
        self._engines = CamEngines(classifier, engine, passes, self.work_size, self.crop_size)

        wins = "-".join(str(w) for w in windows)
        self.id = (
            f"cam@{VERSION}({classifier.id},work={self.work_size},win={wins},"
            f"stride={self.stride_frac:g},crop={self.crop_size},agg={aggregate},"
            f"thr={self.threshold:g},sp={self.superpixels},gc={self.grabcut_iters}"
            + self._layercam_id()
            + ")"
        )

    @property
    def engine_info(self) -> dict[str, Any]:
        """What runs where and why (exports and checks the ORT engines on first use)."""
        return self._engines.info

    def _layercam_id(self) -> str:
        """The LayerCAM settings (empty for Grad-CAM, so the old ids, and caches, stay)."""
        if self.object_method != "layercam":
            return ""
        sizes = "-".join(map(str, self.layercam_sizes))
        blocks = "-".join(map(str, self.layercam_blocks))
        fg, sure_fg, sure_bg = self._thresholds
        return (
            f",obj=layercam@{LAYERCAM_VERSION}(sizes={sizes},blocks={blocks},"
            f"top={self.layercam_top_k},seed={fg:g}/{sure_fg:g}/{sure_bg:g})"
        )

    # ------------------------------------------------------------------ public API

    def segment(
        self, images: Sequence[np.ndarray], labels: Sequence[int | None]
    ) -> list[list[ConceptDetection]]:
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        rgb = [as_rgb(image) for image in images]
        works = [resize_longer(image, self.work_size) for image in rgb]
        found: list[dict[str, ConceptDetection]] = [{} for _ in rgb]

        if OBJECT in self.concepts or BACKGROUND in self.concepts:
            if self.object_method == "layercam":
                cams = self._layercams(rgb, [work for work, _ in works], labels)
            else:
                cams = self._cams([work for work, _ in works], labels)
            # GrabCut (OpenCV, GIL released) of one image runs while the next image's CAM is
            # computed, and on every core: each cut is seeded, so the masks do not change
            with ThreadPoolExecutor(os.cpu_count() or 1, thread_name_prefix="grabcut") as pool:
                cuts = [
                    pool.submit(self._object_background, image.shape[:2], work, *cam)
                    for image, (work, _), cam in zip(rgb, works, cams, strict=True)
                ]
            for i, cut in enumerate(cuts):
                found[i].update(cut.result())

        if self.parts:
            heats = self._part_heats(rgb, works)
            for i, (image, (work, _)) in enumerate(zip(rgb, works, strict=True)):
                for concept, heat in zip(self.parts, heats[i], strict=True):
                    detection = self._part_detection(concept, image.shape[:2], work, heat)
                    if detection is not None:
                        found[i][concept] = detection

        return [[f[c] for c in self.concepts if c in f] for f in found]

    # ------------------------------------------------------------------ helpers

    def _normalise(self, batch: Sequence[np.ndarray]) -> torch.Tensor:
        """N x H x W x 3 uint8 → normalised N x 3 x H x W float, channels-last in memory.

        Channels-last is what oneDNN's CPU kernels want: measured 1.4-1.7x faster than
        contiguous NCHW for EfficientNet-Lite0's depthwise convolutions at batch 64.
        """
        x = (np.stack(batch).astype(np.float32) - self._mean) / self._std
        tensor = torch.from_numpy(x).permute(0, 3, 1, 2)  # NHWC memory = channels_last
        return tensor.to(self.classifier.device).contiguous(memory_format=torch.channels_last)

    # ---- object / background

    def _cams(
        self, works: Sequence[np.ndarray], labels: Sequence[int | None]
    ) -> Iterator[tuple[np.ndarray, int, float]]:
        """Per working image: (Grad-CAM at its size normalised to peak 1, class, p(class)).

        One forward pass per image (about the cost of two 224 px crops), so an image's CAM does
        not depend on which other images share the call; the backward pass only goes through
        the head (global pool + linear) and costs next to nothing.
        """
        num_classes = len(self.classifier.class_names)
        for label in labels:
            if label is not None and not 0 <= int(label) < num_classes:
                raise ValueError(f"label {label} outside the classifier's {num_classes} classes")
        with torch.inference_mode(False), torch.enable_grad():
            for work, label in zip(works, labels, strict=True):
                feats = self._engines.features(self._normalise([work]))  # no gradient
                if feats.ndim != 4:
                    raise ValueError(
                        f"{self.classifier.id}: forward_features gives a {feats.ndim}-d "
                        "tensor; CAM needs a convolutional feature map"
                    )
                feats = feats.detach().float().requires_grad_(True)
                logits = self.classifier.model.forward_head(feats).float()[0]
                probs = torch.softmax(logits.detach(), dim=0)
                cls = int(label) if label is not None else int(probs.argmax())
                (grads,) = torch.autograd.grad(logits[cls], feats)
                weights = grads.mean(dim=(2, 3), keepdim=True)
                cam_map = torch.relu((weights * feats).sum(dim=1))[0].detach().cpu().numpy()
                cam = np.clip(resize_map(cam_map, work.shape[:2]), 0.0, None)
                peak = float(cam.max())
                cam = cam / peak if peak > 0 else np.zeros_like(cam)
                yield cam, cls, float(probs[cls])

    def _layercams(
        self,
        images: Sequence[np.ndarray],
        works: Sequence[np.ndarray],
        labels: Sequence[int | None],
    ) -> list[tuple[np.ndarray, int, float]]:
        """Per image: (LayerCAM of blocks × sizes on the working grid, class, p(class))."""
        num_classes = len(self.classifier.class_names)
        out = []
        for image, work, label in zip(images, works, labels, strict=True):
            if label is not None and not 0 <= int(label) < num_classes:
                raise ValueError(f"label {label} outside the classifier's {num_classes} classes")
            out.append(
                layercam_map(
                    self.classifier.model,
                    self._normalise,
                    image,
                    self.layercam_sizes,
                    self.layercam_blocks,
                    self.layercam_top_k,
                    None if label is None else int(label),
                    work.shape[:2],
                )
            )
        return out

    def _object_background(
        self,
        full_shape: tuple[int, int],
        work: np.ndarray,
        cam: np.ndarray,
        cls: int,
        prob: float,
    ) -> dict[str, ConceptDetection]:
        if not cam.any():
            return {}
        fg, sure_fg, sure_bg = self._thresholds
        cam_mask = cam >= fg
        refined = grabcut_from_cam(work, cam, fg, sure_fg, sure_bg, iterations=self.grabcut_iters)
        if self.object_method == "gradcam":
            refined = keep_seeded_components(refined, cam >= sure_fg)
        # LayerCAM maps cover several things: every component is kept
        refined = fill_holes(refined)
        union = np.logical_or(refined, cam_mask).sum()
        agreement = float(np.logical_and(refined, cam_mask).sum() / union) if union else 0.0
        score = float(np.clip(prob * agreement, 0.0, 1.0))
        obj = resize_mask(refined, full_shape)
        out: dict[str, ConceptDetection] = {}
        if OBJECT in self.concepts and obj.any():
            out[OBJECT] = ConceptDetection(OBJECT, obj, score)
        if BACKGROUND in self.concepts and obj.any() and not obj.all():
            out[BACKGROUND] = ConceptDetection(BACKGROUND, ~obj, score)
        return out

    # ---- part / thing concepts

    def boxes(self, height: int, width: int) -> list[Box]:
        """Crop windows on a working image of this size, every window size in turn."""
        out: list[Box] = []
        for window in self.windows:
            stride = max(1, round(window * self.stride_frac))
            bw, bh = min(window, width), min(window, height)
            for y in window_positions(height, window, stride):
                for x in window_positions(width, window, stride):
                    out.append((x, y, bw, bh))
        return out

    def _crop(self, image: np.ndarray, box: Box, scale: float) -> np.ndarray:
        import cv2

        height, width = image.shape[:2]
        x, y, bw, bh = box
        x0, y0 = min(round(x / scale), width - 1), min(round(y / scale), height - 1)
        x1 = max(x0 + 1, min(width, round((x + bw) / scale)))
        y1 = max(y0 + 1, min(height, round((y + bh) / scale)))
        crop = image[y0:y1, x0:x1]
        shrink = crop.shape[0] * crop.shape[1] > self.crop_size * self.crop_size
        interp = cv2.INTER_AREA if shrink else cv2.INTER_CUBIC
        return cv2.resize(crop, (self.crop_size, self.crop_size), interpolation=interp)

    def _crop_batches(
        self,
        jobs: list[tuple[int, int]],
        images: Sequence[np.ndarray],
        scales: list[float],
        boxes: list[list[Box]],
    ) -> Iterator[tuple[list[tuple[int, int]], torch.Tensor]]:
        """Crops are cut lazily, one batch at a time, so memory stays at one batch."""
        for start in range(0, len(jobs), self.batch_size):
            chunk = jobs[start : start + self.batch_size]
            crops = [self._crop(images[i], boxes[i][b], scales[i]) for i, b in chunk]
            yield chunk, self._normalise(crops)

    def _part_heats(
        self, images: Sequence[np.ndarray], works: Sequence[tuple[np.ndarray, float]]
    ) -> list[list[np.ndarray]]:
        """Per image, per part concept: the heat map on the working image."""
        boxes = [self.boxes(*work.shape[:2]) for work, _ in works]
        scales = [scale for _, scale in works]
        votes = [np.zeros((len(b), len(self.parts)), np.float32) for b in boxes]
        jobs = [(i, b) for i, image_boxes in enumerate(boxes) for b in range(len(image_boxes))]
        with torch.inference_mode():
            for chunk, x in self._crop_batches(jobs, images, scales, boxes):
                logits = self._engines.logits(x)
                probs = torch.softmax(logits.float(), dim=1).cpu().numpy()
                for column, classes in enumerate(self._part_classes):
                    p = probs[:, classes].sum(axis=1)
                    for (i, b), value in zip(chunk, p, strict=True):
                        votes[i][b, column] = value
        return [
            [
                self._aggregate(work.shape[:2], boxes[i], votes[i][:, column])
                for column in range(len(self.parts))
            ]
            for i, (work, _) in enumerate(works)
        ]

    def _aggregate(
        self, shape: tuple[int, int], boxes: list[Box], values: np.ndarray
    ) -> np.ndarray:
        if self.aggregate == "max":
            heat = np.zeros(shape, np.float32)
            for (x, y, bw, bh), value in zip(boxes, values, strict=True):
                view = heat[y : y + bh, x : x + bw]
                np.maximum(view, value, out=view)
            return heat
        num = np.zeros(shape, np.float64)
        den = np.zeros(shape, np.float64)
        for (x, y, bw, bh), value in zip(boxes, values, strict=True):
            gy = gaussian_window(bh)
            gx = gaussian_window(bw)
            weight = gy[:, None] * gx[None, :]
            num[y : y + bh, x : x + bw] += weight * float(value)
            den[y : y + bh, x : x + bw] += weight
        return (num / np.maximum(den, 1e-12)).astype(np.float32)

    def _part_detection(
        self, concept: str, full_shape: tuple[int, int], work: np.ndarray, heat: np.ndarray
    ) -> ConceptDetection | None:
        if not (heat > self.threshold).any():
            return None
        mask = superpixel_mask(work, heat, self.threshold, self.superpixels)
        full = resize_mask(mask, full_shape)
        if not full.any():
            return None
        return ConceptDetection(concept, full, float(np.clip(heat.max(), 0.0, 1.0)))
