"""COCO panoptic ground truth in the `annotations` segmenter: segment-id PNGs
(`id = R + 256·G + 256²·B`), things and stuff, reproduced pixel-exactly, bad files named."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.imageio import resize_max_side
from pipeline.segment import create_segmenter
from pipeline.segment.annotation_formats import AnnotationError
from pipeline.segment.panoptic import load_panoptic, read_segment_ids
from pipeline.segment.quality import finalize

CATEGORIES = [
    {"id": 1, "name": "person", "isthing": 1},
    {"id": 3, "name": "car", "isthing": 1},
    {"id": 149, "name": "road", "isthing": 0},
    {"id": 159, "name": "snow", "isthing": 0},
    {"id": 184, "name": "tree-merged", "isthing": 0},
    {"id": 187, "name": "sky-other-merged", "isthing": 0},
    {"id": 193, "name": "grass-merged", "isthing": 0},
]
SKY_ID = 11 + 256 * 5 + 256 * 256 * 2  # uses all three channels


def id_png(ids: np.ndarray) -> Image.Image:
    """Segment ids as the RGB PNG of the COCO panoptic format."""
    rgb = np.stack([ids % 256, ids // 256 % 256, ids // 65536], axis=-1)
    return Image.fromarray(rgb.astype(np.uint8))


def box(shape: tuple[int, int], rows: slice, cols: slice) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    mask[rows, cols] = True
    return mask


@pytest.fixture
def panoptic(tmp_path: Path) -> dict:
    rng = np.random.default_rng(0)
    a_shape, b_shape = (60, 80), (40, 50)
    masks = {
        "sky": box(a_shape, slice(0, 15), slice(None)),
        "grass": box(a_shape, slice(40, 60), slice(0, 40)),
        "person_left": box(a_shape, slice(15, 40), slice(5, 15)),
        "person_right": box(a_shape, slice(20, 40), slice(50, 60)),
        "car": box(a_shape, slice(40, 60), slice(45, 75)),
        # an irregular stuff region that no polygon gives
        "tree": box(a_shape, slice(15, 40), slice(20, 45)) & (rng.random(a_shape) < 0.5),
        "road": box(b_shape, slice(20, 40), slice(None)),
        "snow": box(b_shape, slice(0, 20), slice(0, 25)),
        "crowd": box(b_shape, slice(0, 20), slice(25, 50)),
    }
    segment_ids = {
        "sky": (SKY_ID, 187),
        "grass": (300, 193),
        "person_left": (4, 1),
        "person_right": (5, 1),
        "car": (6, 3),
        "tree": (70000, 184),
        "road": (7, 149),
        "snow": (8, 159),
        "crowd": (9, 1),
    }
    a_ids, b_ids = np.zeros(a_shape, np.int64), np.zeros(b_shape, np.int64)
    for name, mask in masks.items():
        target = a_ids if mask.shape == a_shape else b_ids
        target[mask] = segment_ids[name][0]
    images = tmp_path / "images"
    (images / "sub").mkdir(parents=True)
    pixels = {
        "a.png": rng.integers(0, 256, (*a_shape, 3), dtype=np.uint8),
        "sub/b.png": rng.integers(0, 256, (*b_shape, 3), dtype=np.uint8),
    }
    for name, rgb in pixels.items():
        Image.fromarray(rgb).save(images / name)
    annotations = tmp_path / "annotations"
    (annotations / "panoptic_val").mkdir(parents=True)
    id_png(a_ids).save(annotations / "panoptic_val" / "0001.png")
    id_png(b_ids).save(annotations / "panoptic_val" / "0002.png")

    def info(names: list[str]) -> list[dict]:
        return [
            {
                "id": segment_ids[n][0],
                "category_id": segment_ids[n][1],
                "iscrowd": int(n == "crowd"),
                "area": int(masks[n].sum()),
            }
            for n in names
        ]

    document = {
        "images": [
            {"id": 1, "file_name": "a.png", "height": 60, "width": 80},
            {"id": 2, "file_name": "sub/b.png", "height": 40, "width": 50},
        ],
        "annotations": [
            {
                "image_id": 1,
                "file_name": "0001.png",
                "segments_info": info(
                    ["sky", "grass", "person_left", "person_right", "car", "tree"]
                ),
            },
            {
                "image_id": 2,
                "file_name": "0002.png",
                "segments_info": info(["road", "snow", "crowd"]),
            },
        ],
        "categories": CATEGORIES,
    }
    path = annotations / "panoptic_val.json"
    path.write_text(json.dumps(document))
    return {"json": path, "root": images, "pixels": pixels, "masks": masks, "ids": a_ids}


def options(panoptic: dict, **extra) -> dict:
    return {"panoptic_json": str(panoptic["json"]), "image_root": str(panoptic["root"]), **extra}


def test_segment_ids_use_all_three_channels(panoptic):
    png = panoptic["json"].with_suffix("") / "0001.png"
    ids = read_segment_ids(png, 60, 80)
    assert np.array_equal(ids, panoptic["ids"])
    assert ids[0, 0] == SKY_ID == 132363 and ids[panoptic["masks"]["tree"]].max() == 70000


def test_things_and_stuff_are_concepts_with_pixel_exact_masks(panoptic):
    segmenter = create_segmenter("annotations", concepts=None, **options(panoptic))
    assert set(segmenter.concepts) == {"person", "car", "road", "snow", "tree", "sky", "grass"}
    a, b = panoptic["pixels"]["a.png"], panoptic["pixels"]["sub/b.png"]
    raw = segmenter.segment([a, b], [None, None])
    assert sorted(d.concept for d in raw[0]) == ["car", "grass", "person", "person", "sky", "tree"]
    on_a = {d.concept: d.mask for d in raw[0] if d.concept != "person"}
    masks = panoptic["masks"]
    for concept in ("sky", "grass", "car", "tree"):
        assert np.array_equal(on_a[concept], masks[concept]), concept
    assert on_a["sky"].sum() == 15 * 80 and on_a["grass"].sum() == 20 * 40
    assert on_a["car"].sum() == 20 * 30 and on_a["tree"].sum() == masks["tree"].sum() > 300
    people = [d.mask for d in raw[0] if d.concept == "person"]  # two instances, two detections
    assert sorted(int(m.sum()) for m in people) == [200, 250]
    merged = {d.concept: d for d in finalize(raw[0])}  # what the segment stage keeps
    assert np.array_equal(merged["person"].mask, masks["person_left"] | masks["person_right"])
    on_b = {d.concept: d.mask for d in raw[1]}
    assert set(on_b) == {"road", "snow", "person"}  # the crowd segment is a person mask too
    assert [int(on_b[c].sum()) for c in ("road", "snow", "person")] == [1000, 500, 500]
    assert all(d.score == 1.0 for d in raw[0] + raw[1])


def test_masks_follow_the_image_to_the_working_resolution(panoptic):
    segmenter = create_segmenter("annotations", concepts=["tree"], **options(panoptic), max_side=40)
    working = resize_max_side(panoptic["pixels"]["a.png"], 40)  # what the build hands over
    assert working.shape[:2] == (30, 40)
    (tree,) = segmenter.segment([working], [None])[0]
    rows = np.floor((np.arange(30) + 0.5) * 60 / 30).astype(int)  # pixel-centre sampling
    cols = np.floor((np.arange(40) + 0.5) * 80 / 40).astype(int)
    assert np.array_equal(tree.mask, panoptic["masks"]["tree"][np.ix_(rows, cols)])


def test_the_png_folder_defaults_to_the_json_path_without_json(panoptic, tmp_path):
    moved = tmp_path / "elsewhere"
    (panoptic["json"].with_suffix("")).rename(moved)
    with pytest.raises(
        AnnotationError, match=r"panoptic_val\.json: its PNG folder .* \(set panoptic_dir\)"
    ):
        create_segmenter("annotations", **options(panoptic))
    segmenter = create_segmenter("annotations", **options(panoptic, panoptic_dir=str(moved)))
    found = segmenter.segment([panoptic["pixels"]["sub/b.png"]], [None])[0]
    assert sorted(d.concept for d in found) == ["person", "road", "snow"]


def _edited(path: Path, edit) -> Path:
    document = json.loads(path.read_text())
    edit(document)
    broken = path.with_name("broken.json")
    broken.write_text(json.dumps(document))
    return broken


def test_corrupt_panoptic_json_fails_with_the_file_and_the_problem(panoptic):
    path = panoptic["json"]
    truncated = path.with_name("truncated.json")
    truncated.write_text(path.read_text()[:120])
    with pytest.raises(AnnotationError, match=r"truncated\.json: not valid JSON"):
        load_panoptic(truncated)
    first = lambda d: d["annotations"][0]["segments_info"]  # noqa: E731
    cases = [
        (lambda d: d.pop("categories"), "missing list 'categories'"),
        (lambda d: d["annotations"][1].update(image_id=99), "image_id 99, which is not in"),
        (lambda d: first(d)[0].update(category_id=999), "category_id 999, which is not in"),
        (lambda d: first(d)[1].update(id=SKY_ID), f"id {SKY_ID} appears twice"),
        (lambda d: first(d)[2].update(id=0), "id 0 is not in 1..16777215"),
        (lambda d: d["annotations"][0].pop("segments_info"), "has no 'segments_info'"),
        (lambda d: d["annotations"].append(d["annotations"][0]), "image 1 has two annotations"),
    ]
    for edit, message in cases:
        with pytest.raises(AnnotationError, match=r"broken\.json") as error:
            load_panoptic(_edited(path, edit))
        assert message in str(error.value)


def test_bad_pngs_fail_when_their_image_is_segmented_naming_the_png(panoptic):
    png = panoptic["json"].with_suffix("") / "0001.png"
    a = panoptic["pixels"]["a.png"]
    stray = panoptic["ids"].copy()
    stray[0, :3] = 77  # a segment the JSON does not list
    id_png(stray).save(png)
    segmenter = create_segmenter("annotations", **options(panoptic))
    with pytest.raises(AnnotationError, match=r"0001\.png: segment ids \[77\] are not in the JSON"):
        segmenter.segment([a], [None])
    id_png(panoptic["ids"][:59]).save(png)
    with pytest.raises(AnnotationError, match=r"0001\.png: is 80x59 but the JSON says .* 80x60"):
        create_segmenter("annotations", **options(panoptic)).segment([a], [None])
    no_tree = panoptic["ids"].copy()
    no_tree[no_tree == 70000] = 0
    id_png(no_tree).save(png)
    with pytest.raises(AnnotationError, match=r"0001\.png: segments \[70000\] of the JSON"):
        create_segmenter("annotations", **options(panoptic)).segment([a], [None])
    png.unlink()
    with pytest.raises(AnnotationError, match=r"0001\.png: cannot read"):
        create_segmenter("annotations", **options(panoptic)).segment([a], [None])
    # the other image is unaffected
    b = create_segmenter("annotations", **options(panoptic)).segment(
        [panoptic["pixels"]["sub/b.png"]], [None]
    )
    assert len(b[0]) == 3


def test_a_bad_png_quarantines_only_its_image_in_a_build(panoptic, tmp_path):
    from pipeline.config import BuildConfig
    from pipeline.stages import Backends
    from pipeline.stages.ingest import ingest_shard
    from pipeline.stages.segment import segment_shard
    from pipeline.store import BuildStore

    broken = panoptic["ids"].copy()
    broken[5, 5] = 12345
    id_png(broken).save(panoptic["json"].with_suffix("") / "0001.png")
    config = BuildConfig.model_validate(
        {
            "source": {"kind": "folder", "path": str(panoptic["root"])},
            "segment": {
                "backend": "annotations",
                "concepts": ["road", "snow", "sky"],
                "options": options(panoptic),
                "min_area": 0.0,
            },
        }
    )
    store, backends = BuildStore(tmp_path / "build"), Backends(config)
    _, images = ingest_shard(store, list(backends.source.refs()), backends, config)
    _, masks = segment_shard(store, images, backends, config)
    assert sorted(m.concept for m in masks) == ["road", "snow"]  # image b only
    (entry,) = store.quarantined()
    assert entry.uri.endswith("a.png") and entry.stage == "segment"
    assert "0001.png: segment ids [12345]" in entry.reason
