"""The `cam` segmenter on real photos (scikit-image's sample images) with the real classifier."""

from __future__ import annotations

import math

import numpy as np
import pytest
import skimage.data

from pipeline.classify.imagenet import class_names
from pipeline.segment import create_segmenter
from pipeline.segment.base import Segmenter
from pipeline.segment.cam import CamSegmenter
from pipeline.segment.cam_concepts import CAM_CONCEPT_CLASSES, supported_concepts


@pytest.fixture(scope="module")
def clf():
    from pipeline.classify import create_classifier

    return create_classifier("timm:tf_efficientnet_lite0", device="cpu", engine="eager")


@pytest.fixture(scope="module")
def photos() -> dict[str, np.ndarray]:
    return {
        "chelsea": skimage.data.chelsea(),
        "coffee": skimage.data.coffee(),
        "motorcycle": skimage.data.stereo_motorcycle()[0],
    }


@pytest.fixture(scope="module")
def objseg(clf) -> CamSegmenter:
    return CamSegmenter(("object", "background"), classifier=clf)


@pytest.fixture(scope="module")
def found(objseg, photos) -> dict[str, dict[str, object]]:
    results = objseg.segment(list(photos.values()), [None] * len(photos))
    return {name: {d.concept: d for d in dets} for name, dets in zip(photos, results, strict=True)}


def _at(mask: np.ndarray, x: float, y: float) -> bool:
    """The mask at a point given as fractions of the width and height."""
    h, w = mask.shape
    return bool(mask[int(y * h), int(x * w)])


def _frac(mask: np.ndarray, x0: float, x1: float, y0: float, y1: float) -> float:
    h, w = mask.shape
    return float(mask[int(y0 * h) : int(y1 * h), int(x0 * w) : int(x1 * w)].mean())


def test_is_a_registered_segmenter(clf):
    seg = create_segmenter("cam", concepts=["object"], classifier=clf)
    assert isinstance(seg, Segmenter)
    assert seg.concepts == ("object",)


def test_object_covers_the_cat_and_not_the_background(found, photos):
    obj = found["chelsea"]["object"]
    mask = obj.mask
    assert mask.dtype == bool and mask.shape == photos["chelsea"].shape[:2]
    # The cat fills the left ~80% of the photo; the right strip is blurred background.
    assert 0.6 < mask.mean() < 0.9
    for x, y in [(0.38, 0.38), (0.70, 0.43), (0.57, 0.80)]:  # left eye, right eye, nose
        assert _at(mask, x, y), (x, y)
    assert _frac(mask, 0.0, 0.7, 0.0, 1.0) > 0.9  # the left 70% is cat
    assert _frac(mask, 0.93, 1.0, 0.0, 1.0) < 0.1  # the right edge is background
    for x, y in [(0.98, 0.02), (0.98, 0.98), (0.96, 0.5)]:  # right corners, right middle
        assert not _at(mask, x, y), (x, y)
    assert 0.0 < obj.score <= 1.0


def test_object_on_coffee_and_motorcycle(found):
    cup = found["coffee"]["object"].mask
    assert 0.25 < cup.mean() < 0.7
    assert _at(cup, 0.48, 0.35) and _at(cup, 0.5, 0.85)  # the coffee, the saucer
    assert not any(cup[y, x] for y, x in [(0, 0), (0, -1), (-1, 0), (-1, -1)])  # table corners
    bike = found["motorcycle"]["object"].mask
    assert 0.2 < bike.mean() < 0.55
    assert _at(bike, 0.55, 0.62)  # engine
    assert _frac(bike, 0.15, 0.39, 0.48, 0.82) > 0.6  # rear wheel box
    assert _frac(bike, 0.0, 1.0, 0.0, 0.15) < 0.05  # the shelves at the top


def test_background_is_exactly_the_complement(found):
    for name, dets in found.items():
        obj, bg = dets["object"], dets["background"]
        assert np.array_equal(bg.mask, ~obj.mask), name
        assert bg.score == obj.score


def test_deterministic(objseg, photos, found):
    """Each photo alone gets the masks it got in a batch, whose GrabCuts ran concurrently."""
    for name, photo in photos.items():
        again = objseg.segment([photo], [None])[0]
        assert np.array_equal(again[0].mask, found[name]["object"].mask), name
        assert again[0].score == found[name]["object"].score


def test_label_selects_the_cam_class(objseg, photos):
    tiger_cat = class_names().index("tiger_cat")
    with_label = objseg.segment([photos["chelsea"]], [tiger_cat])[0][0]
    assert 0.6 < with_label.mask.mean() < 0.9  # the cat classes all point at the cat
    with pytest.raises(ValueError, match="label"):
        objseg.segment([photos["chelsea"]], [5000])


def test_masks_have_the_input_size_for_odd_sizes(clf, photos):
    seg = CamSegmenter(
        ("object", "background", "helmet"),
        classifier=clf,
        windows=(120,),
        crop_size=64,
        threshold=0.01,
    )
    images = [photos["chelsea"][:297, :449], photos["coffee"][:101, :77]]
    for image, dets in zip(images, seg.segment(images, [None, None]), strict=True):
        assert {d.concept for d in dets} >= {"object", "background"}
        for det in dets:
            assert det.mask.shape == image.shape[:2] and det.mask.dtype == bool


def test_crops_are_batched_across_images(photos):
    from pipeline.classify import create_classifier

    # crops go through the classifier in batches of its own batch size (one setting per model)
    clf = create_classifier(
        "timm:tf_efficientnet_lite0", device="cpu", engine="eager", batch_size=40
    )
    seg = CamSegmenter(("helmet", "clock"), classifier=clf, crop_size=64)
    assert seg.batch_size == 40
    images = [photos["chelsea"], photos["coffee"]]
    crops = [len(seg.boxes(*_work_shape(image, seg.work_size))) for image in images]
    per_image = sum(math.ceil(n / seg.batch_size) for n in crops)
    batched = math.ceil(sum(crops) / seg.batch_size)
    assert batched < per_image  # so the count below proves batches span images
    calls: list[int] = []
    handle = clf.model.register_forward_hook(lambda _m, args, _o: calls.append(args[0].shape[0]))
    try:
        seg.segment(images, [None, None])
    finally:
        handle.remove()
    assert len(calls) == batched
    assert sum(calls) == sum(crops)
    assert max(calls) == seg.batch_size


def _work_shape(image: np.ndarray, size: int) -> tuple[int, int]:
    h, w = image.shape[:2]
    scale = size / max(h, w)
    return round(h * scale), round(w * scale)


def test_helmet_is_found_on_the_astronauts_helmet(clf):
    image = skimage.data.astronaut()  # the helmet is held in the lower right corner
    seg = CamSegmenter(("helmet", "cup"), classifier=clf)
    dets = {d.concept: d for d in seg.segment([image], [None])[0]}
    assert "cup" not in dets  # no crop of the astronaut looks like a cup
    helmet = dets["helmet"]
    assert helmet.score > 0.5
    assert 0.05 < helmet.mask.mean() < 0.4
    inside = helmet.mask[int(0.6 * 512) :, int(0.5 * 512) :].sum() / helmet.mask.sum()
    assert inside > 0.7
    assert _frac(helmet.mask, 0.53, 1.0, 0.7, 1.0) > 0.6  # most of the helmet itself
    assert _frac(helmet.mask, 0.0, 1.0, 0.0, 0.5) < 0.01  # nothing on the face or the flag


def test_unknown_concept_raises_listing_supported():
    with pytest.raises(ValueError, match=r"'person'.*supported: object, background, .*wheel"):
        CamSegmenter(("object", "person"))


def test_concept_table_names_real_imagenet_classes():
    names = set(class_names())
    for concept, classes in CAM_CONCEPT_CLASSES.items():
        assert classes and set(classes) <= names, concept
    assert "wheel" in supported_concepts() and "person" not in supported_concepts()


def test_id_names_classifier_and_mask_settings(clf):
    a = CamSegmenter(("object",), classifier=clf)
    assert a.id.startswith(f"cam@v1({clf.id},")
    for key in ("work=320", "win=80-120", "stride=0.5", "crop=160", "thr=0.4", "sp=200", "gc=5"):
        assert key in a.id
    assert CamSegmenter(("object",), classifier=clf, threshold=0.5).id != a.id
    assert CamSegmenter(("object",), classifier=clf, windows=(64,)).id != a.id
