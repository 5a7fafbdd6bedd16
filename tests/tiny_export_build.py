"""A tiny build without Prefect or the CAM segmenter, for the export and torch-dataset tests.

Three sample photos (two labelled, `rocket` unlabelled) at 64 px, a `left`/`right` half
segmenter and an inverting stylizer registered for the test, the real offline classifier, two
snow style images: 3 images x 2 concepts x 2 styles = 12 counterfactual rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pipeline.config import BuildConfig
from pipeline.segment import segmenters
from pipeline.segment.base import ConceptDetection
from pipeline.stages import Backends, run_shard
from pipeline.stages.build import finish_build, start_build
from pipeline.store import BuildStore
from pipeline.stylize import stylizers

NAME = "tiny-export"
IMAGES, CONCEPTS, STYLES = 3, 2, 2


class HalvesSegmenter:
    id = "halves"
    concepts = ("left", "right")

    def __init__(self, **options: object) -> None:
        pass

    def segment(
        self, images: Sequence[np.ndarray], labels: Sequence[int | None]
    ) -> list[list[ConceptDetection]]:
        found = []
        for image in images:
            left = np.zeros(image.shape[:2], bool)
            left[:, : image.shape[1] // 2] = True
            found.append(
                [ConceptDetection("left", left, 0.9), ConceptDetection("right", ~left, 0.8)]
            )
        return found


class InvertStylizer:
    id = "invert"

    def __init__(self, **options: object) -> None:
        pass

    def stylize(self, images: Sequence[np.ndarray], style: np.ndarray, seed: int = 0) -> list:
        return [255 - image for image in images]


def make_build(out: Path) -> Path:
    """Build the tiny dataset into `out` (registers and unregisters its two backends)."""
    segmenters.register("test-halves")(HalvesSegmenter)
    stylizers.register("test-invert")(InvertStylizer)
    try:
        config = BuildConfig.model_validate(
            {
                "name": NAME,
                "source": {"kind": "samples", "names": ["coffee", "chelsea", "rocket"]},
                "image": {"max_side": 64},
                "segment": {
                    "backend": "test-halves",
                    "concepts": ["left", "right"],
                    "min_area": 0.1,
                },
                "stylize": {
                    "backend": "test-invert",
                    "textures": ["snow"],
                    "styles_per_texture": 2,
                },
                "filter": {"require_clean_correct": False},
            }
        )
        store = BuildStore(out)
        backends = Backends(config)
        started = start_build(store, backends)
        parts: dict[str, list[str]] = {}
        for shard in started.shards:
            result = run_shard(store, shard, backends, config)
            for kind, key in result.keys.items():
                parts.setdefault(kind, []).append(key)
        finish_build(store, backends, parts, started.signature)
    finally:
        segmenters.unregister("test-halves")
        stylizers.unregister("test-invert")
    return out


def session_build(base_temp: Path) -> Path:
    """The tiny build under the pytest session's base temp folder, built once per session (the
    export and torch-dataset test modules share it; neither writes into it)."""
    out = base_temp / NAME
    if not (out / "manifest.parquet").is_file():
        make_build(out)
    return out
