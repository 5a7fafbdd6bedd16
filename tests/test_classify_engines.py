"""Inference engines: ONNX Runtime matches torch on the real weights, falls back to torch when it
cannot run, exports once per model, and `auto` records what it measured."""

from __future__ import annotations

import builtins

import numpy as np
import pytest
import skimage.data
import torch

from pipeline.classify import (
    DEFAULT_ENGINE,
    create_classifier,
    engine_info,
    engines,
    loaded_engine_infos,
)
from pipeline.classify import onnx_engine as onnx_module
from pipeline.classify.engines import PARITY_TOLERANCE, probe_input
from pipeline.config import ClassifierConfig

LITE0 = "timm:tf_efficientnet_lite0"
needs_ort = pytest.mark.skipif(
    not all(__import__("importlib").util.find_spec(name) for name in ("onnxruntime", "onnx")),
    reason="onnxruntime/onnx not installed (pip install -e '.[dev]')",
)


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    """Exports go to a per-session folder, never the user's cache; probes are kept short."""
    monkeypatch.setenv("CONCEPTSWAP_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
    monkeypatch.setattr(engines, "PROBE_BATCHES", (2, 4))


@needs_ort
def test_onnxruntime_logits_match_torch_on_the_real_lite0_weights(classifier) -> None:
    ort = create_classifier(LITE0, device="cpu", engine="onnxruntime")
    info = engine_info(ort)
    assert info is not None and info["engine"] == "onnxruntime", info
    assert info["max_abs_logit_diff"] <= PARITY_TOLERANCE
    assert ort.model is classifier.model  # one torch model in memory, kept for Grad-CAM
    batch = torch.stack(
        [classifier.preprocess([image])[0] for image in (skimage.data.coffee(),)]
        + list(probe_input(tuple(classifier.input_shape()), 4, seed=7))
    )
    with torch.inference_mode():
        expected = classifier.model(batch).numpy()
    got = ort._runner()[0](batch)
    assert np.abs(got - expected).max() <= PARITY_TOLERANCE
    photos = [skimage.data.coffee(), skimage.data.chelsea(), skimage.data.astronaut()] * 3
    torch_probs, ort_probs = classifier.predict_proba(photos), ort.predict_proba(photos)
    assert ort_probs.shape == (9, 1000)
    assert np.abs(torch_probs - ort_probs).max() <= 1e-5
    assert (torch_probs.argmax(1) == ort_probs.argmax(1)).all()
    assert ort.class_names[int(ort_probs[0].argmax())] == "espresso"


def test_missing_onnxruntime_falls_back_to_torch_with_a_reason(monkeypatch) -> None:
    real_import = builtins.__import__

    def no_onnxruntime(name, *args, **kwargs):
        if name.split(".")[0] == "onnxruntime":
            raise ImportError("No module named 'onnxruntime' (simulated)")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_onnxruntime)
    model = create_classifier(LITE0, pretrained=False, device="cpu", engine="onnxruntime")
    info = engine_info(model)
    assert info["engine"] == "torch"
    assert "onnxruntime unavailable" in info["reason"] and "fell back to torch" in info["reason"]
    assert (
        info["rate"] > 0
        and set(info["probe"])
        and all(k.startswith("torch") for k in info["probe"])
    )
    assert model.predict_proba([skimage.data.coffee()]).shape == (1, 1000)


@needs_ort
def test_failed_export_falls_back_to_torch(monkeypatch) -> None:
    def broken_export(*args, **kwargs):
        raise RuntimeError("unsupported operator (simulated)")

    monkeypatch.setattr(onnx_module, "export_onnx", broken_export)
    model = create_classifier(LITE0, pretrained=False, device="cpu", engine="auto", batch_size=7)
    info = engine_info(model)
    assert info["engine"] == "torch"
    assert "ONNX export/load failed (RuntimeError: unsupported operator" in info["reason"]
    assert model.predict_proba([skimage.data.coffee()] * 5).shape == (5, 1000)


@needs_ort
def test_export_is_cached_by_weights_and_reused_without_re_export(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("CONCEPTSWAP_CACHE", str(tmp_path))
    exports = []
    real_export = onnx_module.export_onnx

    def counting_export(*args, **kwargs):
        exports.append(args[2])
        return real_export(*args, **kwargs)

    monkeypatch.setattr(onnx_module, "export_onnx", counting_export)
    first = create_classifier(LITE0, device="cpu", engine="onnxruntime", batch_size=5)
    second = create_classifier(LITE0, device="cpu", engine="onnxruntime", batch_size=6)
    assert len(exports) == 1, exports
    assert engine_info(first)["onnx_path"] == engine_info(second)["onnx_path"]
    assert engine_info(second)["engine"] == "onnxruntime"
    cached = list((tmp_path / "onnx").glob("*.onnx"))
    assert [p.name for p in cached] == [exports[0].name]  # no temporary file left behind
    # other weights (a random init) are another file, never the cached one
    create_classifier(LITE0, pretrained=False, device="cpu", engine="onnxruntime", batch_size=5)
    assert len(exports) == 2 and exports[1] != exports[0]


@needs_ort
def test_auto_times_both_engines_and_records_its_choice() -> None:
    model = create_classifier(LITE0, device="cpu", engine="auto", batch_size=9)
    info = engine_info(model)
    assert info["requested"] == "auto"
    assert {k.split("@")[0] for k in info["probe"]} >= {"onnxruntime", "torch-channels-last"}
    best = max(info["probe"], key=info["probe"].get)
    assert info["rate"] == info["probe"][best]
    assert info["engine"] == best.split("@")[0].replace("-channels-last", "")
    assert info["batch_size"] == int(best.split("@")[1])
    assert best in info["reason"]


def test_eager_keeps_torch_at_the_configured_batch() -> None:
    eager = create_classifier(LITE0, device="cpu", engine="eager")
    assert create_classifier(LITE0, device="cpu", engine=None) is eager
    assert eager.engine_info is None and engine_info(eager) is None
    assert eager._runner()[1] == eager.batch_size == 32
    with pytest.raises(ValueError, match="not one of eager, auto, torch, onnxruntime"):
        create_classifier(LITE0, device="cpu", engine="tensorrt")


@needs_ort
def test_no_engine_named_runs_predict_proba_on_the_engine_auto_picks(monkeypatch) -> None:
    """The Python API runs the build's default fast path: `create_classifier(name)` is `auto`."""
    assert DEFAULT_ENGINE == ClassifierConfig().engine == "auto"
    model = create_classifier(LITE0, device="cpu", batch_size=11)  # 11: no probe candidate
    info = engine_info(model)
    assert info is not None and info["requested"] == "auto", info
    assert loaded_engine_infos()[model.id] == info  # what build.yaml would record
    assert model is create_classifier(LITE0, device="cpu", engine="auto", batch_size=11)
    assert info["batch_size"] in engines.PROBE_BATCHES and info["batch_size"] != 11
    chosen = model._engine
    expected = (
        onnx_module.OnnxRuntimeEngine if info["engine"] == "onnxruntime" else engines.TorchEngine
    )
    assert isinstance(chosen, expected)
    calls: list[int] = []

    def counting(batch: torch.Tensor) -> np.ndarray:
        calls.append(len(batch))
        return chosen(batch)

    monkeypatch.setattr(model, "_engine", counting)
    probs = model.predict_proba([skimage.data.coffee()] * 5)
    assert probs.shape == (5, 1000) and model.class_names[int(probs[0].argmax())] == "espresso"
    size = info["batch_size"]
    assert calls == [size] * (5 // size) + ([5 % size] if 5 % size else [])


@needs_ort
def test_auto_stores_its_choice_per_machine_and_every_later_load_reuses_it() -> None:
    """A resumed or repeated build must run the engine its first load chose, whatever the load."""
    from pipeline.classify import engine_choice

    model = create_classifier(LITE0, device="cpu", engine="auto", batch_size=13)
    first = engine_info(model)
    path = engine_choice.choice_path(
        model.id, model.model, model.input_shape(), sorted(first["probe"])
    )
    stored = [path]
    assert path.is_file() and path.parent == onnx_module.cache_root() / "engines"
    choice = engine_choice.load(stored[0])
    assert choice is not None and choice.best == max(first["probe"], key=first["probe"].get)
    # overwrite it with the slowest candidate: the next load follows the file, not a new probe
    slowest = min(first["probe"], key=first["probe"].get)
    engine_choice.save(stored[0], engine_choice.Choice(slowest, first["probe"]))
    again = model.configure_engine("auto").as_dict()
    kind, batch = slowest.split("@")
    assert again["engine"] == ("onnxruntime" if kind == "onnxruntime" else "torch")
    assert again["channels_last"] == (kind == "torch-channels-last")
    assert again["batch_size"] == int(batch)
    assert again["probe"] == first["probe"] and str(stored[0]) in again["reason"]
    # an unreadable file is measured again and rewritten with the fastest candidate
    stored[0].write_text("{not json")
    model.configure_engine("auto")
    rewritten = engine_choice.load(stored[0])
    assert rewritten is not None and rewritten.best == max(rewritten.probe, key=rewritten.probe.get)
    # a single requested engine stores nothing
    before = sorted((onnx_module.cache_root() / "engines").glob("*.json"))
    model.configure_engine("torch")
    assert sorted((onnx_module.cache_root() / "engines").glob("*.json")) == before
