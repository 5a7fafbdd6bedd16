"""TCAV through captum on a tiny model with a planted concept direction."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.concepts.cav import LinearCavClassifier, MeanDifferenceClassifier
from pipeline.concepts.settings import TcavSettings
from pipeline.concepts.tcav import TcavData, run_tcav, summarize_runs


class PlantedModel(torch.nn.Module):
    """Class 0 rises with the red channel's features, class 1 falls with them."""

    def __init__(self) -> None:
        super().__init__()
        self.features = torch.nn.Conv2d(3, 6, 1)
        self.head = torch.nn.Linear(6, 2)
        with torch.no_grad():
            self.features.weight.copy_(
                torch.randn(6, 3, 1, 1, generator=torch.Generator().manual_seed(0))
            )
            self.features.weight[0] = torch.tensor([3.0, 0.0, 0.0]).view(3, 1, 1)
            self.features.bias.zero_()
            self.head.weight.zero_()
            self.head.bias.zero_()
            self.head.weight[0, 0], self.head.weight[1, 0] = 1.0, -1.0
            self.head.weight[:, 1:] = 0.3 * torch.randn(
                2, 5, generator=torch.Generator().manual_seed(1)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.features(x)).mean((2, 3)))


def _noise(count: int, seed: int) -> torch.Tensor:
    return torch.randn(count, 3, 4, 4, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    red = _noise(40, 1)
    red[:, 0] += 2.0  # the planted concept: strong red
    data = TcavData(
        concepts={"red": red, "noise": _noise(40, 2)},
        random_pool=_noise(120, 3),
        class_inputs={0: _noise(30, 4), 1: _noise(30, 5)},
    )
    settings = TcavSettings(n_random=10, n_examples=20, random_pool=120, seeds=(0, 1, 2, 3, 4))
    model = PlantedModel().eval()
    store = str(tmp_path_factory.mktemp("cav"))
    result = run_tcav(model, ["features"], data, settings, store, "planted")
    return model, data, settings, store, result


def test_planted_concept_scores_one_for_its_class_and_is_significant(planted):
    # given a model whose class-0 logit grows along the red direction
    *_, settings, _, result = planted
    # when TCAV scores it against 10 random sets, over 5 seeds
    table = summarize_runs(result.runs, settings).set_index(["class_index", "concept"])
    red0, red1, noise0 = table.loc[(0, "red")], table.loc[(1, "red")], table.loc[(0, "noise")]
    # then red scores ≈ 1 for class 0 and ≈ 0 for class 1, stable over seeds
    assert red0["score"] >= 0.95 and red1["score"] <= 0.05
    assert red0["score_std_seeds"] <= 0.05 and red0["n_seeds"] == 5
    # and the random concepts (the null) score ≈ 0.5
    assert abs(red0["random_score"] - 0.5) <= 0.1 and abs(red1["random_score"] - 0.5) <= 0.1
    # and significance separates the planted concept from a concept of noise by orders
    assert red0["p_adjusted"] < 1e-6 and red1["p_adjusted"] < 1e-6
    assert noise0["p_adjusted"] > 1e-3
    # and learnability flags the noise concept: its CAV is at chance on held-out crops
    assert red0["cav_accuracy"] >= 0.95 and noise0["cav_accuracy"] <= 0.65


def test_cached_cavs_are_reused(planted):
    # given the CAVs and activations of the first run on disk
    model, data, settings, store, first = planted
    # when the same experiment runs again
    again = run_tcav(model, ["features"], data, settings, store, "planted")
    # then no crop passes through the model and no CAV is trained, with the same scores
    assert again.activations_computed == 0 and again.cavs_trained == 0
    assert first.activations_computed == 120 + 80
    assert first.cavs_trained == 5 * (2 * 10 + 10)  # per seed: 2 concepts and the null, 10 runs
    assert np.allclose(again.runs["score"], first.runs["score"])


def test_mean_difference_cav_points_along_the_planted_direction():
    # given activations whose positive class is shifted along the first axis
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 5))
    y = np.array([0] * 30 + [1] * 30)
    x[y == 1, 0] += 3.0
    batches = [(torch.tensor(x, dtype=torch.float32), torch.tensor(y))]
    for classifier in (MeanDifferenceClassifier(), LinearCavClassifier(c=1.0)):
        stats = classifier.train_and_eval(batches)
        direction = classifier.weights()[classifier.classes().index(1)].numpy()
        # then the CAV of the shifted class points along +x0 and separates held-out points
        assert direction[0] > 0.9 * np.linalg.norm(direction)
        assert float(stats["accs"]) >= 0.9


def test_other_concepts_as_negatives(planted, tmp_path):
    # given the planted data, with the other concepts' crops as the negatives
    model, data, _, _, _ = planted
    settings = TcavSettings(n_random=4, n_examples=20, random_pool=120, negatives="concepts")
    # when TCAV runs
    result = run_tcav(model, ["features"], data, settings, str(tmp_path), "others")
    table = summarize_runs(result.runs, settings).set_index(["class_index", "concept"])
    # then red against noise still scores 1 for class 0, from CAVs of its own negatives
    assert table.loc[(0, "red"), "score"] >= 0.95
    assert result.cavs_trained == 2 * 4 * 2  # per concept and run: its CAV and its null
