"""A new segmenter and a new stylizer, each registered in one line, build a dataset end to end.

Nothing in the stages knows these backends: the registration carries what the build needs.
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

pytestmark = pytest.mark.usefixtures("prefect_harness")


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
