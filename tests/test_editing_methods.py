"""Every registered editing method: a selection grid of its own settings, and one verb."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from torch import nn

from pipeline.editing.delta import EditResult
from pipeline.editing.exemplars import EditExemplars
from pipeline.editing.methods import (
    EDIT_METHODS,
    EditInputs,
    FinetuneGlobal,
    FinetuneGroupsL1,
    FinetuneGroupsL2,
    FinetuneLocal,
    Rewrite,
    RewriteClosed,
    RewriteMultiKey,
    WhereToEdit,
    WhereToEditGradient,
    WhereToEditRandom,
    available_methods,
    create_method,
)

LAYER = "2"


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _tiny() -> tuple[nn.Module, EditExemplars]:
    """A conv net whose edited 1x1 conv (``2``) is followed by a BatchNorm (``3``), and two
    exemplars whose lower half is re-textured."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(6, 6, 1),
        nn.BatchNorm2d(6),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(6, 4),
    ).eval()
    original = torch.randn(2, 3, 8, 8)
    transformed = original.clone()
    transformed[:, :, 4:] = torch.randn(2, 3, 4, 8) * 2
    masks = torch.zeros(2, 1, 8, 8)
    masks[:, :, 4:] = 1.0
    return model, EditExemplars(transformed, original, masks, torch.tensor([1, 2]))


def test_registry_holds_one_class_per_method() -> None:
    classes = {
        "rewrite": Rewrite,
        "rewrite-closed": RewriteClosed,
        "rewrite-multikey": RewriteMultiKey,
        "finetune-local": FinetuneLocal,
        "finetune-global": FinetuneGlobal,
        "finetune-l1": FinetuneGroupsL1,
        "finetune-l2": FinetuneGroupsL2,
        "where-to-edit": WhereToEdit,
        "where-to-edit-gradient": WhereToEditGradient,
        "where-to-edit-random": WhereToEditRandom,
    }
    assert available_methods() == sorted(classes)
    for name, cls in classes.items():
        method = create_method(name)
        assert type(method) is cls and method.name == name
    assert create_method("rewrite", lr=0.5) == Rewrite(lr=0.5)
    with pytest.raises(TypeError):
        create_method("rewrite-closed", lr=0.5)  # not a setting of the closed form


# where-to-edit changes parameter groups of the last blocks of a known architecture, with a
# trained locator: tests/test_where_to_edit.py
# (and so do the penalised fine-tunings of its groups, finetune-l1 / -l2)
LAYER_METHODS = [
    name
    for name in EDIT_METHODS.names()
    if not name.startswith("where-to-edit") and name not in ("finetune-l1", "finetune-l2")
]


@pytest.mark.parametrize("name", LAYER_METHODS)
def test_every_method_has_a_grid_and_edits_the_layer(name: str) -> None:
    model, exemplars = _tiny()
    state = {key: value.clone() for key, value in model.state_dict().items()}
    method = create_method(name)
    assert method.grid, f"{name} has no selection grid"
    fields = {f.name for f in dataclasses.fields(method)}
    for candidate in method.grid:
        assert set(candidate.params) <= fields and candidate.scale > 0
    # the grid's first candidate, fewer steps: the edit must move the layer's weight
    params = {**method.grid[0].params}
    if "steps" in fields:
        params["steps"] = 5
    if "lr" in fields:
        params["lr"] = 1e-2
    result = method.with_params(params).edit(model, LAYER, EditInputs(exemplars, case_id="c"))

    assert isinstance(result, EditResult)
    weight = model.get_parameter(f"{LAYER}.weight")
    delta = result.deltas[f"{LAYER}.weight"]
    assert delta.shape == weight.shape and float(delta.abs().max()) > 1e-6
    assert all(torch.equal(state[key], value) for key, value in model.state_dict().items())
    metadata = result.metadata
    assert metadata["method"] == name and metadata["case_id"] == "c"
    assert metadata["layer"] == LAYER and metadata["n_exemplars"] == "2"
    config = json.loads(metadata["config"])
    assert config["method"] == name and config["covariance"] == "identity"
    assert {key: config[key] for key in params} == params


def test_rewrite_compares_values_after_the_following_norm_by_default() -> None:
    model, exemplars = _tiny()
    assert Rewrite().resolved(model, LAYER).post == ["3"]
    assert Rewrite().resolved(model, "0").post is None  # a ReLU follows: raw outputs
    assert Rewrite(post=None).resolved(model, LAYER).post is None
    assert Rewrite().resolved(model, LAYER).post_fn(model)[0] is model[3]
    result = Rewrite(steps=2).edit(model, LAYER, EditInputs(exemplars))
    assert json.loads(result.metadata["config"])["post"] == ["3"]  # what was used


def test_early_stop_ends_fine_tuning_once_the_exemplars_are_fixed() -> None:
    from pipeline.editing.finetune import exemplars_fixed, finetune_deltas

    model, exemplars = _tiny()
    names = ["7.weight", "7.bias"]
    params = dict(model.named_parameters())
    assert not exemplars_fixed(model, exemplars, {})
    stopped = finetune_deltas(model, names, exemplars, lr=0.5, steps=300, early_stop=True)
    full = finetune_deltas(model, names, exemplars, lr=0.5, steps=300)
    after = {name: params[name].detach() + stopped[name] for name in names}
    assert exemplars_fixed(model, exemplars, after)  # it stopped because they were fixed
    norm = sum(float(d.norm()) for d in stopped.values())
    assert 0 < norm < 0.5 * sum(float(d.norm()) for d in full.values())
    # stopping at once when nothing needs fixing: no change at all
    fixed = dataclasses.replace(exemplars, labels=exemplars_labels(model, exemplars))
    unchanged = finetune_deltas(model, names, fixed, lr=0.5, steps=50, early_stop=True)
    assert all(float(d.abs().max()) == 0.0 for d in unchanged.values())


def exemplars_labels(model: nn.Module, exemplars: EditExemplars) -> torch.Tensor:
    with torch.no_grad():
        return model(exemplars.transformed).argmax(1)
