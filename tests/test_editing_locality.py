"""Locality on a labelled general set: held at the edited layer once, measured per candidate."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image
from test_editing_eval import GRIDS, edit_config, photo, tiny_classifier
from test_editing_eval import tiny_build as tiny_build  # the fixture

from pipeline.classify.imagenet import class_names
from pipeline.editing import runner
from pipeline.editing.delta import EditResult
from pipeline.editing.locality import load_labelled_set
from pipeline.editing.split import SplitModel


def labelled_folder(root: Path, per_class: int = 3) -> Path:
    """ImageNet class-name folders of classes 1-4 (labels the folder source infers)."""
    rng = np.random.default_rng(1)
    names = class_names()
    for cls in range(1, 5):
        folder = root / names[cls]
        folder.mkdir(parents=True)
        for index in range(per_class):
            Image.fromarray(photo(rng, cls)).save(folder / f"{index}.png")
    return root


def head_shift(classifier, target: int, amount: float) -> EditResult:
    """A delta on the head's bias that pushes every image towards ``target``."""
    bias = torch.zeros_like(classifier.model.head.bias)
    bias[target] = amount
    return EditResult({"head.bias": bias}, {"method": "test", "layer": "head"})


def test_the_set_is_held_at_the_layer_and_measured_exactly(tmp_path: Path) -> None:
    classifier = tiny_classifier()
    model = classifier.model
    split = SplitModel.create(model, "mid", probe=torch.randn(2, 3, 16, 16))
    assert split is not None
    folder = labelled_folder(tmp_path / "general")
    held = load_labelled_set(str(folder), split, classifier.preprocess, split, batch_size=5)
    assert held.n == 12 and sorted(set(held.labels.tolist())) == [1, 2, 3, 4]
    # the clean top-1 equals the full model's on the same images
    paths = sorted(folder.rglob("*.png"))
    images = [np.asarray(Image.open(p).convert("RGB")) for p in paths]
    with torch.no_grad():
        expected = model(classifier.preprocess(images)).argmax(1)
    assert sorted(held.top1_pre.tolist()) == sorted(expected.tolist())

    unedited = held.measure(None)
    assert unedited.unchanged == 1.0 and unedited.drop_pp == 0.0
    labels = held.labels
    assert unedited.acc_pre == float((held.top1_pre == labels).float().mean())

    edited = held.measure(head_shift(classifier, 7, 100.0))  # everything becomes class 7
    assert edited.acc_post == 0.0  # no image is of class 7
    assert edited.unchanged == float((held.top1_pre == 7).float().mean())
    assert edited.drop_pp == 100.0 * unedited.acc_pre
    assert held.measure(head_shift(classifier, 7, 100.0), scale=0.0).unchanged == 1.0
    # the model is left as it was
    with torch.no_grad():
        assert torch.equal(model(classifier.preprocess(images)).argmax(1), expected)


def test_run_edits_records_the_general_set_per_candidate(
    tiny_build,
    tmp_path: Path,
) -> None:
    store, classifier = tiny_build
    folder = labelled_folder(tmp_path / "general")
    config = edit_config(
        ["rewrite-closed", "finetune-local"],
        GRIDS,
        layer="mid",
        locality={"general": [str(folder)]},
    )
    out = runner.run_edits(store.root, config, classifier=classifier)
    results = pd.read_parquet(out / "results.parquet")
    assert (results["general_n"] == 12).all()
    assert results["general_set"].str.startswith("general-12img-").all()
    assert results["general_unchanged"].between(0.0, 1.0).all()
    drop = 100.0 * (results["general_acc_pre"] - results["general_acc_post"])
    assert np.allclose(drop, results["general_drop_pp"])
    # the weakest rewrite (scale 0.05) changes less than the strongest on the general set
    rewrite = results[(results["method"] == "rewrite-closed") & (results["group"] == "clean")]
    by_index = rewrite.groupby("candidate_index")["general_unchanged"].mean()
    assert by_index.iloc[0] >= by_index.iloc[-1]
