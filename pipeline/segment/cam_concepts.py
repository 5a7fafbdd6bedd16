"""The concepts the `cam` segmenter can find, and the ImageNet classes that name each one.

`object` and `background` are found for every image (class activation map of the image's class,
refined with GrabCut). Every other concept is a *thing or part inside the image* that ImageNet-1k
has a class for: the segmenter classifies sliding crops and maps where p(concept) is high, where
p(concept) is the summed probability of the classes listed here.

The table only lists concepts that ImageNet classes really name. There is no `person`, `face`,
`sky`, `grass`, `tree`, `road`, `window` or `tire` class in ImageNet-1k, so those are not offered
(`window_screen` is a fly screen, `window_shade` a blind). Known gaps, measured:

* `wheel` is `car_wheel` only. Tight crops of motorcycle wheels are classified `moped` or
  `disk_brake`, not `car_wheel`, so `wheel` does not find motorcycle or bicycle wheels.
* `sunglass` (n04355933) is WordNet's burning glass, but its ImageNet images are mostly eyewear,
  so it is pooled with `sunglasses`.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Any

OBJECT = "object"
BACKGROUND = "background"
WHOLE_IMAGE_CONCEPTS: tuple[str, ...] = (OBJECT, BACKGROUND)

# concept → ImageNet-1k short class names (see `pipeline.classify.imagenet.class_names`).
CAM_CONCEPT_CLASSES: dict[str, tuple[str, ...]] = {
    # vehicle parts
    "wheel": ("car_wheel",),
    "grille": ("grille",),
    "car_mirror": ("car_mirror",),
    # worn things
    "helmet": ("crash_helmet", "football_helmet"),
    "hat": ("cowboy_hat", "sombrero"),
    "tie": ("Windsor_tie", "bow_tie"),
    "sunglasses": ("sunglasses", "sunglass"),
    "necklace": ("necklace",),
    "backpack": ("backpack",),
    "jersey": ("jersey",),
    "shoe": ("running_shoe", "Loafer", "clog", "sandal", "cowboy_boot"),
    # tableware
    "cup": ("cup", "coffee_mug"),
    "bottle": ("beer_bottle", "wine_bottle", "water_bottle", "pop_bottle", "pill_bottle"),
    "bowl": ("mixing_bowl", "soup_bowl"),
    # furniture and street things
    "clock": ("analog_clock", "wall_clock", "digital_clock"),
    "chair": ("folding_chair", "rocking_chair", "barber_chair"),
    "umbrella": ("umbrella",),
    "street_sign": ("street_sign",),
    "traffic_light": ("traffic_light",),
    "keyboard": ("computer_keyboard",),
}


def supported_concepts() -> tuple[str, ...]:
    """Every concept name `CamSegmenter` accepts, whole-image ones first."""
    return WHOLE_IMAGE_CONCEPTS + tuple(sorted(CAM_CONCEPT_CLASSES))


@cache
def concept_class_indices(concept: str) -> tuple[int, ...]:
    """ImageNet class indices of a part/thing concept (KeyError for unknown concepts)."""
    from pipeline.classify.imagenet import class_index

    return tuple(class_index(name) for name in CAM_CONCEPT_CLASSES[concept])


# The default mask model of the `cam` segmenter is never the audited classifier: Grad-CAM of
# the audited model marks where that model already looks, which makes the audit circular.
MASK_CLASSIFIER = "timm:tf_efficientnet_lite0"
MASK_CLASSIFIER_ALTERNATIVE = "timm:tf_efficientnet_lite2"


# What `cam`'s masks are worth, measured against ground truth (benchmarks/mask_quality.py, COCO
# panoptic sample, test half, masks from lite2; docs/segment_cam.md). The registration states it
# (`cam_facts`), so build.yaml and the report print it beside the mask model and nobody takes
# these masks for a segmentation model's.
CAM_FINDER = "an offline finder from ImageNet classifier evidence, not a segmentation model"
CAM_MEASURED_IOU = {
    "gradcam": "object 0.40 / background 0.56 on 50 COCO photos, where a centred ellipse "
    "scores 0.38 and the whole image 0.62",
    "layercam": "object 0.44 / background 0.60 on 50 COCO photos, where a centred ellipse "
    "scores 0.38 and the whole image 0.62",
}


def independent_mask_classifier(audited: str) -> str:
    """The classifier whose evidence `cam` uses by default when the build audits `audited`:
    lite2 for lite0, lite0 for anything else (an explicit `segment.options.classifier` wins)."""
    return MASK_CLASSIFIER_ALTERNATIVE if audited == MASK_CLASSIFIER else MASK_CLASSIFIER


def cam_facts(options: Mapping[str, Any]) -> dict[str, str]:
    """What `cam`'s masks are for these options: `finder` always, `iou` where measured."""
    method = str(options.get("object_method", "gradcam"))
    facts = {"finder": CAM_FINDER}
    if method in CAM_MEASURED_IOU:
        facts["iou"] = CAM_MEASURED_IOU[method]
    return facts


def mask_classifier_name(backend: str, options: Mapping[str, Any], audited: str) -> str:
    """The classifier a segmenter's masks come from (for build.yaml's `mask_model`): what its
    registration says (`Backend.classifier_name`), e.g. `cam`'s independent default; for a
    backend nobody registered, the `classifier` option, else the audited one."""
    from pipeline.segment import segmenters

    if backend not in segmenters:
        return str(options.get("classifier", audited))
    return segmenters.spec(backend).classifier_name(options, audited)
