"""Segmenter backends, created by name from the build config."""

from __future__ import annotations

from typing import Any

from pipeline.registry import Registry
from pipeline.segment.base import ConceptDetection, Segmenter

segmenters: Registry[Segmenter] = Registry("segmenter")


@segmenters.register("cam")
def _cam(**options: Any) -> Segmenter:
    from pipeline.segment.cam import CamSegmenter

    return CamSegmenter(**options)


def create_segmenter(backend: str, **options: Any) -> Segmenter:
    return segmenters.create(backend, **options)


__all__ = ["ConceptDetection", "Segmenter", "create_segmenter", "segmenters"]
