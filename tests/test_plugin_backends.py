"""A new segmenter and a new stylizer, each registered in one line, build a dataset end to end.

Nothing in the stages knows these backends: the registration carries what the build needs,
including, for a classifier-guided segmenter, its default classifier and what its masks are worth.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from pipeline.segment import segmenters
from pipeline.segment.base import ConceptDetection
from pipeline.store import BuildStore
from pipeline.stylize import stylizers

LITE0, LITE2 = "timm:tf_efficientnet_lite0", "timm:tf_efficientnet_lite2"


class LeftHalfSegmenter:
    """`left`: the left half of every image (two instances, left and right quarter)."""

    id = "left-half"
    concepts = ("left",)

    def __init__(self, concepts: Sequence[str] = ("left",), max_side: int = 0) -> None:
        self.max_side = max_side  # asked for through the registration's `settings`

    def segment(
        self, images: Sequence[np.ndarray], labels: Sequence[int | None]
    ) -> list[list[ConceptDetection]]:
        found = []
        for image in images:
            height, width = image.shape[:2]
            quarters = []
            for start, stop in ((0, width // 4), (width // 4, width // 2)):
                mask = np.zeros((height, width), bool)
                mask[:, start:stop] = True
                quarters.append(ConceptDetection("left", mask, 0.9))
            found.append(quarters)
        return found


class InvertStylizer:
    """Every image re-rendered as its negative (ignores the style image)."""

    id = "invert"

    def stylize(
        self, images: Sequence[np.ndarray], style: np.ndarray, seed: int = 0
    ) -> list[np.ndarray]:
        return [255 - image for image in images]


@pytest.fixture(scope="module", autouse=True)
def registered():  # type: ignore[no-untyped-def]
    """One line per backend; the registries are global, so they are removed afterwards (this
    runs when the module's tests run, not when pytest collects it)."""
    segmenters.register("test-left-half", settings=("max_side",))(LeftHalfSegmenter)
    stylizers.register("test-invert")(InvertStylizer)
    yield
    segmenters.unregister("test-left-half")
    stylizers.unregister("test-invert")


@pytest.mark.usefixtures("prefect_harness")
def test_a_build_runs_with_backends_registered_in_one_line(tmp_path: Path) -> None:
    from flows.build import build_dataset

    config = {
        "name": "plugins",
        "source": {"kind": "samples", "names": ["coffee", "chelsea"]},
        "image": {"max_side": 96},
        "segment": {"backend": "test-left-half", "concepts": ["left"], "min_area": 0.1},
        "stylize": {"backend": "test-invert", "textures": ["snow"], "styles_per_texture": 1},
        "transform": {"blend": 1.0},
        "filter": {"require_clean_correct": False},
    }
    build_dataset(config=config, out=str(tmp_path / "build"))
    store = BuildStore(tmp_path / "build")
    masks = store.read("masks")
    rows = store.read("counterfactuals")
    assert len(masks) == 2 and len(rows) == 2  # one merged `left` mask and one style per image
    assert all(m.segmenter_id.startswith("test-left-half:") for m in masks)
    assert all(m.area_frac == pytest.approx(0.5, abs=0.02) for m in masks)
    images = {image.image_id: image for image in store.read("images")}
    for row in rows:
        original = store.load_image(images[row.image_id].path).astype(int)
        counterfactual = store.load_image(row.path).astype(int)
        half = original.shape[1] // 2
        assert np.array_equal(counterfactual[:, :half], 255 - original[:, :half])
        assert np.array_equal(counterfactual[:, half:], original[:, half:])
    assert {s.stylizer_id for s in store.read("stylized")} == {
        store.resolved()["resolved"]["stylizer"]
    }


def test_a_guided_segmenter_states_its_facts_on_its_registration(tmp_path: Path) -> None:
    """build.yaml's mask_model, the fingerprint and `describe()` read the registration only."""
    from pipeline.config import BuildConfig
    from pipeline.stages import Backends
    from pipeline.stages.build import mask_model

    # given a classifier-guided segmenter whose masks come from lite2 unless an option names one
    segmenters.register(
        "test-guided",
        needs_classifier=True,
        default_classifier=lambda audited: LITE2 if audited == LITE0 else LITE0,
        facts=lambda options: {"finder": f"a test finder at level {options.get('level', 1)}"},
    )(LeftHalfSegmenter)
    try:

        def config(**options: object) -> BuildConfig:
            segment = {"backend": "test-guided", "concepts": ["left"], "options": options}
            return BuildConfig.model_validate({"classifier": {"name": LITE0}, "segment": segment})

        # when the build of a lite0 audit records what made its masks
        record = mask_model(config(level=3))
        # then the registration's default classifier and facts are what it records
        assert record["backend"] == "test-guided" and record["classifier"] == LITE2
        assert record["id"].startswith(LITE2 + "@")
        assert record["finder"] == "a test finder at level 3"
        assert mask_model(config(classifier=LITE0))["classifier"] == LITE0  # an option wins
        named = Backends(config(level=3, classifier=LITE2)).segmenter.id
        assert Backends(config(level=3)).segmenter.id == named
        # and `describe()` gives doctor and validation the same facts as plain data
        assert segmenters.spec("test-guided").describe({"level": 2}) == {
            "name": "test-guided",
            "needs_classifier": True,
            "settings": [],
            "finder": "a test finder at level 2",
        }
        described = segmenters.describe()
        assert described["test-guided"]["finder"] == "a test finder at level 1"
        assert "not a segmentation model" in described["cam"]["finder"]
        assert described["cam"]["iou"].startswith("object 0.")
        assert described["test-left-half"] == {
            "name": "test-left-half",
            "needs_classifier": False,
            "settings": ["max_side"],
        }
    finally:
        segmenters.unregister("test-guided")


def test_a_default_classifier_needs_a_classifier_guided_backend() -> None:
    with pytest.raises(ValueError, match=r"test-unguided.*needs needs_classifier=True"):
        segmenters.register("test-unguided", default_classifier=lambda audited: LITE0)
    assert "test-unguided" not in segmenters
