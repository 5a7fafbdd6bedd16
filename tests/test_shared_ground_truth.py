"""The `annotations` segmenter on the real ground truth of the shared data sets: the COCO
panoptic sample and CamVid (SegNet). Counts and masks are checked against numbers computed
here straight from the raw JSON and PNGs with numpy; skipped where the data is absent."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.imageio import decode_image, read_file_bytes, resize_max_side
from pipeline.segment import create_segmenter
from pipeline.segment.vocabulary import canonical

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"
COCO = SHARED / "coco-panoptic-sample"
CAMVID = SHARED / "camvid"
# CamVid's classes (its README) as the concepts they must give; 11 (Unlabelled) gives none
CAMVID_CONCEPTS = {
    0: "sky",
    1: "building",
    2: "pole",
    3: "road",
    4: "pavement",
    5: "tree",
    6: "street_sign",
    7: "fence",
    8: "car",
    9: "person",
    10: "bicyclist",
}

needs_coco = pytest.mark.skipif(
    not (COCO / "annotations" / "panoptic_train2017.json").is_file(),
    reason=f"the shared COCO panoptic sample is absent ({COCO})",
)
needs_camvid = pytest.mark.skipif(
    not (CAMVID / "valannot").is_dir(), reason=f"the shared CamVid frames are absent ({CAMVID})"
)


def pixels_of(path: Path) -> np.ndarray:
    """An image decoded the way the pipeline decodes it (original resolution)."""
    return decode_image(read_file_bytes(path), str(path)).rgb


def per_concept(detections) -> dict[str, tuple[int, int]]:  # type: ignore[no-untyped-def]
    """concept → (number of detections, pixels of their union)."""
    table: dict[str, tuple[int, np.ndarray]] = {}
    for d in detections:
        count, union = table.get(d.concept, (0, np.zeros(d.mask.shape, bool)))
        table[d.concept] = (count + 1, union | d.mask)
    return {c: (n, int(union.sum())) for c, (n, union) in table.items()}


@needs_coco
def test_coco_panoptic_sample_segments_match_the_raw_pngs():
    document = json.loads((COCO / "annotations" / "panoptic_train2017.json").read_text())
    names = {c["id"]: c["name"] for c in document["categories"]}
    segmenter = create_segmenter(
        "annotations",
        concepts=None,
        panoptic_json=str(COCO / "annotations" / "panoptic_train2017.json"),
        image_root=str(COCO / "images"),
    )
    assert len(segmenter.images) == len(document["annotations"]) == 100
    assert segmenter.skipped == []
    # images per concept: the backend's view against the raw JSON (and the README's counts)
    raw_counts = Counter(
        concept
        for a in document["annotations"]
        for concept in {
            canonical(names[s["category_id"]], strict=False) for s in a["segments_info"]
        }
    )
    ours = Counter(c for image in segmenter.images for c in {s.concept for s in image.sources})
    assert ours == raw_counts
    readme = {"person": 51, "sky": 36, "tree": 37, "grass": 17, "road": 9, "car": 10, "snow": 4}
    assert {c: raw_counts[c] for c in readme} == readme
    photos = {i["id"]: i["file_name"] for i in document["images"]}
    with_road_or_snow = [
        a
        for a in document["annotations"]
        if {names[s["category_id"]] for s in a["segments_info"]} & {"road", "snow"}
    ]
    for annotation in with_road_or_snow[:3] + document["annotations"][:2]:
        png = COCO / "annotations" / "panoptic_train2017" / annotation["file_name"]
        rgb = np.asarray(Image.open(png).convert("RGB"), dtype=np.uint32)
        ids = rgb[..., 0] + 256 * rgb[..., 1] + 256 * 256 * rgb[..., 2]
        expected: dict[str, tuple[int, int]] = {}
        for segment in annotation["segments_info"]:
            concept = canonical(names[segment["category_id"]], strict=False)
            count, area = expected.get(concept, (0, 0))
            expected[concept] = (count + 1, area + int((ids == segment["id"]).sum()))
        photo = pixels_of(COCO / "images" / photos[annotation["image_id"]])
        found = segmenter.segment([photo], [None])[0]
        assert per_concept(found) == expected, annotation["file_name"]
        assert all(d.mask.shape == ids.shape for d in found)


@needs_camvid
def test_camvid_label_maps_match_the_raw_pngs():
    label_dirs = [CAMVID / "valannot", CAMVID / "testannot"]
    segmenter = create_segmenter(
        "annotations",
        concepts=None,
        label_maps=[str(d) for d in label_dirs],
        label_names="camvid",
        image_root=str(CAMVID),
    )
    label_files = sorted(p for d in label_dirs for p in d.glob("*.png"))
    assert len(segmenter.images) == len(label_files) == 334 and segmenter.skipped == []
    frames = sorted(Path(image.uri).relative_to(CAMVID).as_posix() for image in segmenter.images)
    expected_frames = sorted(f"{p.parent.name[: -len('annot')]}/{p.name}" for p in label_files)
    assert frames == expected_frames  # val/x.png ↔ valannot/x.png, test/x.png ↔ testannot/x.png
    assert set(segmenter.concepts) == set(CAMVID_CONCEPTS.values())

    # masks of a few frames, at the original and the working resolution (only the val frames
    # are indexed here, to keep the test short: each image is decoded once to be recognised)
    val = create_segmenter(
        "annotations",
        concepts=["road", "sky", "car", "person", "tree"],
        label_maps=str(CAMVID / "valannot"),
        label_names="camvid",
        image_root=str(CAMVID / "val"),
        max_side=240,
    )
    for label_path in sorted((CAMVID / "valannot").glob("*.png"))[::25]:
        labels = np.asarray(Image.open(label_path))
        frame = pixels_of(CAMVID / "val" / label_path.name)
        expected = {
            CAMVID_CONCEPTS[k]: (1, int((labels == k).sum()))
            for k in (3, 0, 8, 9, 5)
            if (labels == k).any()
        }
        assert "road" in expected and expected["road"][1] > 0.1 * labels.size
        assert per_concept(val.segment([frame], [None])[0]) == expected, label_path.name
        working = resize_max_side(frame, 240)
        (road,) = [d for d in val.segment([working], [None])[0] if d.concept == "road"]
        rows = np.floor((np.arange(180) + 0.5) * 360 / 180).astype(int)
        cols = np.floor((np.arange(240) + 0.5) * 480 / 240).astype(int)
        assert working.shape[:2] == (180, 240)
        assert np.array_equal(road.mask, labels[np.ix_(rows, cols)] == 3)
