"""Stage functions without Prefect: what is computed, what is skipped, what is re-done."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.config import BuildConfig
from pipeline.imageio import encode_png
from pipeline.segment import segmenters
from pipeline.segment.base import ConceptDetection
from pipeline.stages import Backends
from pipeline.stages.ingest import ingest_shard
from pipeline.stages.segment import segment_shard
from pipeline.stages.stylize import images_to_stylize, stylize_shard
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
