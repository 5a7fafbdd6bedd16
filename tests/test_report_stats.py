"""Report statistics: Wilson and Newcombe intervals, control subtraction (both controls),
label-free mode, flip targets, area-matched control masks and the neutral fill."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from pipeline.report.controls import (
    control_mask,
    neutral_fill,
    overlap_fraction,
    random_blob_mask,
)
from pipeline.report.groups import by_concept_texture, flip_targets
from pipeline.report.sensitivity import sensitivity_table, summarize
from pipeline.report.stats import diff_proportions, mean_interval, wilson


# -- intervals against published values --------------------------------------------------------
@pytest.mark.parametrize(
    ("successes", "n", "low", "high"),
    [
        (8, 10, 0.4902, 0.9433),
        (0, 10, 0.0, 0.2775),
        (10, 10, 0.7225, 1.0),
        (81, 263, 0.2553, 0.3662),  # Newcombe (1998a), Table II
        (15, 148, 0.0624, 0.1605),
    ],
)
def test_wilson_matches_published_intervals(successes: int, n: int, low: float, high: float):
    p, lo, hi = wilson(successes, n)
    assert p == pytest.approx(successes / n)
    assert lo == pytest.approx(low, abs=1e-4)
    assert hi == pytest.approx(high, abs=1e-4)


def test_wilson_of_nothing_is_nan_not_zero():
    assert all(math.isnan(v) for v in wilson(0, 0))
    with pytest.raises(ValueError):
        wilson(3, 2)


@pytest.mark.parametrize(
    ("a", "b", "low", "high"),
    [
        ((56, 70), (48, 80), 0.0524, 0.3339),  # Newcombe (1998b), method 10
        ((9, 10), (3, 10), 0.1705, 0.8090),
        ((6, 7), (2, 7), 0.0582, 0.8062),
        ((5, 56), (0, 29), -0.0381, 0.1926),
    ],
)
def test_difference_of_proportions_matches_newcombe(a, b, low, high):
    difference, lo, hi = diff_proportions(*a, *b)
    assert difference == pytest.approx(a[0] / a[1] - b[0] / b[1])
    assert (lo, hi) == pytest.approx((low, high), abs=1e-4)
    assert all(math.isnan(v) for v in diff_proportions(1, 0, 1, 2))


def test_mean_interval_is_student_t():
    mean, low, high = mean_interval([1, 2, 3, 4, 5])
    half = 2.7764451 * math.sqrt(2.5) / math.sqrt(5)  # t(0.975, 4) * sd / sqrt(n)
    assert (mean, low, high) == pytest.approx((3.0, 3.0 - half, 3.0 + half))
    assert all(math.isnan(v) for v in mean_interval([]))
    single = mean_interval([0.25])
    assert single.value == 0.25 and math.isnan(single.low)
    assert mean_interval([0.5, 0.5, 0.5]) == pytest.approx((0.5, 0.5, 0.5))


# -- control subtraction -----------------------------------------------------------------------
def predictions_frame(
    n: int,
    cf_flips: int,
    ctrl_flips: int,
    labelled: bool = True,
    concept: str = "background",
    reference: int = 0,
    neutral_flips: int = 0,
) -> pd.DataFrame:
    """n rows of one (class, concept, texture), one image each, clean = reference (correct)."""
    cf_pred = [reference + 1] * cf_flips + [reference] * (n - cf_flips)
    ctrl_pred = [reference + 1] * ctrl_flips + [reference] * (n - ctrl_flips)
    neutral_pred = [reference + 2] * neutral_flips + [reference] * (n - neutral_flips)
    return pd.DataFrame(
        {
            "cf_id": [f"{concept}{i:03d}" for i in range(n)],
            "image_id": [f"img{i:03d}" for i in range(n)],
            "concept": concept,
            "texture": "snow",
            "kept": True,
            "label": pd.array([reference if labelled else None] * n, dtype="Int64"),
            "reference": reference,
            "reference_name": f"class{reference}",
            "clean_pred": reference,
            "cf_pred": cf_pred,
            "cf_pred_name": [f"class{p}" for p in cf_pred],
            "neutral_pred": neutral_pred,
            "neutral_pred_name": [f"class{p}" for p in neutral_pred],
            "ctrl_pred": ctrl_pred,
            "ctrl_pred_name": [f"class{p}" for p in ctrl_pred],
            "clean_ref_prob": 0.9,
            "cf_ref_prob": [0.2 if p != reference else 0.8 for p in cf_pred],
            "neutral_ref_prob": [0.4 if p != reference else 0.88 for p in neutral_pred],
            "ctrl_ref_prob": [0.3 if p != reference else 0.85 for p in ctrl_pred],
            "area_frac": 0.25,
            "control_overlap": 0.3,
        }
    )


def test_concept_sensitivity_is_concept_minus_control():
    # given 10 counterfactuals: 8 flip when the concept is re-textured, 3 when the control is
    table = sensitivity_table(predictions_frame(10, cf_flips=8, ctrl_flips=3))
    row = table.iloc[0]
    # then flip rates, accuracies and their differences follow exactly
    assert (row["class"], row["concept"], row["texture"], row["n"]) == (0, "background", "snow", 10)
    assert row["clean_acc"] == 1.0 and row["cf_acc"] == pytest.approx(0.2)
    assert row["ctrl_acc"] == pytest.approx(0.7)
    assert row["cf_flip"] == pytest.approx(0.8) and row["ctrl_flip"] == pytest.approx(0.3)
    assert row["sens_flip"] == pytest.approx(0.5)
    assert row["sens_flip_low"] < 0.5 < row["sens_flip_high"]  # image bootstrap, paired
    # no neutral flips: the texture effect is the whole counterfactual flip rate
    assert row["neutral_flip"] == 0.0 and row["sens_texture_flip"] == pytest.approx(0.8)
    assert row["sens_acc_drop"] == pytest.approx(0.5)  # (1 - 0.2) - (1 - 0.7)
    assert row["cf_acc_drop"] == pytest.approx(0.8) and row["ctrl_acc_drop"] == pytest.approx(0.3)
    # mean true-class probability change: cf 8×(0.2−0.9) + 2×(0.8−0.9) over 10
    assert row["cf_dprob"] == pytest.approx((8 * -0.7 + 2 * -0.1) / 10)
    assert row["ctrl_dprob"] == pytest.approx((3 * -0.6 + 7 * -0.05) / 10)
    assert row["sens_prob_drop"] == pytest.approx(row["ctrl_dprob"] - row["cf_dprob"])
    assert row["cf_flip_low"] < 0.8 < row["cf_flip_high"]


def test_groups_are_separate_and_pooled_on_request():
    frame = pd.concat(
        [
            predictions_frame(10, 8, 3, concept="background"),
            predictions_frame(4, 1, 1, concept="object"),
        ]
    )
    table = sensitivity_table(frame)
    assert list(table["concept"]) == ["background", "object"]
    assert list(table["sens_flip"]) == pytest.approx([0.5, 0.0])
    pooled = summarize(frame, ())
    assert pooled["n"].iloc[0] == 14
    assert pooled["cf_flip"].iloc[0] == pytest.approx(9 / 14)


def test_label_free_mode_keeps_flip_rate_and_drops_accuracy():
    # given unlabelled images: the clean prediction is the reference
    table = sensitivity_table(predictions_frame(10, cf_flips=6, ctrl_flips=2, labelled=False))
    row = table.iloc[0]
    assert row["n_labelled"] == 0
    for name in ("clean_acc", "cf_acc", "ctrl_acc", "sens_acc_drop", "cf_acc_drop"):
        assert math.isnan(row[name]) and math.isnan(row[f"{name}_low"]), name
    assert row["cf_flip"] == pytest.approx(0.6) and row["sens_flip"] == pytest.approx(0.4)
    assert row["sens_prob_drop"] > 0


def test_kept_only_restricts_rows():
    frame = predictions_frame(10, 8, 3)
    frame.loc[:4, "kept"] = False
    assert sensitivity_table(frame, kept_only=True)["n"].iloc[0] == 5


def test_the_road_story_reads_right_with_both_controls():
    # given the road scenes: re-texturing the road flips 65 %, a random region outside
    # the road (on the vehicles) 84 %, the road re-rendered neutrally 10 %
    frame = predictions_frame(100, cf_flips=65, ctrl_flips=84, neutral_flips=10, concept="road")
    row = by_concept_texture(frame).iloc[0]
    # then the region effect is negative (the objects matter more than the road's area)...
    assert row["sens_flip"] == pytest.approx(-0.19)
    # ...and the texture effect shows what the snow on the road did: +55 pp, clearly above 0
    assert row["sens_texture_flip"] == pytest.approx(0.55)
    assert row["sens_texture_flip_low"] > 0.4
    assert row["sens_texture_prob_drop"] > 0


def test_flip_targets_rank_what_counterfactuals_become_against_both_controls():
    frame = predictions_frame(10, cf_flips=0, ctrl_flips=0, concept="road")
    frame["cf_pred"] = [5, 5, 5, 7, 7, 0, 0, 0, 0, 9]
    frame["cf_pred_name"] = [f"class{p}" for p in frame["cf_pred"]]
    frame.loc[0, ["neutral_pred", "neutral_pred_name"]] = [5, "class5"]
    frame.loc[1, ["ctrl_pred", "ctrl_pred_name"]] = [0, "class0"]  # no flip: not counted
    targets = flip_targets(frame, k=2)
    assert list(targets["target"]) == ["class5", "class7"]
    assert list(targets["rank"]) == [1, 2]
    assert list(targets["cf_share"]) == pytest.approx([0.3, 0.2])
    assert list(targets["neutral_share"]) == pytest.approx([0.1, 0.0])
    assert list(targets["ctrl_share"]) == pytest.approx([0.0, 0.0])
    assert list(targets["n_images"]) == [3, 2] and (targets["n"] == 10).all()


# -- control masks -----------------------------------------------------------------------------
def concept_mask(shape=(60, 80), box=(10, 30, 20, 60)) -> np.ndarray:
    mask = np.zeros(shape, bool)
    top, bottom, left, right = box
    mask[top:bottom, left:right] = True
    return mask


def test_control_mask_matches_area_and_is_deterministic():
    concept = concept_mask()
    first = control_mask(concept, seed=0, mask_id="abc")
    again = control_mask(concept, seed=0, mask_id="abc")
    assert first.dtype == bool and first.shape == concept.shape
    assert first.sum() == concept.sum()  # exact, well inside the ±1% contract
    assert np.array_equal(first, again)
    assert not np.array_equal(first, control_mask(concept, seed=1, mask_id="abc"))
    assert not np.array_equal(first, control_mask(concept, seed=0, mask_id="abd"))


def test_control_mask_is_a_few_smooth_blobs_not_salt_and_pepper():
    control = random_blob_mask((96, 96), area=96 * 96 // 4, rng_seed=7)
    # 4-neighbour changes: about 6,800 for independent pixels at 25%, a few hundred for blobs
    changes = (control[1:] != control[:-1]).sum() + (control[:, 1:] != control[:, :-1]).sum()
    assert changes < 0.3 * control.sum()


def test_elsewhere_placement_avoids_the_concept_when_it_fits():
    concept = concept_mask()
    control = control_mask(concept, 0, "abc", placement="elsewhere")
    assert control.sum() == concept.sum()
    assert overlap_fraction(concept, control) == 0.0
    big = concept_mask(box=(0, 60, 0, 60))  # 75% of the image: overlap is forced
    forced = control_mask(big, 0, "abc", placement="elsewhere")
    assert forced.sum() == big.sum()
    assert (forced | big).all()  # every pixel outside the concept is used first
    with pytest.raises(ValueError):
        control_mask(concept, 0, "abc", placement="nowhere")  # type: ignore[arg-type]


def test_default_random_control_lies_outside_the_concept():
    concept = concept_mask()
    assert overlap_fraction(concept, control_mask(concept, 0, "abc")) == 0.0


def two_tone(shape=(40, 60)) -> tuple[np.ndarray, np.ndarray]:
    """An image: a red/orange gradient concept (left half) on green; the concept mask."""
    image = np.zeros((*shape, 3), np.uint8)
    image[...] = (30, 160, 40)
    mask = np.zeros(shape, bool)
    mask[:, : shape[1] // 2] = True
    image[mask] = (200, 40, 40)
    image[:, :10, 1] = 120  # the concept's own texture: an orange strip at its left edge
    return image, mask


def test_neutral_mean_fill_is_the_concepts_mean_colour_and_leaves_the_rest():
    image, mask = two_tone()
    fill = neutral_fill(image, mask, "mean")
    expected = np.round(image[mask].reshape(-1, 3).mean(0))
    assert (fill[mask] == expected).all()  # one colour: the texture is gone
    assert np.array_equal(fill[~mask], image[~mask])
    assert np.array_equal(neutral_fill(image, np.zeros_like(mask), "mean"), image)


def test_neutral_blur_fill_reads_only_the_concepts_pixels():
    image, mask = two_tone()
    fill = neutral_fill(image, mask, "blur", sigma_frac=0.05)
    # no green leaks in from outside the concept, though the blur spans the mask's edge
    assert fill[mask][:, 1].max() <= 120 and fill[mask][:, 0].min() == 200
    # the coarse layout stays (orange side still more orange), the fine edge is softened
    assert fill[20, 2, 1] > fill[20, 28, 1] and fill[20, 9, 1] < 120
    with pytest.raises(ValueError):
        neutral_fill(image, mask, "noise")  # type: ignore[arg-type]
