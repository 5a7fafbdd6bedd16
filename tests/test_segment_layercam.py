"""LayerCAM object masks of the `cam` segmenter, and the rule that its masks never come from
the audited classifier by default."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import skimage.data

from pipeline.config import BuildConfig
from pipeline.segment.cam import CamSegmenter
from pipeline.segment.cam_concepts import independent_mask_classifier
from pipeline.segment.layercam import feature_blocks, layercam_map
from pipeline.stages import Backends

LITE0, LITE2 = "timm:tf_efficientnet_lite0", "timm:tf_efficientnet_lite2"


@pytest.fixture(scope="module")
def clf():
    from pipeline.classify import create_classifier

    return create_classifier(LITE0, device="cpu")


def test_default_mask_model_is_never_the_audited_one() -> None:
    assert independent_mask_classifier(LITE0) == LITE2
    assert independent_mask_classifier(LITE2) == LITE0
    assert independent_mask_classifier("torchvision:resnet50") == LITE0


def _config(tmp_path: Path, audited: str, **options) -> BuildConfig:  # type: ignore[no-untyped-def]
    return BuildConfig.model_validate(
        {
            "source": {"kind": "folder", "path": str(tmp_path)},
            "classifier": {"name": audited},
            "segment": {"backend": "cam", "concepts": ["object"], "options": options},
        }
    )


def test_build_fingerprint_records_the_independent_mask_model(tmp_path: Path) -> None:
    # given a lite0 audit, when nothing names the mask model, then cam uses lite2 (and the reverse)
    lite0_default = Backends(_config(tmp_path, LITE0)).segmenter.id
    lite0_named_lite2 = Backends(_config(tmp_path, LITE0, classifier=LITE2)).segmenter.id
    lite0_named_lite0 = Backends(_config(tmp_path, LITE0, classifier=LITE0)).segmenter.id
    lite2_default = Backends(_config(tmp_path, LITE2)).segmenter.id
    lite2_named_lite0 = Backends(_config(tmp_path, LITE2, classifier=LITE0)).segmenter.id
    assert lite0_default == lite0_named_lite2
    assert lite0_default != lite0_named_lite0  # an explicit option wins
    assert lite2_default == lite2_named_lite0


def test_build_records_what_cam_masks_are_worth(tmp_path: Path) -> None:
    """The report's mask line comes from build.yaml's mask_model: for `cam` it must say that the
    masks are an offline finder's and give their measured IoU, per object method."""
    from pipeline.stages.build import mask_model

    gradcam = mask_model(_config(tmp_path, LITE0))
    layercam = mask_model(_config(tmp_path, LITE0, object_method="layercam"))
    assert gradcam["classifier"] == LITE2 and "not a segmentation model" in gradcam["finder"]
    assert gradcam["iou"].startswith("object 0.") and "background 0." in gradcam["iou"]
    assert layercam["iou"] != gradcam["iou"]
    annotated = _config(tmp_path, LITE0).model_copy(
        update={
            "segment": _config(tmp_path, LITE0).segment.model_copy(
                update={"backend": "annotations"}
            )
        }
    )
    assert mask_model(annotated) == {"backend": "annotations"}


def test_loaded_cam_segmenter_uses_the_other_model(tmp_path: Path) -> None:
    segmenter = Backends(_config(tmp_path, LITE2)).segmenter.load()
    assert segmenter.classifier.id.startswith(LITE0 + "@")


def test_layercam_map_is_peak_normalised_on_the_requested_grid(clf) -> None:
    image = skimage.data.chelsea()
    seg = CamSegmenter(classifier=clf)
    heat, cls, prob = layercam_map(
        clf.model, seg._normalise, image, (224,), (3, 4, 5, 6), 5, None, (60, 80)
    )
    assert heat.shape == (60, 80)
    assert heat.max() == pytest.approx(1.0) and heat.min() >= 0.0
    assert 0 <= cls < 1000 and 0.0 < prob <= 1.0
    # a given label is the class reported
    _, labelled, _ = layercam_map(clf.model, seg._normalise, image, (224,), (5,), 2, 3)
    assert labelled == 3


def test_layercam_object_mask_covers_the_cat(clf) -> None:
    image = skimage.data.chelsea()  # 451 x 300, the cat fills the middle and right
    seg = CamSegmenter(
        ("object", "background"), classifier=clf, object_method="layercam", layercam_sizes=(224,)
    )
    found = {d.concept: d for d in seg.segment([image], [None])[0]}
    obj = found["object"].mask
    assert obj.shape == image.shape[:2]
    assert 0.2 < obj.mean() < 1.0  # the cat fills most of the photo
    assert obj[150, 250]  # the cat's face
    np.testing.assert_array_equal(found["background"].mask, ~obj)
    assert "obj=layercam@v1(sizes=224,blocks=3-4-5-6,top=5" in seg.id


def test_gradcam_id_is_unchanged_and_methods_are_checked(clf) -> None:
    assert "layercam" not in CamSegmenter(classifier=clf).id
    with pytest.raises(ValueError, match="object_method"):
        CamSegmenter(classifier=clf, object_method="spectral")
    with pytest.raises(ValueError, match="outside the model"):
        feature_blocks(clf.model, (9,))


def test_mask_classifier_name_follows_the_rule() -> None:
    from pipeline.segment.cam_concepts import mask_classifier_name

    assert mask_classifier_name("cam", {}, LITE0) == LITE2
    assert mask_classifier_name("cam", {"classifier": LITE0}, LITE0) == LITE0
    assert mask_classifier_name("other", {}, LITE0) == LITE0
