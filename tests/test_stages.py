"""Stage functions without Prefect: what is computed, what is skipped, what is re-done."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.config import ImageConfig, SegmentConfig, StylizeConfig
from pipeline.records import StyleImage
from pipeline.segment.base import ConceptDetection
from pipeline.sources import SourceRef
from pipeline.stages.ingest import ingest_shard
from pipeline.stages.segment import segment_shard
from pipeline.stages.stylize import images_to_stylize, stylize_shard
from pipeline.store import BuildStore


class ArraySource:
    id = "arrays"

    def __init__(self, images: dict[str, np.ndarray]) -> None:
        self.images = images

    def refs(self):  # type: ignore[no-untyped-def]
        return [SourceRef(uri=name) for name in self.images]

    def read(self, ref: SourceRef):  # type: ignore[no-untyped-def]
        from PIL import Image

        return Image.fromarray(self.images[ref.uri])


class CountingSegmenter:
    id = "top-half"
    concepts = ("background", "sky")

    def __init__(self) -> None:
        self.calls = 0

    def segment(self, images, labels):  # type: ignore[no-untyped-def]
        self.calls += len(images)
        found = []
        for image in images:
            top = np.zeros(image.shape[:2], bool)
            top[: image.shape[0] // 2] = True
            # two instances of `sky` (left and right) must merge into one mask
            left, right = top.copy(), top.copy()
            left[:, image.shape[1] // 2 :] = False
            right[:, : image.shape[1] // 2] = False
            found.append(
                [
                    ConceptDetection("background", top, 0.9),
                    ConceptDetection("sky", left, 0.4),
                    ConceptDetection("sky", right, 0.7),
                ]
            )
        return found


class CountingStylizer:
    id = "invert"

    def __init__(self) -> None:
        self.calls: list[str] = []

    def stylize(self, images, style, seed=0):  # type: ignore[no-untyped-def]
        self.calls += [f"{style[0, 0, 0]}"] * len(images)
        return [255 - image for image in images]


def style(index: int, value: int, tmp_path: Path) -> tuple[StyleImage, np.ndarray]:
    pixels = np.full((8, 8, 3), value, np.uint8)
    record = StyleImage(
        f"flat/{index}", "flat", index, f"{value:064x}", str(tmp_path), "CC0", "test"
    )
    return record, pixels


@pytest.fixture
def shard(tmp_path: Path):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(0)
    images = {f"img{i}": rng.integers(0, 255, (24, 32, 3), dtype=np.uint8) for i in range(3)}
    store = BuildStore(tmp_path / "build")
    source = ArraySource(images)
    _, records = ingest_shard(store, source, source.refs(), ImageConfig())
    return store, records


def test_segment_merges_instances_and_records_rejections(shard) -> None:  # type: ignore[no-untyped-def]
    store, images = shard
    segmenter = CountingSegmenter()
    config = SegmentConfig(backend="test", concepts=["background", "sky"], min_score=0.8)
    _, masks = segment_shard(store, images, config, "fp", lambda: segmenter)
    assert len(masks) == 6  # one per (image, concept): the two sky instances merged
    sky = [m for m in masks if m.concept == "sky"]
    assert all(m.score == pytest.approx(0.7) and m.area_frac == pytest.approx(0.5) for m in sky)
    assert all(not m.kept and m.reject_reason == "score 0.700 < min_score 0.8" for m in sky)
    assert all(m.kept for m in masks if m.concept == "background")
    segment_shard(store, images, config, "fp", lambda: segmenter)
    assert segmenter.calls == 3  # the second run found the finished part


def test_stylize_skips_done_work_and_adding_a_style_runs_only_it(shard, tmp_path) -> None:  # type: ignore[no-untyped-def]
    store, images = shard
    segmenter = CountingSegmenter()
    config = SegmentConfig(backend="test", concepts=["background"])
    _, masks = segment_shard(store, images, config, "fp", lambda: segmenter)
    todo = images_to_stylize(images, masks)
    first, first_pixels = style(0, 10, tmp_path)
    second, second_pixels = style(1, 20, tmp_path)
    pixels = {first.style_id: first_pixels, second.style_id: second_pixels}
    stylizer = CountingStylizer()

    def run(styles):  # type: ignore[no-untyped-def]
        return stylize_shard(
            store,
            todo,
            styles,
            StylizeConfig(),
            "fp",
            0,
            lambda: stylizer,
            lambda s: pixels[s.style_id],
        )

    _, records = run([first])
    assert stylizer.calls == ["10"] * 3
    run([first])
    assert stylizer.calls == ["10"] * 3  # unchanged inputs: nothing stylized twice
    _, records = run([first, second])
    assert stylizer.calls == ["10"] * 3 + ["20"] * 3  # only the new style image
    assert len(records) == 6 and all(store.exists(r.path) for r in records)


def test_images_without_a_kept_concept_are_not_stylized(shard) -> None:  # type: ignore[no-untyped-def]
    store, images = shard
    config = SegmentConfig(backend="test", concepts=["background"], max_area=0.3)
    _, masks = segment_shard(store, images, config, "fp", CountingSegmenter)
    assert images_to_stylize(images, masks) == []
