"""Intervals by a bootstrap over images: known answers on constructed inputs."""

from __future__ import annotations

import math
import time

import numpy as np
import pandas as pd
import pytest

from pipeline.report.bootstrap import ClusterBootstrap, wald_width
from pipeline.report.groups import summarize
from pipeline.report.stats import wilson


def rows(images: list[int], cf_flip: list[int], ctrl_flip: list[int] | None = None) -> pd.DataFrame:
    """Predictions of one (class, concept, texture): row i is in image images[i]."""
    n = len(images)
    ctrl = ctrl_flip if ctrl_flip is not None else [0] * n
    return pd.DataFrame(
        {
            "cf_id": [f"cf{i:05d}" for i in range(n)],
            "image_id": [f"img{i:05d}" for i in images],
            "concept": "road",
            "texture": "snow",
            "kept": True,
            "label": pd.array([None] * n, dtype="Int64"),
            "reference": 0,
            "reference_name": "minivan",
            "clean_pred": 0,
            "cf_pred": cf_flip,
            "neutral_pred": 0,
            "ctrl_pred": ctrl,
            "clean_ref_prob": 0.9,
            "cf_ref_prob": [0.2 if f else 0.8 for f in cf_flip],
            "neutral_ref_prob": 0.85,
            "ctrl_ref_prob": [0.3 if f else 0.85 for f in ctrl],
            "area_frac": 0.3,
            "control_overlap": 0.0,
        }
    )


def width(row: pd.Series, name: str) -> float:
    return float(row[f"{name}_high"] - row[f"{name}_low"])


def test_one_photo_edited_ten_times_has_no_interval():
    # given the "helmet: flip 100 % [75.8–100]": one photo, 10 counterfactuals
    row = summarize(rows([0] * 10, [1] * 10), ()).iloc[0]
    assert (row["n"], row["n_images"], row["cf_flip"]) == (10, 1, 1.0)
    # then there is no interval: one photo cannot tell how photos vary
    assert math.isnan(row["cf_flip_low"]) and math.isnan(row["cf_flip_high"])
    assert math.isnan(row["sens_flip_low"])
    mixed = summarize(rows([0] * 10, [1] * 7 + [0] * 3), ()).iloc[0]
    assert mixed["cf_flip"] == pytest.approx(0.7) and math.isnan(mixed["cf_flip_low"])


def test_independent_rows_give_the_usual_width():
    # given 400 photos, one counterfactual each, 120 flip (p = 0.3)
    flips = [1] * 120 + [0] * 280
    row = summarize(rows(list(range(400)), flips), ()).iloc[0]
    # then the interval is the ordinary one: 2 · 1.96 · √(p(1−p)/n) = 0.0898
    assert width(row, "cf_flip") == pytest.approx(wald_width(0.3, 400), rel=0.12)
    assert row["cf_flip_low"] == pytest.approx(wilson(120, 400).low, abs=0.012)


def test_rows_of_one_photo_count_as_one_photo():
    # given 20 photos × 10 counterfactuals, a photo's counterfactuals all flip or none does
    images = [i for i in range(20) for _ in range(10)]
    flips = [1 if i < 10 else 0 for i in images]
    row = summarize(rows(images, flips), ()).iloc[0]
    assert (row["n"], row["n_images"], row["cf_flip"]) == (200, 20, 0.5)
    # then the interval is as wide as for 20 independent photos (0.438), not 200 rows (0.136)
    assert width(row, "cf_flip") == pytest.approx(wald_width(0.5, 20), rel=0.2)
    wilson_rows = wilson(100, 200)
    assert width(row, "cf_flip") > 2.5 * (wilson_rows.high - wilson_rows.low)


def test_a_rate_of_zero_in_every_photo_is_not_a_zero_width_interval():
    row = summarize(rows([i for i in range(10) for _ in range(3)], [0] * 30), ()).iloc[0]
    assert row["cf_flip"] == 0.0
    # Wilson over the 10 photos: (0, 0.278), never (0, 0)
    assert (row["cf_flip_low"], row["cf_flip_high"]) == pytest.approx(wilson(0, 10)[1:])


def test_difference_to_the_control_is_paired_over_the_same_photos():
    # given 30 photos: the cf flips in photos 0–19, the control in photos 0–9 (same photos)
    images = list(range(30))
    cf = [1 if i < 20 else 0 for i in images]
    ctrl = [1 if i < 10 else 0 for i in images]
    row = summarize(rows(images, cf, ctrl), ()).iloc[0]
    assert row["sens_flip"] == pytest.approx(1 / 3)
    # then the interval is that of the per-photo difference (10 of 30 photos differ): ≈ 0.337
    assert width(row, "sens_flip") == pytest.approx(wald_width(1 / 3, 30), rel=0.25)
    assert row["sens_flip_low"] > 0.0


def test_mean_changes_are_bootstrapped_too():
    rng = np.random.default_rng(0)
    values = rng.normal(-0.2, 0.1, 200)
    boot = ClusterBootstrap(np.arange(200))
    mean, low, high = boot.ratio(boot.sums(values))
    assert mean == pytest.approx(values.mean())
    assert high - low == pytest.approx(2 * 1.96 * values.std(ddof=1) / math.sqrt(200), rel=0.15)


def test_the_bootstrap_is_seeded():
    images = [i for i in range(15) for _ in range(4)]
    flips = [int(i % 3 == 0) for i in range(60)]
    first = summarize(rows(images, flips), (), seed=0).iloc[0]
    again = summarize(rows(images, flips), (), seed=0).iloc[0]
    other = summarize(rows(images, flips), (), seed=1).iloc[0]
    assert first["cf_flip_low"] == again["cf_flip_low"]
    assert first["cf_flip"] == other["cf_flip"]
    assert first["cf_flip_low"] == pytest.approx(other["cf_flip_low"], abs=0.08)


def test_two_thousand_resamples_of_a_thousand_photos_are_quick():
    images = [i for i in range(1000) for _ in range(5)]
    flips = [int(i % 7 < 3) for i in range(5000)]
    start = time.perf_counter()
    row = summarize(rows(images, flips), ()).iloc[0]
    assert time.perf_counter() - start < 10.0  # vectorised: ~0.3 s idle, loose for loaded CI
    assert row["cf_flip_low"] < row["cf_flip"] < row["cf_flip_high"]
