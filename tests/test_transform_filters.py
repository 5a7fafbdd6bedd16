"""Compositing and the filters' verdicts."""

from __future__ import annotations

import numpy as np

from pipeline.config import FilterConfig
from pipeline.filters import judge
from pipeline.transform import composite

NAMES = [f"class{i}" for i in range(5)]


def test_composite_changes_only_the_mask_with_the_blend_ratio() -> None:
    image = np.full((4, 6, 3), 100, np.uint8)
    stylized = np.full((4, 6, 3), 200, np.uint8)
    mask = np.zeros((4, 6), bool)
    mask[1:3, 2:5] = True
    out = composite(image, stylized, mask, blend=0.8)
    assert np.all(out[~mask] == 100)
    assert np.all(out[mask] == 180)  # 0.2 * 100 + 0.8 * 200


def test_feathered_mask_softens_the_edge_only() -> None:
    image = np.zeros((32, 32, 3), np.uint8)
    stylized = np.full((32, 32, 3), 255, np.uint8)
    mask = np.zeros((32, 32), bool)
    mask[:, 16:] = True
    out = composite(image, stylized, mask, blend=1.0, feather=2.0)
    assert out[0, 0, 0] == 0 and out[0, 31, 0] == 255
    assert 0 < out[0, 15, 0] < 255 and 0 < out[0, 16, 0] < 255


def test_composite_is_the_documented_formula_to_the_bit() -> None:
    """cf = rint(image * (1 - w) + stylized * w), w = blend * soft mask, in float32."""
    from pipeline.transform import soft_mask

    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    stylized = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    mask = rng.random((37, 53)) > 0.4
    for blend, feather in [(0.8, 0.0), (0.65, 1.5), (1.0, 3.0)]:
        weight = soft_mask(mask, feather)[..., None] * np.float32(blend)
        expected = image.astype(np.float32) * (1 - weight) + stylized.astype(np.float32) * weight
        expected = np.clip(np.rint(expected), 0, 255).astype(np.uint8)
        assert np.array_equal(composite(image, stylized, mask, blend, feather), expected)


def verdicts(**overrides):  # type: ignore[no-untyped-def]
    values = dict(concept="background", label=1, clean_pred=1, cf_pred=2, mask_kept=True)
    values.update(overrides)
    return judge(FilterConfig(), mask_reason=None, names=NAMES, **values)


def test_kept_when_clean_correct_and_concept_valid() -> None:
    result, kept = verdicts()
    assert kept and result["changed"]["ok"]
    assert result["changed"]["reason"] == "prediction changed from class1 to class2"


def test_misclassified_clean_image_is_dropped_with_reason() -> None:
    result, kept = verdicts(clean_pred=3)
    assert not kept
    assert result["clean_correct"]["reason"] == "clean image misclassified as class3 (label class1)"


def test_label_free_uses_the_clean_prediction_as_reference() -> None:
    result, kept = verdicts(label=None, clean_pred=4, cf_pred=4)
    assert kept and not result["changed"]["ok"]
    assert "reference" in result["clean_correct"]["reason"]


def test_object_concept_is_invalid() -> None:
    result, kept = verdicts(concept="object")
    assert not kept and not result["concept_valid"]["ok"]


def test_require_change_gates_unchanged_predictions() -> None:
    _, kept = judge(
        FilterConfig(require_change=True),
        concept="background",
        label=1,
        clean_pred=1,
        cf_pred=1,
        mask_kept=True,
        mask_reason=None,
        names=NAMES,
    )
    assert not kept
