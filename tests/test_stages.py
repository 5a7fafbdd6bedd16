"""Stage functions without Prefect: what is computed, what is skipped, what is re-done."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.config import BuildConfig
from pipeline.imageio import encode_png
from pipeline.records import ConceptMask, SourceImage
from pipeline.segment import segmenters
from pipeline.segment.base import ConceptDetection
from pipeline.stages import Backends
from pipeline.stages.ingest import ingest_shard
from pipeline.stages.segment import segment_shard
from pipeline.stages.stylize import (
    concept_heights,
    images_to_stylize,
    mask_height,
    stylize_shard,
)
from pipeline.store import BuildStore
from pipeline.stylize import stylizers


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


def flat_textures(root: Path, values: dict[int, int]) -> Path:
    """A texture library of flat style images (`flat/<index>` of grey level `value`)."""
    for index, value in values.items():
        (root / "flat").mkdir(parents=True, exist_ok=True)
        (root / "flat" / f"{index}.png").write_bytes(
            encode_png(np.full((8, 8, 3), value, np.uint8))
        )
    files = "".join(f"    - flat/{index}.png\n" for index in values)
    manifest = f"textures:\n  flat:\n    files:\n{files}    source: test\n    license: CC0-1.0\n"
    (root / "manifest.yaml").write_text(manifest)
    return root


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(3):
        pixels = rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)
        (folder / f"img{i}.png").write_bytes(encode_png(pixels))
    return folder


@pytest.fixture
def registered(request):  # type: ignore[no-untyped-def]
    """Registers this test's counting segmenter and stylizer (one line each), then removes them."""
    segmenter, stylizer = CountingSegmenter(), CountingStylizer()
    name = f"counting-{request.node.name}"
    segmenters.register(name)(lambda **options: segmenter)
    stylizers.register(name)(lambda **options: stylizer)
    yield name, segmenter, stylizer
    segmenters.unregister(name)
    stylizers.unregister(name)


def config_for(photos: Path, backend: str, **segment) -> BuildConfig:  # type: ignore[no-untyped-def]
    return BuildConfig.model_validate(
        {
            "source": {"kind": "folder", "path": str(photos)},
            "segment": {"backend": backend, "concepts": ["background", "sky"], **segment},
            "stylize": {"backend": backend, "textures": ["flat"]},
        }
    )


@pytest.fixture
def shard(tmp_path: Path, photos: Path, registered, monkeypatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("CONCEPTSWAP_TEXTURES", str(flat_textures(tmp_path / "tex", {0: 10})))
    name, segmenter, stylizer = registered
    store = BuildStore(tmp_path / "build")
    config = config_for(photos, name)
    backends = Backends(config)
    _, records = ingest_shard(store, list(backends.source.refs()), backends, config)
    return store, records, name, segmenter, stylizer


def test_segment_merges_instances_and_records_rejections(shard, photos) -> None:  # type: ignore[no-untyped-def]
    store, images, name, segmenter, _ = shard
    config = config_for(photos, name, min_score=0.8)
    backends = Backends(config)
    _, masks = segment_shard(store, images, backends, config)
    assert len(masks) == 6  # one per (image, concept): the two sky instances merged
    sky = [m for m in masks if m.concept == "sky"]
    assert all(m.score == pytest.approx(0.7) and m.area_frac == pytest.approx(0.5) for m in sky)
    assert all(not m.kept and m.reject_reason == "score 0.700 < min_score 0.8" for m in sky)
    assert all(m.kept for m in masks if m.concept == "background")
    assert {m.segmenter_id for m in masks} == {backends.segmenter.id}
    segment_shard(store, images, backends, config)
    assert segmenter.calls == 3  # the second run found the finished part


def test_stylize_skips_done_work_and_adding_a_style_runs_only_it(  # type: ignore[no-untyped-def]
    shard, photos, tmp_path, monkeypatch
) -> None:
    store, images, name, _, stylizer = shard
    config = config_for(photos, name, concepts=["background"])
    _, masks = segment_shard(store, images, Backends(config), config)
    todo = images_to_stylize(images, masks)
    assert len(todo) == 3

    def run():  # type: ignore[no-untyped-def]
        backends = Backends(config)  # re-reads the texture library
        return stylize_shard(store, images, masks, backends, config)

    _, records = run()
    assert stylizer.calls == ["10"] * 3
    run()
    assert stylizer.calls == ["10"] * 3  # unchanged inputs: nothing stylized twice
    monkeypatch.setenv(
        "CONCEPTSWAP_TEXTURES", str(flat_textures(tmp_path / "tex2", {0: 10, 1: 20}))
    )
    _, records = run()
    assert stylizer.calls == ["10"] * 3 + ["20"] * 3  # only the new style image
    assert len(records) == 6 and all(store.exists(r.path) for r in records)


def test_images_without_a_kept_concept_are_not_stylized(shard, photos) -> None:  # type: ignore[no-untyped-def]
    store, images, name, _, _ = shard
    config = config_for(photos, name, concepts=["background"], max_area=0.3)
    _, masks = segment_shard(store, images, Backends(config), config)
    assert images_to_stylize(images, masks) == []


class HeightRecordingStylizer:
    """Records the concept heights the stage passes (declared by its registration's `inputs`)."""

    id = "heights"

    def __init__(self) -> None:
        self.heights: list[int] = []

    def stylize(self, images, style, seed=0, heights=None):  # type: ignore[no-untyped-def]
        self.heights += list(heights or [])
        return [255 - image for image in images]


def test_a_stylizer_sized_by_the_concept_gets_each_images_concept_height(  # type: ignore[no-untyped-def]
    shard, photos
) -> None:
    """A backend whose registration declares `heights` gets the bounding-box height of each
    image's largest kept concept (the top half: 12 of 24 rows), and the heights are part of the
    stylized ids, so a re-segmented concept is re-stylized."""
    store, images, name, _, _ = shard
    recorder, sized = HeightRecordingStylizer(), f"{name}-sized"
    stylizers.register(sized, inputs=lambda options: ("heights",) if options else ())(
        lambda **options: recorder
    )
    try:
        config = config_for(photos, name)
        _, masks = segment_shard(store, images, Backends(config), config)
        config = config.model_copy(
            update={"stylize": config.stylize.model_copy(update={"backend": sized})}
        )
        plain_ids = {
            r.stylized_id for r in stylize_shard(store, images, masks, Backends(config), config)[1]
        }
        assert recorder.heights == []  # no option asks for heights: none is computed or passed
        with_sizes = config.model_copy(
            update={"stylize": config.stylize.model_copy(update={"options": {"on": 1}})}
        )
        assert Backends(with_sizes).stylizer_inputs == ("heights",)
        _, records = stylize_shard(store, images, masks, Backends(with_sizes), with_sizes)
        assert recorder.heights == [12, 12, 12]
        assert not plain_ids & {r.stylized_id for r in records}
        assert stylizers.spec(sized).describe({"on": 1})["inputs"] == ["heights"]
    finally:
        stylizers.unregister(sized)


def test_concept_heights_follow_the_largest_kept_mask(tmp_path: Path) -> None:
    store = BuildStore(tmp_path)
    tall, wide = np.zeros((40, 40), bool), np.zeros((40, 40), bool)
    tall[5:35, 10:12] = True  # 30 rows, 60 px
    wide[20:30, :] = True  # 10 rows, 400 px
    paths = [store.save_png(f"masks/{name}.png", m) for name, m in (("t", tall), ("w", wide))]
    masks = [
        ConceptMask("m1", "a", "pole", 1.0, 0.04, "s", paths[0]),
        ConceptMask("m2", "a", "road", 1.0, 0.25, "s", paths[1]),
        ConceptMask("m3", "b", "pole", 1.0, 0.04, "s", paths[0]),
        ConceptMask("m4", "b", "road", 1.0, 0.25, "s", paths[1], kept=False),
    ]
    images = [SourceImage(i, f"{i}.png", 40, 40, None, None, f"{i}.png") for i in "ab"]
    assert concept_heights(store, images, masks) == {"a": 10, "b": 30}
    assert mask_height(np.zeros((4, 4), bool)) == 0
