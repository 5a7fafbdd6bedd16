"""The Pareto front of errors corrected against locality, read at a locality threshold."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pipeline.edit_curves import (
    at_locality,
    bootstrap_at_locality,
    curve_points,
    front_indices,
    front_margin,
    grid_defect,
    pareto_front,
)

# (locality, errors corrected %): three on the front, two dominated, one without errors (NaN)
POINTS = [(0.995, 10.0), (0.97, 40.0), (0.90, 70.0), (0.96, 30.0), (0.99, 5.0), (0.98, math.nan)]


def test_front_keeps_only_non_dominated_points_from_no_change_to_strong_change():
    assert front_indices(POINTS) == [0, 1, 2]
    assert pareto_front(POINTS) == [(0.995, 10.0), (0.97, 40.0), (0.90, 70.0)]
    # equal locality: the better generalisation; identical points: the first
    assert front_indices([(0.9, 10.0), (0.9, 20.0), (0.9, 20.0)]) == [1]


def test_front_with_the_unedited_model():
    assert pareto_front(POINTS, include_no_edit=True)[0] == (1.0, 0.0)
    # an edit that changes nothing and corrects nothing is the no-edit point itself
    assert pareto_front([(1.0, 0.0), (0.9, 50.0)], include_no_edit=True) == [
        (1.0, 0.0),
        (0.9, 50.0),
    ]


def test_interpolation_on_the_front():
    front = pareto_front(POINTS)
    # between (0.995, 10) and (0.97, 40): 10 + 30 * 0.005 / 0.025
    assert at_locality(front, 0.99) == pytest.approx(16.0)
    # between (0.97, 40) and (0.90, 70): 40 + 30 * 0.02 / 0.07
    assert at_locality(front, 0.95) == pytest.approx(40.0 + 30.0 * 0.02 / 0.07)
    assert at_locality(front, 0.97) == pytest.approx(40.0)
    assert at_locality(front, 0.5) == pytest.approx(70.0)  # every point is local enough
    # the grid never made an edit this small: a defect, not a number
    assert math.isnan(at_locality(front, 0.999))
    assert math.isnan(at_locality([], 0.9))
    # with the unedited model: between (1.0, 0) and (0.995, 10)
    assert at_locality(pareto_front(POINTS, True), 0.999) == pytest.approx(2.0)


def test_points_from_per_image_outcomes():
    unchanged = np.array([[1, 1, 1, 1], [1, 1, 1, 0]], bool)
    err_pre = np.array([1, 1, 0, 1], bool)
    err_post = np.array([[1, 1, 0, 1], [0, 1, 1, 0]], bool)
    assert curve_points(unchanged, err_pre, err_post) == [
        (1.0, 0.0),
        (0.75, pytest.approx(100 / 3)),
    ]


def test_bootstrap_is_seeded_and_collapses_when_every_image_is_alike():
    # every clean image behaves alike, every counterfactual alike: resampling changes nothing
    unchanged = np.array([[True] * 50, [False] * 50])
    err_pre = np.ones(20, bool)
    err_post = np.array([[True] * 20, [False] * 20])
    at99, at95 = bootstrap_at_locality(unchanged, err_pre, err_post, n_boot=200)
    # front (1.0, 0 %) → (0.0, 100 %): at 0.99, 1 % of the way
    assert at99.reached and at99.threshold == 0.99
    assert at99.value == pytest.approx(1.0)
    assert at99.low == pytest.approx(1.0) and at99.high == pytest.approx(1.0)
    assert at95.value == pytest.approx(5.0) and at95.high == pytest.approx(5.0)


def test_bootstrap_interval_brackets_the_value_and_flags_unreached_thresholds():
    n_clean, n_cf = 400, 100
    # candidates from weak to strong: 1, 8 and 32 of 400 clean images changed (locality
    # 0.9975, 0.98, 0.92), 10, 50 and 90 of 100 errors corrected
    unchanged = np.stack([np.arange(n_clean) >= k for k in (1, 8, 32)])
    err_pre = np.ones(n_cf, bool)
    err_post = np.stack([np.arange(n_cf) >= k for k in (10, 50, 90)])
    first = bootstrap_at_locality(unchanged, err_pre, err_post, n_boot=300, seed=3)
    again = bootstrap_at_locality(unchanged, err_pre, err_post, n_boot=300, seed=3)
    assert first == again
    # 10 + 40 * 0.0075 / 0.0175 at 0.99; 50 + 40 * 0.03 / 0.06 at 0.95
    assert first[0].value == pytest.approx(10 + 40 * 0.0075 / 0.0175)
    assert first[1].value == pytest.approx(70.0)
    for summary in first:
        assert summary.reached and summary.low <= summary.value <= summary.high
        assert summary.high - summary.low > 0
    # without the weakest candidate no point reaches 99 %: NaN, the grid defect
    at99, at95 = bootstrap_at_locality(unchanged[1:], err_pre, err_post[1:], n_boot=100)
    assert not at99.reached and math.isnan(at99.low) and at95.reached
    with pytest.raises(ValueError, match="shapes disagree"):
        bootstrap_at_locality(unchanged, err_pre[:5], err_post)


def test_a_grid_whose_weakest_candidate_changes_too_much_is_a_defect():
    assert grid_defect([0.98, 0.90, 0.5])
    assert not grid_defect([0.995, 0.90])
    assert not grid_defect([0.99, 0.90])  # exactly at the floor reaches it
    assert not grid_defect([math.nan, math.nan])  # nothing measured: no claim
    assert grid_defect([0.96], floor=0.97) and not grid_defect([0.96], floor=0.95)


def test_curves_pool_each_candidate_over_cases_and_mark_the_budget_point():
    import pandas as pd

    from pipeline.report.edit_curves import curve_table, edit_curves

    def rows(case, index, selected, same, bits):
        common = {
            "model_id": "m",
            "layer": "l",
            "method": "rewrite",
            "case_id": case,
            "run_key": f"k-{case}",
            "candidate_index": index,
            "candidate": f'{{"scale": {index}}}',
            "selected": selected,
            "grid_defect": False,
        }
        return [
            {**common, "group": "clean", "same_bits": same, "err_bits": ""},
            {**common, "group": "target_train_style", "same_bits": "", "err_bits": bits},
        ]

    # candidate 0 changes nothing and fixes nothing; candidate 1 changes 2 of 20 clean images
    # and fixes 3 of 4 errors; case a selected candidate 0, case b candidate 1
    results = pd.DataFrame(
        rows("a", 0, True, "1" * 10, "11 11 00")
        + rows("a", 1, False, "1" * 9 + "0", "10 11 00")
        + rows("b", 0, False, "1" * 10, "11 11")
        + rows("b", 1, True, "1" * 8 + "01", "10 10")
    )
    points, summary = edit_curves(results, n_boot=200)
    test = points[points["part"] == "test"].set_index("kind")
    grid = test.loc["candidate"]
    assert list(grid["locality"]) == [1.0, 0.9] and list(grid["errors_corrected"]) == [0.0, 75.0]
    assert grid["on_front"].all()
    # the budget point: (10 + 9) / 20 unchanged, errors 4 -> 2
    assert test.loc["selected", "locality"] == 0.95
    assert test.loc["selected", "errors_corrected"] == 50.0
    row = summary.set_index("part").loc["test"]
    assert row["ec_at_99"] == pytest.approx(7.5) and row["ec_at_95"] == pytest.approx(37.5)
    assert not row["grid_defect"] and row["cases"] == 2 and (row["n_clean"], row["n_cf"]) == (20, 5)
    assert row["ec_at_99_low"] <= 7.5 <= row["ec_at_99_high"]
    ((_title, header, table),) = curve_table(summary)
    assert "99 %" in header[2] and table[0][:3] == ["rewrite", "test", table[0][2]]
    # without the no-change candidate the front never reaches 99 %: said, not a number
    _, summary = edit_curves(results[results["candidate_index"] == 1], n_boot=50)
    assert summary.set_index("part").loc["test", "grid_defect"]
    assert "grid defect" in curve_table(summary)[0][2][0][2]


def test_the_front_margin_is_the_least_gap_over_the_locality_range():
    # a: (1.0, 0) → (0.98, 30) → (0.90, 50); b: (1.0, 0) → (0.96, 20) → (0.94, 60)
    a = [(1.0, 0.0), (0.98, 30.0), (0.90, 50.0)]
    b = [(1.0, 0.0), (0.96, 20.0), (0.94, 60.0)]
    # at 0.96 a reads 30 + 20·(0.02/0.08) = 35, b 20; at 0.95 a 37.5, b 40: b is above there
    assert front_margin(a, b, low=0.95) == pytest.approx(-2.5)
    # from 0.96 up, a is above everywhere but at 1.0, where both are unedited (0)
    assert front_margin(a, b, low=0.96) == pytest.approx(0.0)
    assert front_margin(b, a, low=0.96) == pytest.approx(-20.0)  # at 0.98: 10 against 30
    # a front that never gets that local loses by the other's value; neither: undefined
    assert front_margin([(0.9, 80.0)], [(0.99, 10.0), (0.9, 40.0)], low=0.95) < 0
    assert front_margin([(0.99, 10.0)], [(0.9, 40.0)], low=0.95) == pytest.approx(10.0)
    assert math.isnan(front_margin([(0.9, 1.0)], [(0.8, 2.0)], low=0.95))


def test_a_group_without_errors_is_not_called_a_grid_defect():
    import pandas as pd

    from pipeline.report.edit_curves import curve_table

    nan = math.nan
    row = {
        "model_id": "m", "layer": "L", "method": "rewrite", "cases": 2, "cases_grid_defect": 0,
        "ec_at_99": nan, "ec_at_99_low": nan, "ec_at_99_high": nan, "ec_at_95": nan,
        "ec_at_95_low": nan, "ec_at_95_high": nan, "n_clean": 40, "n_cf": 0,
        "selected_locality": 1.0, "selected_errors_corrected": nan,
    }  # fmt: skip
    summary = pd.DataFrame(
        [
            {**row, "part": "target_train_style", "grid_defect": False, "n_errors": 0},
            {**row, "part": "other_train_style", "grid_defect": True, "n_errors": 7},
        ]
    )
    ((_, _, rows),) = curve_table(summary)
    assert rows[0][2:4] == ["– (no errors to correct in this group)"] * 2
    assert rows[1][2] == "grid defect: no candidate reaches LR 99 %"
