"""`CounterfactualDataset`: a torch Dataset over a build, through a multi-worker DataLoader."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
from tiny_export_build import CONCEPTS, IMAGES, STYLES, session_build
from torch.utils.data import DataLoader

ROWS = IMAGES * CONCEPTS * STYLES


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return session_build(tmp_path_factory.getbasetemp())


def test_items_hold_original_mask_counterfactual_labels_and_metadata(build: Path) -> None:
    from pipeline.publish import UNLABELLED
    from pipeline.publish.torch_dataset import CounterfactualDataset

    dataset = CounterfactualDataset(build)
    assert len(dataset) == ROWS
    item = dataset[0]
    assert item["image"].shape == item["counterfactual"].shape
    assert item["image"].shape[0] == 3 and item["mask"].shape[0] == 1
    assert set(item["mask"].unique().tolist()) <= {0.0, 1.0}
    # the halves segmenter: the mask is half the image; the stylizer inverts inside it
    assert item["mask"].mean().item() == pytest.approx(0.5, abs=0.05)
    inside = item["mask"][0].bool()
    # default blend: 0.2 * content + 0.8 * stylized, stylized = 1 - image
    expected = 0.2 * item["image"] + 0.8 * (1 - item["image"])
    assert (item["counterfactual"] - expected).abs()[:, inside].max().item() < 0.01
    assert torch.equal(item["counterfactual"][:, ~inside], item["image"][:, ~inside])
    labels = [dataset[i]["label"].item() for i in range(len(dataset))]
    assert labels.count(UNLABELLED) == CONCEPTS * STYLES
    for i in range(len(dataset)):
        row = dataset[i]
        expected = row["clean_pred"] if row["label"] == UNLABELLED else row["label"]
        assert row["reference"] == expected
    assert {dataset[i]["concept"] for i in range(len(dataset))} == {"left", "right"}


def test_dataloader_with_two_workers_sees_every_row_once(build: Path) -> None:
    from pipeline.publish.torch_dataset import CounterfactualDataset

    dataset = CounterfactualDataset(build, size=(32, 48))
    assert len(pickle.dumps(dataset)) < 20_000  # paths and labels only, no pixels
    loader = DataLoader(dataset, batch_size=5, num_workers=2)
    ids: list[str] = []
    for batch in loader:
        assert batch["counterfactual"].shape[1:] == (3, 32, 48)
        assert batch["mask"].shape[1:] == (1, 32, 48)
        assert batch["reference"].dtype == torch.int64
        ids += batch["cf_id"]
    assert len(ids) == ROWS and len(set(ids)) == ROWS


def test_kept_only_and_a_missing_build(build: Path, tmp_path: Path) -> None:
    from pipeline.publish.torch_dataset import CounterfactualDataset

    kept = CounterfactualDataset(build, kept_only=True)
    assert len(kept) == sum(bool(CounterfactualDataset(build)[i]["kept"]) for i in range(ROWS))
    with pytest.raises(FileNotFoundError, match="build it first"):
        CounterfactualDataset(tmp_path)
