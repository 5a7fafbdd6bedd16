"""Label-map PNG folders in the `annotations` segmenter: one PNG of class ids per image (8-bit,
16-bit, palette, RGB colour-coded) with an id → name map, in the CamVid, Cityscapes, Pascal VOC
and ADE20K layouts; masks pixel-exact, void ids give nothing, bad files are named."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.imageio import resize_max_side
from pipeline.segment import create_segmenter
from pipeline.segment.annotation_formats import AnnotationError
from pipeline.segment.label_maps import load_label_names, read_label_map

HEIGHT, WIDTH = 36, 48


def photo(path: Path, seed: int) -> np.ndarray:
    rgb = np.random.default_rng(seed).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(path)
    return rgb


def street_labels(road: int, sky: int, person: int, void: int, seed: int = 0) -> np.ndarray:
    """Sky on top, road below, a person, some void pixels: a class id per pixel."""
    labels = np.full((HEIGHT, WIDTH), road, dtype=np.int64)
    labels[:12] = sky
    labels[14:30, 30:36] = person
    noise = np.random.default_rng(seed).random((HEIGHT, WIDTH)) < 0.05  # irregular void
    labels[noise] = void
    return labels


def by_concept(detections) -> dict[str, np.ndarray]:  # type: ignore[no-untyped-def]
    found = {d.concept: d.mask for d in detections}
    assert len(found) == len(detections)  # one class, one detection, in a label map
    return found


@pytest.fixture
def camvid(tmp_path: Path) -> dict:
    """SegNet's CamVid layout: frames in `val/`, 8-bit label PNGs of the same name in `valannot/`
    (both under one root), 0 Sky, 3 Road, 9 Pedestrian, 11 Unlabelled."""
    root = tmp_path / "camvid"
    pixels, labels = {}, {}
    for number in range(2):
        name = f"0016E5_0{number}"
        pixels[name] = photo(root / "val" / f"{name}.png", number)
        labels[name] = street_labels(road=3, sky=0, person=9, void=11, seed=number)
        (root / "valannot").mkdir(exist_ok=True)
        Image.fromarray(labels[name].astype(np.uint8)).save(root / "valannot" / f"{name}.png")
    return {"root": root, "pixels": pixels, "labels": labels}


def test_camvid_index_maps_give_one_pixel_exact_mask_per_class(camvid):
    segmenter = create_segmenter(
        "annotations",
        concepts=["road", "sky", "person", "car"],
        label_maps=str(camvid["root"] / "valannot"),
        label_names="camvid",
        image_root=str(camvid["root"]),  # the label folder inside it is not taken for images
    )
    assert len(segmenter.images) == 2 and segmenter.skipped == []
    for name in ("0016E5_00", "0016E5_01"):
        labels = camvid["labels"][name]
        found = by_concept(segmenter.segment([camvid["pixels"][name]], [None])[0])
        assert set(found) == {"road", "sky", "person"}  # no car pixels: no car detection
        assert np.array_equal(found["road"], labels == 3)  # CamVid `Road`
        assert np.array_equal(found["sky"], labels == 0)
        assert np.array_equal(found["person"], labels == 9)  # CamVid `Pedestrian`
        void = int((labels == 11).sum())
        assert void > 0 and sum(int(m.sum()) for m in found.values()) == HEIGHT * WIDTH - void
    assert found["person"].sum() == (labels[14:30, 30:36] == 9).sum() > 80


def test_masks_follow_the_image_to_the_working_resolution(camvid):
    segmenter = create_segmenter(
        "annotations",
        concepts=["person"],
        label_maps=str(camvid["root"] / "valannot"),
        label_names="camvid",
        image_root=str(camvid["root"] / "val"),
        max_side=24,
    )
    working = resize_max_side(camvid["pixels"]["0016E5_01"], 24)
    assert working.shape[:2] == (18, 24)
    (person,) = segmenter.segment([working], [None])[0]
    rows = np.floor((np.arange(18) + 0.5) * HEIGHT / 18).astype(int)  # pixel-centre sampling
    cols = np.floor((np.arange(24) + 0.5) * WIDTH / 24).astype(int)
    expected = camvid["labels"]["0016E5_01"][np.ix_(rows, cols)] == 9
    assert np.array_equal(person.mask, expected)


def test_16_bit_maps_with_a_json_name_map_and_the_255_ignore_label(tmp_path):
    rgb = photo(tmp_path / "images" / "scene.png", 3)
    labels = street_labels(road=1000, sky=40000, person=7, void=255)
    (tmp_path / "labels").mkdir()
    Image.fromarray(labels.astype(np.uint16)).save(tmp_path / "labels" / "scene.png")
    assert Image.open(tmp_path / "labels" / "scene.png").mode.startswith("I")  # really 16-bit
    names = tmp_path / "names.json"
    names.write_text(json.dumps({"1000": "road", "40000": "sky-other-merged", "7": "people"}))
    options = {
        "label_maps": str(tmp_path / "labels"),
        "label_names": str(names),
        "image_root": str(tmp_path / "images"),
    }
    found = by_concept(create_segmenter("annotations", **options).segment([rgb], [None])[0])
    assert set(found) == {"road", "sky", "person"}
    assert np.array_equal(found["sky"], labels == 40000) and found["sky"].sum() > 400
    assert np.array_equal(found["road"], labels == 1000)
    strict = create_segmenter("annotations", **options, label_ignore=[])
    with pytest.raises(AnnotationError, match=r"scene\.png: values \[255\] are not in label_names"):
        strict.segment([rgb], [None])


def test_voc_palette_pngs_are_read_by_palette_index(tmp_path):
    rgb = photo(tmp_path / "JPEGImages" / "2007_000032.png", 4)
    labels = np.zeros((HEIGHT, WIDTH), dtype=np.uint8)
    labels[5:20, 5:25] = 15  # person
    labels[22:34, 10:40] = 7  # car
    labels[4, 4:26] = labels[21, 4:26] = 255  # the void border VOC draws round objects
    palette = Image.fromarray(labels)
    colours = np.random.default_rng(0).integers(0, 256, (256, 3), dtype=np.uint8)
    palette.putpalette(colours.flatten().tolist())  # an L image with a palette is a P image
    (tmp_path / "SegmentationClass").mkdir()
    palette.save(tmp_path / "SegmentationClass" / "2007_000032.png")
    assert Image.open(tmp_path / "SegmentationClass" / "2007_000032.png").mode == "P"
    segmenter = create_segmenter(
        "annotations",
        concepts=["person", "car", "background"],
        label_maps=str(tmp_path / "SegmentationClass"),
        label_names="voc",
        image_root=str(tmp_path / "JPEGImages"),
    )
    found = by_concept(segmenter.segment([rgb], [None])[0])
    assert found["person"].sum() == 15 * 20 and found["car"].sum() == 12 * 30
    assert np.array_equal(found["background"], labels == 0)
    assert not (found["person"] | found["car"] | found["background"])[labels == 255].any()


def test_rgb_colour_coded_maps_with_a_label_colors_table(tmp_path):
    rgb = photo(tmp_path / "701_StillsRaw_full" / "0001TP_006690.png", 5)
    table = {"Road": (128, 64, 128), "Sky": (128, 128, 128), "Car": (64, 0, 128)}
    labels = street_labels(road=0, sky=1, person=2, void=3)  # the person box is a car here
    colours = np.array([*table.values(), (0, 0, 0)], dtype=np.uint8)[labels]
    folder = tmp_path / "LabeledApproved_full"
    folder.mkdir()
    Image.fromarray(colours).save(folder / "0001TP_006690_L.png")
    colours_txt = tmp_path / "label_colors.txt"
    lines = [f"{r} {g} {b}\t{name}" for name, (r, g, b) in table.items()] + ["0 0 0\tVoid"]
    colours_txt.write_text("\n".join(lines) + "\n")
    options = {
        "label_maps": str(folder),
        "label_colors": str(colours_txt),
        "label_suffix": "_L",  # the original CamVid names its labels <frame>_L.png
        "image_root": str(tmp_path / "701_StillsRaw_full"),
    }
    segmenter = create_segmenter("annotations", **options)
    assert set(segmenter.concepts) == {"road", "sky", "car"}  # Void is no concept
    found = by_concept(segmenter.segment([rgb], [None])[0])
    assert np.array_equal(found["road"], labels == 0)
    assert np.array_equal(found["car"], labels == 2) and found["car"].sum() > 80
    colours[0, 0] = (1, 2, 3)
    Image.fromarray(colours).save(folder / "0001TP_006690_L.png")
    with pytest.raises(AnnotationError, match=r"_L\.png: colours \[\(1, 2, 3\)\] are not in"):
        create_segmenter("annotations", **options).segment([rgb], [None])
    with pytest.raises(AnnotationError, match=r"_L\.png: an RGB label map with colours needs"):
        create_segmenter(
            "annotations", **{**options, "label_colors": None, "label_names": "camvid"}
        ).segment([rgb], [None])


def test_cityscapes_suffixes_and_label_ids(tmp_path):
    image = tmp_path / "leftImg8bit" / "val" / "frankfurt"
    labels_dir = tmp_path / "gtFine" / "val" / "frankfurt"
    rgb = photo(image / "frankfurt_000000_000294_leftImg8bit.png", 6)
    labels = street_labels(road=7, sky=23, person=24, void=1)  # 1: ego vehicle, void
    labels[30:, :10] = 21  # vegetation
    labels_dir.mkdir(parents=True)
    stem = "frankfurt_000000_000294_gtFine"
    Image.fromarray(labels.astype(np.uint8)).save(labels_dir / f"{stem}_labelIds.png")
    Image.fromarray(np.zeros((HEIGHT, WIDTH, 3), np.uint8)).save(labels_dir / f"{stem}_color.png")
    segmenter = create_segmenter(
        "annotations",
        concepts=["road", "sky", "person", "tree"],
        label_maps=str(tmp_path / "gtFine" / "val"),
        label_suffix="_gtFine_labelIds",  # the `_color.png` files are not label maps of ids
        label_names="cityscapes",
        image_root=str(tmp_path / "leftImg8bit" / "val"),
        image_suffix="_leftImg8bit",
    )
    assert len(segmenter.images) == 1
    found = by_concept(segmenter.segment([rgb], [None])[0])
    assert np.array_equal(found["tree"], labels == 21) and found["tree"].sum() > 40
    assert np.array_equal(found["road"], labels == 7)
    assert np.array_equal(found["person"], labels == 24)


def test_ade20k_csv_names_take_the_first_known_synonym(tmp_path):
    rgb = photo(tmp_path / "images" / "validation" / "ADE_val_00000001.png", 7)
    labels = street_labels(road=7, sky=3, person=13, void=0)
    (tmp_path / "annotations" / "validation").mkdir(parents=True)
    target = tmp_path / "annotations" / "validation" / "ADE_val_00000001.png"
    Image.fromarray(labels.astype(np.uint8)).save(target)
    csv = tmp_path / "objectInfo150.csv"
    csv.write_text(
        "Idx,Ratio,Train,Val,Name\n1,0.15,11664,1172,wall\n3,0.08,8265,796,sky\n"
        "7,0.02,1,1,road;route\n13,0.01,1,1,individual;person;someone\n"
    )
    names = load_label_names(str(csv))
    assert names[13] == "individual;person;someone" and 0 not in names
    segmenter = create_segmenter(
        "annotations",
        label_maps=str(tmp_path / "annotations"),
        label_names=str(csv),
        label_ignore=[0],  # ADE20K's 0 is "other": no class
        image_root=str(tmp_path / "images"),
    )
    assert set(segmenter.concepts) == {"wall", "sky", "road", "person"}
    found = by_concept(segmenter.segment([rgb], [None])[0])
    assert set(found) == {"sky", "road", "person"} and np.array_equal(found["sky"], labels == 3)
    text = tmp_path / "names.txt"
    text.write_text("# id name\n3 sky\n7: road\n13 person\n")
    assert load_label_names(str(text)) == {3: "sky", 7: "road", 13: "person"}
    text.write_text("Sky\nBuilding\n")
    assert load_label_names(str(text)) == {0: "Sky", 1: "Building"}


def test_bad_label_files_are_named_with_the_problem(camvid, tmp_path):
    annot = camvid["root"] / "valannot"
    options = {"label_maps": str(annot), "label_names": "camvid", "image_root": str(camvid["root"])}
    frame = camvid["pixels"]["0016E5_00"]
    labels = camvid["labels"]["0016E5_00"].astype(np.uint8)
    Image.fromarray(labels[:, :40]).save(annot / "0016E5_00.png")
    with pytest.raises(AnnotationError, match=r"0016E5_00\.png \(id \d+\): mask is 40x36 but"):
        create_segmenter("annotations", **options).segment([frame], [None])
    labels[0, 0] = 42
    Image.fromarray(labels).save(annot / "0016E5_00.png")
    with pytest.raises(AnnotationError, match=r"0016E5_00\.png: values \[42\] are not in label_n"):
        create_segmenter("annotations", **options).segment([frame], [None])
    (annot / "0016E5_00.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    with pytest.raises(AnnotationError, match=r"0016E5_00\.png: cannot read"):
        create_segmenter("annotations", **options).segment([frame], [None])
    # the other frame is unaffected, and a label without a frame is skipped and reported
    Image.fromarray(labels).save(annot / "0016E5_99.png")
    segmenter = create_segmenter("annotations", **options)
    assert [Path(f).name for f, _ in segmenter.skipped] == ["0016E5_99.png"]
    assert len(segmenter.segment([camvid["pixels"]["0016E5_01"]], [None])[0]) == 3
    with pytest.raises(AnnotationError, match="neither a file nor a preset"):
        create_segmenter("annotations", **{**options, "label_names": "kitti"})
    with pytest.raises(ValueError, match="label_names or label_colors"):
        create_segmenter("annotations", **{**options, "label_names": None})
    with pytest.raises(AnnotationError, match=r"label map folder .* does not exist"):
        create_segmenter("annotations", **{**options, "label_maps": str(tmp_path / "nope")})


def test_read_label_map_accepts_grey_stored_as_rgb(tmp_path):
    labels = street_labels(road=3, sky=0, person=9, void=11)
    grey = np.repeat(labels.astype(np.uint8)[:, :, None], 3, axis=2)
    Image.fromarray(grey).save(tmp_path / "grey.png")
    assert np.array_equal(read_label_map(tmp_path / "grey.png"), labels)
