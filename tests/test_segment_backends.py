"""Model segmenters: torchvision Mask R-CNN end to end on CPU, detectron2's output conversion,
instance merging and dilation, and per-concept build statistics."""

from __future__ import annotations

import importlib.util
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from pipeline.config import SegmentConfig
from pipeline.report.build_overview import build_concept_stats
from pipeline.segment import create_segmenter, segmenters
from pipeline.segment.base import ConceptDetection, Segmenter
from pipeline.segment.detectron2_backend import (
    INSTALL,
    detections_from_instances,
    panoptic_to_detections,
    route_concepts,
)
from pipeline.segment.quality import (
    dilate_mask,
    finalize,
    instances_to_detections,
    merge_instances,
    quality_rejection,
)
from pipeline.segment.stats import format_concept_stats, rejection_rule
from pipeline.segment.vocabulary import coco_label_names, coco_stuff_names, coco_thing_names


def box(shape: tuple[int, int], top: int, left: int, bottom: int, right: int) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    mask[top:bottom, left:right] = True
    return mask


# ------------------------------------------------------------------ quality rules


def test_merge_instances_unions_masks_and_keeps_the_best_score():
    first, second = box((10, 10), 0, 0, 4, 4), box((10, 10), 2, 2, 8, 8)
    merged = merge_instances(
        [
            ConceptDetection("car", first, 0.4),
            ConceptDetection("road", box((10, 10), 9, 0, 10, 10), 1.0),
            ConceptDetection("car", second, 0.9),
        ]
    )
    assert [d.concept for d in merged] == ["car", "road"]
    assert merged[0].score == 0.9
    assert np.array_equal(merged[0].mask, first | second)
    assert merged[0].mask.sum() == 16 + 36 - 4
    assert first.sum() == 16  # inputs are not modified


def test_merge_instances_refuses_masks_of_different_sizes():
    with pytest.raises(ValueError, match="shapes"):
        merge_instances(
            [
                ConceptDetection("car", box((4, 4), 0, 0, 1, 1), 1.0),
                ConceptDetection("car", box((5, 5), 0, 0, 1, 1), 1.0),
            ]
        )


def test_dilation_grows_an_isolated_pixel_to_a_disk():
    mask = np.zeros((9, 9), dtype=bool)
    mask[4, 4] = True
    assert dilate_mask(mask, 0).sum() == 1
    one = dilate_mask(mask, 1)
    assert one.sum() == 5  # radius 1: the pixel and its 4 neighbours
    assert one[4, 3] and one[3, 4] and not one[3, 3]
    two = dilate_mask(mask, 2)
    assert two.sum() == 13 and two[mask].all()  # x² + y² ≤ 4
    assert two[2, 4] and two[3, 3] and not two[2, 3]
    with pytest.raises(ValueError):
        dilate_mask(mask, -1)


def test_finalize_drops_empty_masks_and_can_keep_instances_apart():
    empty = np.zeros((4, 4), dtype=bool)
    found = [
        ConceptDetection("car", box((4, 4), 0, 0, 2, 2), 0.5),
        ConceptDetection("car", box((4, 4), 2, 2, 4, 4), 0.7),
        ConceptDetection("road", empty, 0.9),
    ]
    assert [(d.concept, d.score) for d in finalize(found)] == [("car", 0.7)]
    assert len(finalize(found, merge=False)) == 2
    assert finalize(found, dilation=1)[0].mask.sum() > 8


def test_instances_to_detections_maps_labels_thresholds_and_merges():
    names = coco_label_names()  # torchvision's 91 COCO slots
    car, person, na = names.index("car"), names.index("person"), names.index("N/A")
    probabilities = torch.zeros(4, 1, 6, 6)
    probabilities[0, 0, :3, :3] = 0.8
    probabilities[1, 0, 3:, 3:] = 0.6
    probabilities[1, 0, 0, 5] = 0.4  # below the mask threshold
    probabilities[2, 0] = 0.9
    probabilities[3, 0] = 0.9
    found = finalize(  # the stage's post-processing merges the two cars
        instances_to_detections(
            torch.tensor([car, car, person, na]),
            torch.tensor([0.55, 0.95, 0.2, 0.99]),
            probabilities,
            names,
            score_threshold=0.5,
        )
    )
    assert [(d.concept, round(d.score, 2)) for d in found] == [("car", 0.95)]
    assert found[0].mask.sum() == 9 + 9 and not found[0].mask[0, 5]
    only_person = instances_to_detections(
        torch.tensor([car, person]),
        torch.tensor([0.9, 0.9]),
        probabilities[1:3],
        names,
        concepts={"person"},
    )
    assert [d.concept for d in only_person] == ["person"] and only_person[0].mask.all()
    with pytest.raises(ValueError, match="differ"):
        instances_to_detections(
            torch.tensor([car]), torch.tensor([0.9, 0.8]), probabilities[:1], names
        )


# ------------------------------------------------------------------ detectron2 conversion


def test_detectron2_instances_convert_through_the_lvis_vocabulary():
    names = ["aerosol_can", "wheel", "headlight", "car_(automobile)", "bat_(animal)"]
    masks = torch.zeros(4, 5, 7, dtype=torch.bool)
    masks[0, :2, :2] = True
    masks[1, 3:, 5:] = True
    masks[2, 0, 6] = True
    masks[3] = True
    instances = SimpleNamespace(
        pred_classes=torch.tensor([1, 1, 2, 4]),
        scores=torch.tensor([0.6, 0.8, 0.7, 0.99]),
        pred_masks=masks,
    )
    found = finalize(
        detections_from_instances(instances, names, {"wheel": "wheel", "headlight": "headlight"})
    )
    assert [(d.concept, round(d.score, 2)) for d in found] == [("wheel", 0.8), ("headlight", 0.7)]
    assert found[0].mask.sum() == 4 + 4 and found[0].mask.shape == (5, 7)
    assert found[1].mask.sum() == 1
    by_synonym = detections_from_instances(instances, names, None, concepts={"car"})
    assert by_synonym == []  # class 3 (car) has no instance here
    instances.pred_classes = torch.tensor([3, 1, 2, 4])
    assert [d.concept for d in detections_from_instances(instances, names, concepts={"car"})] == [
        "car"
    ]


def test_detectron2_panoptic_segments_become_stuff_and_thing_masks():
    thing_classes = coco_thing_names()
    stuff_classes = ["things"] + [
        n.replace("-other", "").replace("-merged", "") for n in coco_stuff_names()
    ]  # detectron2's spelling
    road, sky, car = (
        stuff_classes.index("road"),
        stuff_classes.index("sky"),
        thing_classes.index("car"),
    )
    panoptic = torch.zeros(6, 8, dtype=torch.int32)
    panoptic[:2] = 1  # sky
    panoptic[4:] = 2  # road
    panoptic[2:4, :3] = 3  # a car
    panoptic[2:4, 5:] = 4  # another car
    segments = [
        {"id": 1, "isthing": False, "category_id": sky, "area": 16},
        {"id": 2, "isthing": False, "category_id": road, "area": 16},
        {"id": 3, "isthing": True, "category_id": car, "score": 0.7, "instance_id": 0},
        {"id": 4, "isthing": True, "category_id": car, "score": 0.9, "instance_id": 1},
    ]
    found = {
        d.concept: d
        for d in finalize(panoptic_to_detections(panoptic, segments, thing_classes, stuff_classes))
    }
    assert set(found) == {"sky", "road", "car"}
    assert np.array_equal(found["road"].mask, (panoptic == 2).numpy())
    assert found["road"].score == 1.0
    assert found["car"].mask.sum() == 6 + 6 and found["car"].score == pytest.approx(0.9)
    only_road = panoptic_to_detections(
        panoptic, segments, thing_classes, stuff_classes, concepts={"road"}
    )
    assert [d.concept for d in only_road] == ["road"]
    with pytest.raises(ValueError, match="out of range"):
        panoptic_to_detections(
            panoptic, [{"id": 1, "isthing": False, "category_id": 99}], thing_classes, stuff_classes
        )


def test_detectron2_routes_stuff_to_panoptic_and_parts_to_lvis():
    routes = route_concepts(["road", "wheel", "car", "license_plate"])
    assert routes == {"panoptic": ("road", "car"), "lvis": ("wheel", "license_plate")}
    assert route_concepts(["car"], models=("lvis",)) == {"lvis": ("car",)}
    with pytest.raises(ValueError, match="road"):
        route_concepts(["road"], models=("lvis",))
    with pytest.raises(ValueError, match="object: cam, annotations"):
        route_concepts(["object"])


@pytest.mark.skipif(
    importlib.util.find_spec("detectron2") is not None, reason="detectron2 is installed"
)
def test_detectron2_backend_without_detectron2_names_the_install_command():
    with pytest.raises(ImportError) as error:
        create_segmenter("detectron2", concepts=["road", "wheel"])
    assert INSTALL in str(error.value)


# ------------------------------------------------------------------ torchvision, end to end

TINY = {
    "min_size": 64,
    "max_size": 64,
    "proposals": 8,
    "detections_per_image": 5,
    "score_threshold": 0.0,
    "device": "cpu",
    "batch_size": 2,
}
ALL_COCO = list(dict.fromkeys(n.replace(" ", "_") for n in coco_thing_names()))


@pytest.fixture(scope="module")
def tiny_images() -> list[np.ndarray]:
    rng = np.random.default_rng(3)
    return [
        rng.integers(0, 256, (64, 64, 3), dtype=np.uint8),
        rng.integers(0, 256, (48, 64, 3), dtype=np.uint8),
    ]


@pytest.fixture(scope="module")
def random_maskrcnn():
    torch.set_num_threads(2)
    return create_segmenter("torchvision-maskrcnn", concepts=ALL_COCO, pretrained=False, **TINY)


def test_torchvision_maskrcnn_runs_the_real_architecture_on_cpu(random_maskrcnn, tiny_images):
    assert isinstance(random_maskrcnn, Segmenter)
    assert "torchvision-maskrcnn" in segmenters.names()
    assert "random(seed=0)" in random_maskrcnn.id
    raw = random_maskrcnn.predict(tiny_images[:1])[0]
    assert raw["masks"].shape[1:] == (1, 64, 64) and 0 < len(raw["labels"]) <= 5
    raw_found = random_maskrcnn.segment(tiny_images, [None, 3])
    found = [finalize(detections) for detections in raw_found]  # the stage's post-processing
    assert len(found) == 2 and all(found), "a near-zero threshold must let random detections out"
    for image, detections in zip(tiny_images, found, strict=True):
        concepts = [d.concept for d in detections]
        assert len(concepts) == len(set(concepts))  # merged: one mask per concept
        for detection in detections:
            assert detection.concept in ALL_COCO
            assert detection.mask.dtype == bool and detection.mask.shape == image.shape[:2]
            assert detection.mask.any() and 0.0 <= detection.score <= 1.0


def test_torchvision_maskrcnn_round_trips_through_a_local_weights_file(
    random_maskrcnn, tiny_images, tmp_path
):
    path = tmp_path / "maskrcnn.pth"
    torch.save(random_maskrcnn.model.state_dict(), path)
    # a different seed: identical outputs can only come from the loaded file
    loaded = create_segmenter(
        "torchvision-maskrcnn", concepts=ALL_COCO, weights=str(path), seed=7, **TINY
    )
    assert "maskrcnn.pth:" in loaded.id and loaded.id != random_maskrcnn.id
    expected = random_maskrcnn.segment(tiny_images, [None, None])
    actual = loaded.segment(tiny_images, [None, None])
    for want, got in zip(expected, actual, strict=True):
        assert [d.concept for d in got] == [d.concept for d in want]
        for a, b in zip(want, got, strict=True):
            assert np.array_equal(a.mask, b.mask)
            assert a.score == pytest.approx(b.score, abs=1e-6)

    wrong = tmp_path / "wrong.pth"
    torch.save({"backbone.body.conv1.weight": torch.zeros(1)}, wrong)
    with pytest.raises(ValueError, match="not a maskrcnn_resnet50_fpn_v2 state dict"):
        loaded._load_state_dict(loaded.model, wrong)


def test_torchvision_default_weights_are_never_downloaded(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(FileNotFoundError) as error:
        create_segmenter("torchvision-maskrcnn", concepts=["car"], **TINY)
    message = str(error.value)
    assert str(tmp_path / "checkpoints" / "maskrcnn_resnet50_fpn_v2_coco-73cbd019.pth") in message
    assert "weights=PATH" in message


def test_torchvision_refuses_concepts_it_cannot_find():
    with pytest.raises(
        ValueError,
        match=r"road: detectron2, transformers-panoptic, grounded-sam, clipseg, annotations",
    ):
        create_segmenter("torchvision-maskrcnn", concepts=["car", "road"], pretrained=False, **TINY)


# ------------------------------------------------------------------ build statistics


def test_concept_stats_counts_rejections_and_area_quantiles(tmp_path):
    config = SegmentConfig(min_score=0.5, min_area=0.02, max_area=0.9)
    rows = []
    for i, (concept, score, area) in enumerate(
        [
            ("road", 0.9, 0.1),
            ("road", 0.8, 0.2),
            ("road", 0.7, 0.3),
            ("road", 0.6, 0.4),
            ("road", 0.3, 0.5),
            ("wheel", 0.9, 0.01),
            ("wheel", 0.9, 0.0),
            ("wheel", 0.95, 0.95),
        ]
    ):
        reason = quality_rejection(config, score, area)
        rows.append(
            {
                "mask_id": f"m{i}",
                "image_id": f"img{i % 3}",
                "concept": concept,
                "score": score,
                "area_frac": area,
                "segmenter_id": "cam@v1",
                "path": f"masks/m{i}.png",
                "kept": reason is None,
                "reject_reason": reason,
            }
        )
    build = tmp_path / "build"
    (build / "manifests").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows), build / "manifests" / "masks.parquet")

    stats = {row["concept"]: row for row in build_concept_stats(build)}
    road, wheel = stats["road"], stats["wheel"]
    assert (road["images"], road["masks"], road["kept"], road["rejected"]) == (3, 5, 4, 1)
    assert road["rejected_min_score"] == 1 and road["rejected_min_area"] == 0
    assert road["area_p50"] == pytest.approx(0.3)
    assert road["area_p10"] == pytest.approx(0.14) and road["area_p90"] == pytest.approx(0.46)
    assert road["mean_score"] == pytest.approx(0.66)
    assert (
        wheel["kept"],
        wheel["rejected_empty"],
        wheel["rejected_min_area"],
        wheel["rejected_max_area"],
    ) == (0, 1, 1, 1)
    assert wheel["area_p50"] == pytest.approx(0.48)  # empty masks are not areas
    assert rejection_rule("score 0.300 < min_score 0.5") == "min_score"
    assert rejection_rule(None) is None and rejection_rule("weird") == "other"

    table = format_concept_stats(list(stats.values()))
    assert table.row_count == 2 and len(table.columns) == 9
    with pytest.raises(FileNotFoundError, match="masks manifest"):
        build_concept_stats(tmp_path / "nowhere")
