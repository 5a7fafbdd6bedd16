"""The `annotations` segmenter: ground-truth masks from COCO JSON, mask folders and Hugging Face
datasets, matched to images by their pixels, reproduced pixel-exactly."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from pipeline.imageio import decode_image, read_file_bytes, resize_max_side
from pipeline.segment import create_segmenter
from pipeline.segment.annotation_formats import AnnotationError, load_coco, working_shape
from pipeline.segment.quality import finalize

HEIGHT, WIDTH = 60, 80


def uncompressed_rle(mask: np.ndarray) -> dict:
    """COCO's uncompressed RLE, written out here: column-major runs starting with zeros."""
    flat = mask.astype(np.uint8).flatten(order="F")
    counts, current, run = [], 0, 0
    for value in flat:
        if value == current:
            run += 1
        else:
            counts.append(run)
            current, run = value, 1
    counts.append(run)
    return {"size": list(mask.shape), "counts": counts}


def blob(seed: int) -> np.ndarray:
    """An irregular mask: a disc plus noise, nothing a polygon could give."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:HEIGHT, :WIDTH]
    mask = (yy - 30) ** 2 + (xx - 50) ** 2 < 15**2
    return mask ^ (rng.random((HEIGHT, WIDTH)) < 0.05)


@pytest.fixture
def coco_set(tmp_path: Path) -> dict:
    rng = np.random.default_rng(0)
    root = tmp_path / "images"
    (root / "sub").mkdir(parents=True)
    pixels = {
        "street.png": rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8),
        "sub/field.png": rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8),
    }
    for name, rgb in pixels.items():
        Image.fromarray(rgb).save(root / name)
    road, tyre = blob(1), blob(2) & (np.arange(WIDTH)[None, :] < 40)
    road_rle = mask_utils.encode(np.asfortranarray(road.astype(np.uint8)))
    road_rle["counts"] = road_rle["counts"].decode("ascii")
    document = {
        "images": [
            {"id": 1, "file_name": "street.png", "height": HEIGHT, "width": WIDTH},
            {"id": 2, "file_name": "sub/field.png", "height": HEIGHT, "width": WIDTH},
        ],
        "categories": [
            {"id": 3, "name": "car"},
            {"id": 7, "name": "road"},
            {"id": 9, "name": "tyre"},
        ],
        "annotations": [
            {
                "id": 10,
                "image_id": 1,
                "category_id": 3,
                "score": 0.7,
                "segmentation": [[5.0, 5.0, 30.0, 5.0, 30.0, 25.0, 5.0, 25.0]],
            },
            {
                "id": 11,
                "image_id": 1,
                "category_id": 3,
                "score": 0.9,
                "segmentation": [[40.5, 30.5, 70.0, 35.0, 55.0, 55.0]],
            },
            {"id": 12, "image_id": 1, "category_id": 7, "segmentation": road_rle},
            {
                "id": 13,
                "image_id": 1,
                "category_id": 9,
                "iscrowd": 1,
                "segmentation": uncompressed_rle(tyre),
            },
            {
                "id": 14,
                "image_id": 2,
                "category_id": 7,
                "segmentation": [[0.0, 40.0, 79.0, 40.0, 79.0, 59.0, 0.0, 59.0]],
            },
        ],
    }
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(document))
    return {"json": path, "root": root, "pixels": pixels, "road": road, "tyre": tyre}


def working(path: Path, max_side: int) -> np.ndarray:
    """The image exactly as the pipeline hands it to a segmenter."""
    return resize_max_side(decode_image(read_file_bytes(path), str(path)).rgb, max_side)


def test_coco_polygons_and_rle_are_reproduced_pixel_exactly(coco_set):
    segmenter = create_segmenter(
        "annotations",
        concepts=["car", "road", "tire"],
        coco_json=str(coco_set["json"]),
        image_root=str(coco_set["root"]),
        max_side=384,
    )
    street = working(coco_set["root"] / "street.png", 384)
    field = working(coco_set["root"] / "sub" / "field.png", 384)
    raw = segmenter.segment([field, street], [None, 817])
    assert [d.concept for d in raw[1]].count("car") == 2  # one detection per instance
    found = [finalize(detections) for detections in raw]  # what the segment stage keeps
    on_street = {d.concept: d for d in found[1]}
    assert set(on_street) == {"car", "road", "tire"}  # `tyre` in the file is the concept `tire`

    reference = COCO(str(coco_set["json"]))  # pycocotools' own loader and rasteriser
    cars = reference.annToMask(reference.anns[10]) | reference.annToMask(reference.anns[11])
    assert np.array_equal(on_street["car"].mask, cars.astype(bool))
    assert on_street["car"].score == pytest.approx(0.9)  # merged: union, best score
    assert on_street["car"].mask[5:25, 5:30].all() and not on_street["car"].mask[0, 0]
    assert np.array_equal(on_street["road"].mask, coco_set["road"])  # compressed RLE
    assert np.array_equal(on_street["tire"].mask, coco_set["tyre"])  # uncompressed RLE
    assert on_street["road"].score == 1.0
    assert [d.concept for d in found[0]] == ["road"]
    assert np.array_equal(found[0][0].mask, reference.annToMask(reference.anns[14]).astype(bool))


def test_masks_follow_the_image_to_the_working_resolution(coco_set):
    segmenter = create_segmenter(
        "annotations",
        coco_json=str(coco_set["json"]),
        image_root=str(coco_set["root"]),
        max_side=40,
    )
    assert set(segmenter.concepts) == {"car", "road", "tire"}  # None: every concept found
    street = working(coco_set["root"] / "street.png", 40)
    assert street.shape[:2] == working_shape(HEIGHT, WIDTH, 40) == (30, 40)
    road = {d.concept: d for d in segmenter.segment([street], [None])[0]}["road"].mask
    rows = np.floor((np.arange(30) + 0.5) * HEIGHT / 30).astype(int)  # pixel-centre sampling
    cols = np.floor((np.arange(40) + 0.5) * WIDTH / 40).astype(int)
    assert np.array_equal(road, coco_set["road"][np.ix_(rows, cols)])
    # the original resolution is recognised too
    original = decode_image(read_file_bytes(coco_set["root"] / "street.png"), "x").rgb
    full = {d.concept: d for d in segmenter.segment([original], [None])[0]}
    assert np.array_equal(full["road"].mask, coco_set["road"])


def test_unannotated_images_get_no_masks_or_an_error(coco_set):
    options = {"coco_json": str(coco_set["json"]), "image_root": str(coco_set["root"])}
    segmenter = create_segmenter("annotations", **options)
    stranger = np.full((HEIGHT, WIDTH, 3), 7, dtype=np.uint8)
    assert segmenter.segment([stranger], [None]) == [[]]
    assert segmenter.unmatched == 1
    strict = create_segmenter("annotations", on_missing="error", **options)
    with pytest.raises(AnnotationError, match="no annotated image"):
        strict.segment([stranger], [None])
    with pytest.raises(ValueError, match="no wheel"):
        create_segmenter("annotations", concepts=["wheel"], **options)


def _broken(path: Path, edit) -> Path:
    document = json.loads(path.read_text())
    edit(document)
    broken = path.with_name("broken.json")
    broken.write_text(json.dumps(document))
    return broken


def test_corrupt_coco_json_fails_with_the_file_and_the_problem(coco_set):
    path = coco_set["json"]
    truncated = path.with_name("truncated.json")
    truncated.write_text(path.read_text()[:150])
    with pytest.raises(AnnotationError, match=r"truncated\.json: not valid JSON: .* line 1"):
        load_coco(truncated)
    cases = [
        (lambda d: d.pop("categories"), "missing list 'categories'"),
        (lambda d: d["annotations"][0].update(image_id=99), "image_id 99, which is not in"),
        (lambda d: d["annotations"][0].update(category_id=5), "category_id 5"),
        (lambda d: d["annotations"][0]["segmentation"][0].pop(), "even number"),
        (lambda d: d["annotations"][2]["segmentation"].update(size=[10, 10]), "RLE size"),
        (lambda d: d["annotations"][3]["segmentation"]["counts"].append(3), "sum to"),
        (lambda d: d["images"][0].pop("height"), "integer 'height'"),
    ]
    for edit, message in cases:
        with pytest.raises(AnnotationError, match=r"broken\.json") as error:
            load_coco(_broken(path, edit))
        assert message in str(error.value)


def test_annotations_of_the_wrong_size_are_refused(coco_set):
    # the field image's only annotation is a polygon, so the file itself stays consistent
    wrong = _broken(coco_set["json"], lambda d: d["images"][1].update(height=61))
    segmenter = create_segmenter(
        "annotations", coco_json=str(wrong), image_root=str(coco_set["root"]), max_side=384
    )
    field = working(coco_set["root"] / "sub" / "field.png", 384)
    with pytest.raises(AnnotationError, match=r"field\.png is 80x60 but its annotations say 80x61"):
        segmenter.segment([field], [None])


def test_mask_folder_layout_image_stem_then_concept(tmp_path, coco_set):
    masks = tmp_path / "masks"
    (masks / "street").mkdir(parents=True)
    wheel = np.zeros((HEIGHT, WIDTH), dtype=np.uint8)
    wheel[40:55, 10:25] = 1  # a 0/1 mask
    Image.fromarray(wheel).save(masks / "street" / "wheel.png")
    Image.fromarray(coco_set["road"].astype(np.uint8) * 255).save(masks / "street" / "road.png")
    (masks / "nobody").mkdir()  # no image of that name: skipped, reported
    segmenter = create_segmenter(
        "annotations", mask_dir=str(masks), image_root=str(coco_set["root"])
    )
    assert segmenter.skipped and "nobody" in segmenter.skipped[0][0]
    found = {
        d.concept: d.mask
        for d in segmenter.segment([working(coco_set["root"] / "street.png", 384)], [None])[0]
    }
    assert np.array_equal(found["wheel"], wheel.astype(bool))
    assert np.array_equal(found["road"], coco_set["road"])

    # one image annotated by two sources: the masks of both come back
    both = create_segmenter(
        "annotations",
        coco_json=str(coco_set["json"]),
        mask_dir=str(masks),
        image_root=str(coco_set["root"]),
    )
    found = {
        d.concept: d.mask
        for d in both.segment([working(coco_set["root"] / "street.png", 384)], [None])[0]
    }
    assert set(found) == {"car", "road", "tire", "wheel"}
    assert np.array_equal(found["wheel"], wheel.astype(bool))

    Image.fromarray(wheel[:50]).save(masks / "street" / "wheel.png")
    resized = create_segmenter("annotations", mask_dir=str(masks), image_root=str(coco_set["root"]))
    with pytest.raises(AnnotationError, match=r"wheel\.png: mask is 80x50 but image .* is 80x60"):
        resized.segment([working(coco_set["root"] / "street.png", 384)], [None])


def test_hugging_face_mask_columns_and_segmentation_maps(coco_set):
    from datasets import Dataset, Features, Value
    from datasets import Image as ImageFeature

    street = coco_set["pixels"]["street.png"]
    field = coco_set["pixels"]["sub/field.png"]
    labels = np.zeros((HEIGHT, WIDTH), dtype=np.uint8)
    labels[coco_set["road"]] = 2
    labels[:10] = 5
    dataset = Dataset.from_dict(
        {
            "image": [Image.fromarray(street), Image.fromarray(field)],
            "road_mask": [Image.fromarray(coco_set["road"].astype(np.uint8) * 255), None],
            "segmentation": [Image.fromarray(labels), Image.fromarray(np.zeros_like(labels))],
            "name": ["a", "b"],
        },
        features=Features(
            {
                "image": ImageFeature(),
                "road_mask": ImageFeature(),
                "segmentation": ImageFeature(),
                "name": Value("string"),
            }
        ),
    )
    by_column = create_segmenter(
        "annotations", hf_dataset=dataset, hf_mask_columns={"road": "road_mask"}, max_side=384
    )
    found = by_column.segment([street, field], [None, None])
    assert np.array_equal(found[0][0].mask, coco_set["road"]) and found[1] == []
    by_map = create_segmenter(
        "annotations",
        hf_dataset=dataset,
        hf_segmentation_column="segmentation",
        hf_id2name={"2": "road", "5": "sky-other-merged"},
        max_side=384,
    )
    assert set(by_map.concepts) == {"road", "sky"}
    found = {d.concept: d.mask for d in by_map.segment([street], [None])[0]}
    assert np.array_equal(found["road"], labels == 2) and found["sky"].sum() == 10 * WIDTH
    with pytest.raises(AnnotationError, match="no column"):
        create_segmenter("annotations", hf_dataset=dataset, hf_mask_columns={"road": "nope"})


def test_the_segment_stage_finds_ground_truth_for_ingested_images(coco_set, tmp_path):
    from pipeline.config import BuildConfig
    from pipeline.stages import Backends
    from pipeline.stages.ingest import ingest_shard
    from pipeline.stages.segment import segment_shard
    from pipeline.store import BuildStore

    store = BuildStore(tmp_path / "build")
    config = BuildConfig.model_validate(
        {
            "source": {"kind": "folder", "path": str(coco_set["root"])},
            "image": {"max_side": 40},  # the backend gets it as its max_side
            "segment": {
                "backend": "annotations",
                "concepts": ["road", "car"],
                "options": {
                    "coco_json": str(coco_set["json"]),
                    "image_root": str(coco_set["root"]),
                },
                "min_area": 0.0,
            },
        }
    )
    backends = Backends(config)
    _, images = ingest_shard(store, list(backends.source.refs()), backends, config)
    _, masks = segment_shard(store, images, backends, config)
    street = next(i for i in images if i.uri.endswith("street.png"))
    found = {m.concept: m for m in masks if m.image_id == street.image_id}
    assert set(found) == {"road", "car"} and all(m.kept for m in found.values())
    assert found["road"].segmenter_id == backends.segmenter.id
    assert backends.segmenter.load().id.startswith("annotations@v1(")
    rows = np.floor((np.arange(30) + 0.5) * HEIGHT / 30).astype(int)
    cols = np.floor((np.arange(40) + 0.5) * WIDTH / 40).astype(int)
    stored = store.load_mask(found["road"].path)
    assert np.array_equal(stored, coco_set["road"][np.ix_(rows, cols)])
    assert len(masks) == 3  # street: road + car, field: road
