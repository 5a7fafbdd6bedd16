"""Segmenter backends, created by name from the build config."""

from __future__ import annotations

from typing import Any

from pipeline.registry import Registry
from pipeline.segment.base import ConceptDetection, Segmenter
from pipeline.segment.cam_concepts import cam_facts, independent_mask_classifier

segmenters: Registry[Segmenter] = Registry("segmenter")


# masks from another model's evidence than the audited one's, stating what they are worth
@segmenters.register(
    "cam",
    needs_classifier=True,
    default_classifier=independent_mask_classifier,
    facts=cam_facts,
)
def _cam(**options: Any) -> Segmenter:
    from pipeline.segment.cam import CamSegmenter

    return CamSegmenter(**options)


@segmenters.register("torchvision-maskrcnn", settings=("batch_size",))
def _torchvision_maskrcnn(**options: Any) -> Segmenter:
    from pipeline.segment.torchvision_maskrcnn import TorchvisionMaskRCNNSegmenter

    return TorchvisionMaskRCNNSegmenter(**options)


@segmenters.register("detectron2", settings=("batch_size",))
def _detectron2(**options: Any) -> Segmenter:
    from pipeline.segment.detectron2_backend import Detectron2Segmenter

    return Detectron2Segmenter(**options)


@segmenters.register("annotations", settings=("max_side",))
def _annotations(**options: Any) -> Segmenter:
    from pipeline.segment.annotations import AnnotationsSegmenter

    return AnnotationsSegmenter(**options)


@segmenters.register("transformers-panoptic", settings=("batch_size",))
def _transformers_panoptic(**options: Any) -> Segmenter:
    from pipeline.segment.transformers_backend import TransformersPanopticSegmenter

    return TransformersPanopticSegmenter(**options)


@segmenters.register("clipseg", settings=("batch_size",))
def _clipseg(**options: Any) -> Segmenter:
    from pipeline.segment.transformers_backend import CLIPSegSegmenter

    return CLIPSegSegmenter(**options)


@segmenters.register("grounded-sam", settings=("batch_size",))
def _grounded_sam(**options: Any) -> Segmenter:
    from pipeline.segment.grounded_sam import GroundedSAMSegmenter

    return GroundedSAMSegmenter(**options)


def create_segmenter(backend: str, **options: Any) -> Segmenter:
    return segmenters.create(backend, **options)


__all__ = ["ConceptDetection", "Segmenter", "create_segmenter", "segmenters"]
