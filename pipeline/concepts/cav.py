"""CAV classifiers in captum's `captum.concept.Classifier` interface, seeded and held out.

captum's `DefaultClassifier` splits its data with Python's global `random`, so two runs of the
same experiment differ; these classifiers derive their split from a seed and the concept ids
they are given, so a CAV is a function of its inputs (and cacheable).

- `LinearCavClassifier`: logistic regression (scikit-learn) on standardised-free activations,
  the classic CAV: the normal of the separating hyperplane.
- `MeanDifferenceClassifier`: FastCAV (Schmalwasser et al. 2025): the CAV is the vector from
  the mean of all training activations to the mean of the concept's; no optimisation. Its
  held-out accuracy is that of the projection thresholded half-way between the two means.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import torch
from captum.concept import Classifier
from torch.utils.data import DataLoader


def _collect(dataloader: DataLoader) -> tuple[np.ndarray, np.ndarray]:
    inputs, labels = [], []
    for batch_inputs, batch_labels in dataloader:
        inputs.append(batch_inputs.float().cpu())
        labels.append(batch_labels.cpu())
    return torch.cat(inputs).numpy(), torch.cat(labels).numpy()


def split(labels: np.ndarray, test_split: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A stratified (train, test) index split seeded by `seed` and the label set, with at least
    one example of each label on both sides."""
    key = hashlib.sha256(f"{seed}:{sorted(set(labels.tolist()))}".encode()).digest()
    rng = np.random.default_rng(int.from_bytes(key[:8], "little"))
    train, test = [], []
    for label in np.unique(labels):
        index = rng.permutation(np.flatnonzero(labels == label))
        n_test = min(max(1, round(test_split * len(index))), len(index) - 1)
        test.extend(index[:n_test])
        train.extend(index[n_test:])
    return np.sort(train), np.sort(test)


class _SeededClassifier(Classifier):
    def __init__(self, test_split: float = 0.33, seed: int = 0) -> None:
        self.test_split = test_split
        self.seed = seed
        self._weights: torch.Tensor | None = None
        self._classes: list[int] = []
        self.trained = 0  # CAVs trained by this instance: a cache test counts them

    def weights(self) -> torch.Tensor:
        if self._weights is None:
            raise RuntimeError("train_and_eval first: no CAV has been trained")
        return self._weights

    def classes(self) -> list[int]:
        return self._classes

    def train_and_eval(self, dataloader: DataLoader, **kwargs: Any) -> dict[str, Any]:
        x, y = _collect(dataloader)
        classes = sorted(int(c) for c in np.unique(y))
        if len(classes) != 2:
            raise ValueError(f"a CAV separates two concepts; got labels {classes}")
        train, test = split(y, self.test_split, self.seed)
        direction, accuracy = self._fit(
            x[train], y[train] == classes[1], x[test], y[test] == classes[1]
        )
        self._classes = classes
        self._weights = torch.from_numpy(np.stack([-direction, direction]).astype(np.float32))
        self.trained += 1
        return {"accs": torch.tensor(accuracy)}

    def _fit(
        self, x: np.ndarray, positive: np.ndarray, x_test: np.ndarray, positive_test: np.ndarray
    ) -> tuple[np.ndarray, float]:
        raise NotImplementedError


class LinearCavClassifier(_SeededClassifier):
    """The CAV as the weight vector of an L2 logistic regression, unit norm.

    Args:
        test_split: share of each concept's examples held out for the accuracy.
        seed: seeds the split (with the concept ids).
        c: inverse regularisation strength of the logistic regression.
    """

    def __init__(self, test_split: float = 0.33, seed: int = 0, c: float = 0.1) -> None:
        super().__init__(test_split, seed)
        self.c = c

    def _fit(
        self, x: np.ndarray, positive: np.ndarray, x_test: np.ndarray, positive_test: np.ndarray
    ) -> tuple[np.ndarray, float]:
        from sklearn.linear_model import LogisticRegression

        scale = float(np.sqrt((x**2).sum(1).mean())) or 1.0  # one scale: C means the same
        model = LogisticRegression(C=self.c, max_iter=500)
        model.fit(x / scale, positive)
        accuracy = float((model.predict(x_test / scale) == positive_test).mean())
        direction = model.coef_[0]
        return direction / (np.linalg.norm(direction) or 1.0), accuracy


class MeanDifferenceClassifier(_SeededClassifier):
    """FastCAV: the unit vector from the mean of all training activations to the concept's
    mean (for balanced sets, the mean difference of the two sets, halved)."""

    def _fit(
        self, x: np.ndarray, positive: np.ndarray, x_test: np.ndarray, positive_test: np.ndarray
    ) -> tuple[np.ndarray, float]:
        direction = x[positive].mean(0) - x.mean(0)
        direction = direction / (np.linalg.norm(direction) or 1.0)
        midpoint = 0.5 * (x[positive] @ direction).mean() + 0.5 * (x[~positive] @ direction).mean()
        accuracy = float(((x_test @ direction > midpoint) == positive_test).mean())
        return direction, accuracy


def create_cav_classifier(method: str, test_split: float, seed: int) -> _SeededClassifier:
    """The CAV classifier named by `TcavSettings.cav`."""
    if method == "linear":
        return LinearCavClassifier(test_split, seed)
    if method == "mean-difference":
        return MeanDifferenceClassifier(test_split, seed)
    raise ValueError(f"unknown CAV method {method!r}; use 'linear' or 'mean-difference'")
