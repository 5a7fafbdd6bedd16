"""The `cam` segmenter's ONNX Runtime passes: the same masks and CAMs as torch on real photos with
the real Lite0 weights, torch when onnxruntime is missing (with the reason), one export per
model, and torch whenever the exported graph would no longer be the model."""

from __future__ import annotations

import builtins
import copy
import importlib.util

import numpy as np
import pytest
import skimage.data
import torch

from pipeline.segment import cam_engine
from pipeline.segment.cam import CamSegmenter
from pipeline.segment.refine import resize_longer

needs_ort = pytest.mark.skipif(
    not all(importlib.util.find_spec(name) for name in ("onnxruntime", "onnx")),
    reason="onnxruntime/onnx not installed (pip install -e '.[dev]')",
)
CONCEPTS = ("object", "background", "wheel", "cup")


@pytest.fixture(scope="module", autouse=True)
def private_cache(tmp_path_factory):
    """Exports go to a per-module folder, never the user's cache."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CONCEPTSWAP_CACHE", str(tmp_path_factory.mktemp("cam-engine-cache")))
        yield


@pytest.fixture(scope="module")
def photos() -> list[np.ndarray]:
    return [skimage.data.chelsea(), skimage.data.coffee(), skimage.data.stereo_motorcycle()[0]]


EXPORTS: list[str] = []  # the files `segs` exported (into the module's empty cache)


@pytest.fixture(scope="module")
def segs(classifier) -> tuple[CamSegmenter, CamSegmenter]:
    real_export = cam_engine.export_dynamic

    def counting_export(module, example, path):
        EXPORTS.append(path.name)
        return real_export(module, example, path)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cam_engine, "export_dynamic", counting_export)
        auto = CamSegmenter(CONCEPTS, classifier=classifier)
        assert not EXPORTS  # nothing loads before it is needed
        auto.engine_info  # noqa: B018  (loads: exports and checks both passes)
    return auto, CamSegmenter(CONCEPTS, classifier=classifier, engine="torch")


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


@needs_ort
def test_auto_runs_both_passes_on_ort_after_a_two_size_check(segs) -> None:
    auto, torch_seg = segs
    info = auto.engine_info
    assert info["requested"] == "auto" and info["engine"] == "onnxruntime", info
    for part in ("features", "crops"):
        detail = info["passes"][part]
        assert detail["engine"] == "onnxruntime"
        assert detail["max_rel_diff"] <= cam_engine.PARITY_RTOL
        assert "probes" in detail["reason"] and detail["onnx_path"].endswith(".onnx")
    assert torch_seg.engine_info["engine"] == "torch"
    assert "engine: torch requested" in torch_seg.engine_info["reason"]
    assert auto.id == torch_seg.id  # the engine is not part of the id (masks agree)
    assert "engine" not in auto.id and "onnx" not in auto.id


@needs_ort
def test_ort_masks_equal_torch_masks_on_real_photos(segs, photos) -> None:
    auto, torch_seg = segs
    auto.parts, torch_seg.parts = (), ()  # objects only on two photos (torch crops are slow)
    try:
        got = auto.segment(photos[:2], [None] * 2)
        expected = torch_seg.segment(photos[:2], [None] * 2)
    finally:
        auto.parts, torch_seg.parts = ("wheel", "cup"), ("wheel", "cup")
    got += auto.segment(photos[2:], [None])  # all four concepts on the motorcycle
    expected += torch_seg.segment(photos[2:], [None])
    found = set()
    for ours, theirs in zip(got, expected, strict=True):
        assert [d.concept for d in ours] == [d.concept for d in theirs]
        for a, b in zip(ours, theirs, strict=True):
            found.add(a.concept)
            assert _iou(a.mask, b.mask) >= 0.99, (a.concept, _iou(a.mask, b.mask))
            assert abs(a.score - b.score) <= 1e-4
    assert {"object", "background", "wheel"} <= found  # the part path was really compared


@needs_ort
def test_ort_cams_match_torch_cams(segs, photos) -> None:
    auto, torch_seg = segs
    works = [resize_longer(photo, auto.work_size)[0] for photo in photos[:2]]
    for (cam_a, cls_a, p_a), (cam_b, cls_b, p_b) in zip(
        auto._cams(works, [None] * 2), torch_seg._cams(works, [None] * 2), strict=True
    ):
        assert cls_a == cls_b and abs(p_a - p_b) <= 1e-5
        assert cam_a.shape == cam_b.shape and np.abs(cam_a - cam_b).max() <= 1e-4


def test_missing_onnxruntime_falls_back_to_torch_with_the_reason(
    classifier, photos, monkeypatch
) -> None:
    real_import = builtins.__import__

    def no_onnxruntime(name, *args, **kwargs):
        if name.split(".")[0] == "onnxruntime":
            raise ImportError("No module named 'onnxruntime' (simulated)")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_onnxruntime)
    seg = CamSegmenter(("object", "cup"), classifier=classifier, windows=(160,))
    info = seg.engine_info
    assert info["engine"] == "torch"
    for part in ("features", "crops"):
        reason = info["passes"][part]["reason"]
        assert "onnxruntime unavailable" in reason and "fell back to torch" in reason
    seg.parts = ()
    (found,) = seg.segment(photos[1:2], [None])
    assert [d.concept for d in found] == ["object"] and 0.25 < found[0].mask.mean() < 0.7


@needs_ort
def test_export_is_cached_and_reused_without_re_export(segs, classifier, monkeypatch) -> None:
    assert len(EXPORTS) == 2 and len(set(EXPORTS)) == 2  # features and crops, once each
    monkeypatch.setattr(cam_engine, "export_dynamic", lambda *a: pytest.fail(f"re-export {a}"))
    again = CamSegmenter(("object", "cup"), classifier=classifier, threshold=0.5)
    for part in ("features", "crops"):
        path = again.engine_info["passes"][part]["onnx_path"]
        assert path == segs[0].engine_info["passes"][part]["onnx_path"]
        assert again.engine_info["passes"][part]["engine"] == "onnxruntime"
    folder = cam_engine.onnx_engine.cache_dir()
    assert sorted(p.name for p in folder.iterdir()) == sorted(EXPORTS)  # no temporary file


@needs_ort
def test_hooks_or_edited_weights_send_the_pass_back_to_torch(classifier) -> None:
    clf = copy.deepcopy(classifier)  # same weights: the cached export, edited below
    seg = CamSegmenter(("cup",), classifier=clf)
    assert seg.engine_info["engine"] == "onnxruntime"
    x = torch.randn(2, 3, 160, 160, generator=torch.Generator().manual_seed(3))
    engines = seg._engines
    calls: list[int] = []
    handle = clf.model.register_forward_hook(lambda _m, args, _o: calls.append(len(args[0])))
    try:
        engines.logits(x)
    finally:
        handle.remove()
    assert calls == [2]  # the hook saw the call: torch ran it
    before = engines.logits(x).numpy()
    with torch.no_grad():
        clf.model.get_classifier().bias[7] += 5.0
    after = engines.logits(x).numpy()  # an ORT session would still answer with the old bias
    assert np.allclose(after[:, 7] - before[:, 7], 5.0, atol=1e-3)
    assert np.abs(np.delete(after - before, 7, axis=1)).max() <= 1e-3


def test_unknown_engine_is_refused(classifier) -> None:
    with pytest.raises(ValueError, match="engine must be one of auto, torch"):
        CamSegmenter(("object",), classifier=classifier, engine="tensorrt")
