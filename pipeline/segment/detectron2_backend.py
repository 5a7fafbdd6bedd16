"""`detectron2`: LVIS Mask R-CNN (parts such as wheel, headlight, license_plate) and COCO
panoptic FPN (stuff such as road, grass, sky, snow, sand, water, tree, plus the COCO things).

detectron2 is not on PyPI and is imported only when this backend is built; install it with

    pip install 'git+https://github.com/facebookresearch/detectron2.git'

Each requested concept is routed to one model: COCO panoptic if it covers the concept (things
and stuff), else LVIS (the categories in `data/lvis_subset.yaml`). Only the models some concept
needs are loaded, once, and run batched. `models=("lvis",)` or `("panoptic",)` restricts the
choice. Configs are detectron2 model-zoo names or local YAML files; weights are model-zoo
checkpoints (fetched by detectron2 on first use) or a local file (`lvis_weights=PATH`,
`panoptic_weights=PATH`).

The conversion of detectron2's outputs into our records is in pure functions that do not import
detectron2 (`detections_from_instances`, `panoptic_to_detections`; `instances_to_detections` is
shared with torchvision, in `pipeline.segment.quality`), so it is tested without detectron2.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.segment.base import ConceptDetection
from pipeline.segment.quality import instances_to_detections, to_numpy
from pipeline.segment.vocabulary import (
    backends_for,
    canonical,
    coco_stuff_names,
    coco_thing_names,
    label_map,
    lvis_subset,
)

VERSION = "v1"
BACKEND = "detectron2"
INSTALL = "pip install 'git+https://github.com/facebookresearch/detectron2.git'"
LVIS_CONFIG = "LVISv1-InstanceSegmentation/mask_rcnn_R_50_FPN_1x.yaml"
PANOPTIC_CONFIG = "COCO-PanopticSegmentation/panoptic_fpn_R_50_3x.yaml"
MODELS = ("panoptic", "lvis")


# ------------------------------------------------------------------ pure conversion


def detections_from_instances(
    instances: Any,
    class_names: Sequence[str],
    vocabulary: Mapping[str, str] | None = None,
    **options: Any,
) -> list[ConceptDetection]:
    """Detections from a detectron2 `Instances` (anything with `.pred_classes`, `.scores`,
    `.pred_masks`); options as `instances_to_detections`."""
    return instances_to_detections(
        instances.pred_classes,
        instances.scores,
        instances.pred_masks,
        class_names,
        vocabulary,
        **options,
    )


def panoptic_to_detections(
    panoptic_seg: Any,
    segments_info: Sequence[Mapping[str, Any]],
    thing_classes: Sequence[str],
    stuff_classes: Sequence[str],
    vocabulary: Mapping[str, str] | None = None,
    *,
    concepts: Collection[str] | None = None,
    score_threshold: float = 0.0,
) -> list[ConceptDetection]:
    """Detections from a panoptic result: `panoptic_seg` (H x W segment ids, 0 = void) and
    `segments_info` ({id, isthing, category_id, score?}). `category_id` indexes `thing_classes`
    for things and `stuff_classes` for stuff; stuff segments carry no score (1.0 is used)."""
    if vocabulary is None:
        vocabulary = label_map([*thing_classes, *stuff_classes])
    segment_ids = to_numpy(panoptic_seg)
    if segment_ids.ndim != 2:
        raise ValueError(f"panoptic_seg must be H x W, got shape {segment_ids.shape}")
    wanted = None if concepts is None else set(concepts)
    found: list[ConceptDetection] = []
    for info in segments_info:
        names = thing_classes if info.get("isthing") else stuff_classes
        category = int(info["category_id"])
        if not 0 <= category < len(names):
            kind = "thing" if info.get("isthing") else "stuff"
            raise ValueError(f"segment {info.get('id')}: {kind} category {category} out of range")
        concept = vocabulary.get(names[category])
        score = float(info.get("score", 1.0))
        if concept is None or (wanted is not None and concept not in wanted):
            continue
        if score < score_threshold:
            continue
        found.append(ConceptDetection(concept, segment_ids == int(info["id"]), score))
    return found


def route_concepts(
    concepts: Sequence[str], models: Sequence[str] = MODELS
) -> dict[str, tuple[str, ...]]:
    """Model name → the concepts it serves: panoptic first when allowed, else LVIS."""
    panoptic = set(label_map([*coco_thing_names(), *coco_stuff_names()]).values())
    lvis = set(lvis_subset().values())
    routes: dict[str, list[str]] = {model: [] for model in models}
    missing = []
    for concept in concepts:
        if "panoptic" in routes and concept in panoptic:
            routes["panoptic"].append(concept)
        elif "lvis" in routes and concept in lvis:
            routes["lvis"].append(concept)
        else:
            missing.append(concept)
    if missing:
        hints = "; ".join(f"{c}: {', '.join(backends_for(c))}" for c in missing)
        raise ValueError(
            f"{BACKEND} with models {tuple(models)} does not find {', '.join(missing)} "
            f"(backends that do — {hints})"
        )
    return {model: tuple(found) for model, found in routes.items() if found}


# ------------------------------------------------------------------ the backend


def _import_detectron2() -> Any:
    try:
        import detectron2  # noqa: F401
        from detectron2 import model_zoo
        from detectron2.checkpoint import DetectionCheckpointer
        from detectron2.config import get_cfg
        from detectron2.data import MetadataCatalog
        from detectron2.data import transforms as T
        from detectron2.modeling import build_model
    except ImportError as error:
        raise ImportError(
            f"the `{BACKEND}` segmenter needs detectron2, which is not installed ({error}). "
            f"It is not on PyPI; install it with: {INSTALL} (see docs/segmentation.md)"
        ) from None
    return {
        "model_zoo": model_zoo,
        "DetectionCheckpointer": DetectionCheckpointer,
        "get_cfg": get_cfg,
        "MetadataCatalog": MetadataCatalog,
        "T": T,
        "build_model": build_model,
    }


class _Predictor:
    """One detectron2 model, loaded once: detectron2's DefaultPredictor, batched."""

    def __init__(self, d2: dict[str, Any], config: str, weights: str | None, options: dict) -> None:
        cfg = d2["get_cfg"]()
        local = Path(config).expanduser()
        cfg.merge_from_file(
            str(local) if local.is_file() else d2["model_zoo"].get_config_file(config)
        )
        if weights:
            path = Path(weights).expanduser()
            if not path.is_file():
                raise FileNotFoundError(f"{BACKEND}: weights file not found: {path}")
            cfg.MODEL.WEIGHTS = str(path)
            self.weights_id = f"{path.name}:{_file_digest(path)}"
        else:
            cfg.MODEL.WEIGHTS = d2["model_zoo"].get_checkpoint_url(config)
            self.weights_id = Path(cfg.MODEL.WEIGHTS).name
        cfg.MODEL.DEVICE = options["device"]
        cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = options["score_threshold"]
        cfg.freeze()
        self.cfg = cfg
        self.model = d2["build_model"](cfg).eval()
        d2["DetectionCheckpointer"](self.model).load(cfg.MODEL.WEIGHTS)
        metadata = d2["MetadataCatalog"].get(cfg.DATASETS.TEST[0])
        self.thing_classes = list(getattr(metadata, "thing_classes", []))
        self.stuff_classes = list(getattr(metadata, "stuff_classes", []))
        self.resize = d2["T"].ResizeShortestEdge(
            [cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MIN_SIZE_TEST], cfg.INPUT.MAX_SIZE_TEST
        )

    def __call__(self, images: Sequence[np.ndarray]) -> list[dict[str, Any]]:
        import torch

        inputs = []
        for rgb in images:
            pixels = rgb[:, :, ::-1] if self.cfg.INPUT.FORMAT == "BGR" else rgb
            resized = self.resize.get_transform(pixels).apply_image(pixels)
            tensor = torch.as_tensor(
                np.ascontiguousarray(resized).astype("float32").transpose(2, 0, 1)
            )
            inputs.append({"image": tensor, "height": rgb.shape[0], "width": rgb.shape[1]})
        with torch.no_grad():
            return list(self.model(inputs))


def _file_digest(path: Path) -> str:
    from pipeline.hashing import sha256_file

    return sha256_file(path)[:12]


class Detectron2Segmenter:
    """Part and stuff masks from detectron2's LVIS Mask R-CNN and COCO panoptic FPN."""

    def __init__(
        self,
        concepts: Sequence[str] = ("wheel", "road"),
        models: Sequence[str] = MODELS,
        lvis_config: str = LVIS_CONFIG,
        lvis_weights: str | None = None,
        panoptic_config: str = PANOPTIC_CONFIG,
        panoptic_weights: str | None = None,
        score_threshold: float = 0.5,
        device: str = "auto",
        batch_size: int = 4,
    ) -> None:
        unknown_models = [m for m in models if m not in MODELS]
        if unknown_models or not models:
            raise ValueError(f"{BACKEND}: models must be a subset of {MODELS}, got {models}")
        wanted = tuple(dict.fromkeys(canonical(c) for c in concepts))
        if not wanted:
            raise ValueError(f"{BACKEND}: no concepts requested")
        self.routes = route_concepts(wanted, models)
        d2 = _import_detectron2()
        if device == "auto":
            import torch

            device = "cuda" if torch.cuda.is_available() else "cpu"
        options = {"device": device, "score_threshold": float(score_threshold)}
        self.predictors: dict[str, _Predictor] = {}
        if "lvis" in self.routes:
            self.predictors["lvis"] = _Predictor(d2, lvis_config, lvis_weights, options)
        if "panoptic" in self.routes:
            self.predictors["panoptic"] = _Predictor(d2, panoptic_config, panoptic_weights, options)
        self.concepts: tuple[str, ...] = wanted
        self.score_threshold = float(score_threshold)
        self.batch_size = int(batch_size)
        self.lvis_vocabulary = lvis_subset()
        parts = ",".join(f"{name}={p.weights_id}" for name, p in sorted(self.predictors.items()))
        self.id = f"{BACKEND}@{VERSION}({parts},score={self.score_threshold:g})"

    def _convert(self, model: str, output: dict[str, Any]) -> list[ConceptDetection]:
        predictor = self.predictors[model]
        concepts = self.routes[model]
        if model == "panoptic":
            panoptic_seg, segments_info = output["panoptic_seg"]
            return panoptic_to_detections(
                panoptic_seg,
                segments_info,
                predictor.thing_classes,
                predictor.stuff_classes,
                concepts=concepts,
                score_threshold=self.score_threshold,
            )
        return detections_from_instances(
            output["instances"],
            predictor.thing_classes,
            self.lvis_vocabulary,
            concepts=concepts,
            score_threshold=self.score_threshold,
        )

    def segment(
        self, images: Sequence[np.ndarray], labels: Sequence[int | None]
    ) -> list[list[ConceptDetection]]:
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        found: list[list[ConceptDetection]] = [[] for _ in images]
        for model, predictor in self.predictors.items():
            for start in range(0, len(images), self.batch_size):
                outputs = predictor(images[start : start + self.batch_size])
                for offset, output in enumerate(outputs):
                    found[start + offset].extend(self._convert(model, output))
        return found


def create(**options: Any) -> Detectron2Segmenter:
    return Detectron2Segmenter(**options)
