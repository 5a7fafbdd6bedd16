"""EditResult: exact apply / revert, linear scale and stack, safetensors round trip."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from pipeline.editing.delta import EditResult, applied, apply, stack


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Linear(5, 2))


def _result(seed: int, scale: float = 1.0) -> EditResult:
    gen = torch.Generator().manual_seed(seed)
    return EditResult(
        deltas={
            "0.weight": scale * torch.randn(4, 3, 3, 3, generator=gen),
            "2.bias": scale * torch.randn(2, generator=gen),
        },
        metadata={"model": "toy", "layer": "0", "method": "test", "case_id": f"c{seed}"},
    )


def _snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def _assert_bit_exact(model: nn.Module, snapshot: dict[str, torch.Tensor]) -> None:
    for name, param in model.named_parameters():
        assert torch.equal(param, snapshot[name]), name


def test_apply_then_revert_restores_weights_bit_exactly() -> None:
    model = _model()
    before = _snapshot(model)
    result = _result(1, scale=1e-3)  # small deltas: subtracting them back would round
    handle = apply(model, result, scale=0.7)
    assert not torch.equal(model[0].weight, before["0.weight"])
    torch.testing.assert_close(
        model[0].weight, before["0.weight"] + 0.7 * result.deltas["0.weight"]
    )
    assert torch.equal(model[2].weight, before["2.weight"])  # untouched parameter
    handle.revert()
    _assert_bit_exact(model, before)
    handle.revert()  # a second revert is a no-op
    _assert_bit_exact(model, before)
    assert not handle.active


def test_context_managers_revert_after_an_exception() -> None:
    model = _model()
    before = _snapshot(model)
    with pytest.raises(RuntimeError), apply(model, _result(2)):
        raise RuntimeError("inside the edit")
    _assert_bit_exact(model, before)
    with pytest.raises(RuntimeError), applied(model, _result(3)):
        raise RuntimeError("inside the edit")
    _assert_bit_exact(model, before)


def test_apply_checks_everything_before_writing() -> None:
    model = _model()
    before = _snapshot(model)
    bad = EditResult({"0.weight": torch.ones(4, 3, 3, 3), "2.bias": torch.ones(3)})
    with pytest.raises(ValueError, match=r"2\.bias"):
        apply(model, bad)
    missing = EditResult({"0.weight": torch.ones(4, 3, 3, 3), "9.weight": torch.ones(1)})
    with pytest.raises(KeyError, match=r"9\.weight"):
        apply(model, missing)
    _assert_bit_exact(model, before)


def test_scale_and_stack_are_linear() -> None:
    model = _model()
    before = _snapshot(model)
    a, b = _result(4), _result(5)
    summed = stack([a, b])
    for name in a.deltas:
        torch.testing.assert_close(summed.deltas[name], a.deltas[name] + b.deltas[name])
        torch.testing.assert_close(a.scaled(2.5).deltas[name], 2.5 * a.deltas[name])
    assert a.deltas["0.weight"] is not summed.deltas["0.weight"]

    with apply(model, a, scale=-0.5):
        torch.testing.assert_close(model[0].weight, before["0.weight"] - 0.5 * a.deltas["0.weight"])
    with apply(model, a), apply(model, b):
        stacked = _snapshot(model)
    with apply(model, summed):
        for name in a.deltas:
            torch.testing.assert_close(_snapshot(model)[name], stacked[name])
    _assert_bit_exact(model, before)

    partial = EditResult({"2.bias": torch.ones(2)})
    both = stack([a, partial])
    torch.testing.assert_close(both.deltas["2.bias"], a.deltas["2.bias"] + 1)
    torch.testing.assert_close(both.deltas["0.weight"], a.deltas["0.weight"])
    assert '"case_id": "c4"' in both.metadata["parts"]


def test_safetensors_round_trip_keeps_deltas_and_metadata(tmp_path: Path) -> None:
    result = _result(6)
    result.metadata["config"] = '{"lr": 0.1}'
    path = result.save(tmp_path / "edits" / "case.safetensors")
    loaded = EditResult.load(path)
    assert loaded.metadata == result.metadata
    assert set(loaded.deltas) == set(result.deltas)
    for name, delta in result.deltas.items():
        assert torch.equal(loaded.deltas[name], delta)
        assert loaded.deltas[name].dtype == delta.dtype


def test_metadata_values_become_strings() -> None:
    result = EditResult({"w": torch.zeros(1)}, {"n": 3, "params": ["a", "b"], "s": "x"})
    assert result.metadata == {"n": "3", "params": '["a", "b"]', "s": "x"}


def test_load_rejects_other_safetensors(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    path = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(2)}, str(path))
    with pytest.raises(ValueError, match="not an edit-delta"):
        EditResult.load(path)
