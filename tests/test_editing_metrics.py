"""Edit metrics on hand-counted examples."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pipeline.editing.metrics import (
    Rate,
    accuracy,
    clean_accuracy_drop,
    correct,
    count_errors,
    errors_corrected,
    generalization_rate,
    locality_rate,
    success_rate,
)


def test_errors_corrected_counts_only_images_whose_clean_version_is_right() -> None:
    clean_pre = [1, 1, 1, 1, 0, 1]
    trans_pre = [0, 0, 0, 1, 0, 0]  # E_pre = 4 (index 4 excluded: clean is wrong)
    trans_post = [1, 1, 0, 1, 1, 0]  # E_post = 2
    assert count_errors(clean_pre, trans_pre) == 4
    assert errors_corrected(clean_pre, trans_pre, trans_post) == pytest.approx(50.0)
    # Own post-edit subset: clean index 5 now wrong → only index 2 counts.
    clean_post = [1, 1, 1, 1, 0, 0]
    assert errors_corrected(clean_pre, trans_pre, trans_post, clean_post) == pytest.approx(75.0)
    # An edit that adds errors gives a negative value.
    assert errors_corrected([1, 1], [0, 1], [0, 0]) == pytest.approx(-100.0)
    assert math.isnan(errors_corrected([1, 1], [1, 1], [0, 0]))


def test_accuracy_drop_is_in_percentage_points() -> None:
    pre = np.array([True, True, True, False])
    post = torch.tensor([True, False, True, False])
    assert accuracy(pre) == pytest.approx(75.0)
    assert clean_accuracy_drop(pre, post) == pytest.approx(25.0)
    assert clean_accuracy_drop(post, pre) == pytest.approx(-25.0)
    with pytest.raises(ValueError):
        clean_accuracy_drop([1, 0], [1])


def test_sr_gr_lr() -> None:
    assert success_rate([0], [1]) == Rate(1, 1)
    assert success_rate([1], [1]).total == 0 and math.isnan(success_rate([1], [1]).fraction)

    group_pre = [0, 0, 0, 0, 1]
    group_post = [1, 1, 0, 1, 1]
    exemplar = [True, False, False, False, False]
    rate = generalization_rate(group_pre, group_post, exemplar)
    assert rate == Rate(2, 3)  # exemplar excluded; index 4 was never wrong
    assert rate.percent == pytest.approx(200 / 3)

    logits_pre = torch.tensor([[2.0, 1.0], [0.0, 1.0], [3.0, 0.0]])
    logits_post = torch.tensor([[2.0, 3.0], [0.0, 1.0], [3.0, 0.0]])
    assert locality_rate(logits_pre, logits_post) == Rate(2, 3)
    assert locality_rate([4, 5], [4, 5]).fraction == 1.0


def test_correct_accepts_logits_or_predictions() -> None:
    logits = torch.tensor([[0.1, 0.9], [0.8, 0.2]])
    assert correct(logits, [1, 1]).tolist() == [True, False]
    assert correct([1, 0], torch.tensor([1, 1])).tolist() == [True, False]
    with pytest.raises(ValueError):
        count_errors([2, 1], [1, 1])
