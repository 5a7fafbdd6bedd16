"""The `cam` segmenter's no-gradient passes on ONNX Runtime (CPU), with torch as the fallback.

Why: on a small CPU about half of a Grad-CAM mask's time is the torch forward of
`forward_features`, and crop classification is nothing but forward passes; ONNX Runtime runs
both 2-2.5x faster than torch eager there. Two exports, both with dynamic batch and spatial
axes (the working image's shape follows the photo's aspect ratio):

- `features`: `model.forward_features` (the Grad-CAM feature map). The head (global pool +
  linear) and its gradient stay on torch: the features come back as a torch tensor and
  `cam.py` takes their gradient exactly as before. LayerCAM needs gradients through the blocks
  and never uses this.
- `crops`: the whole model (crop logits for part concepts).

Each export is cached like the classifier's (`pipeline.classify.onnx_engine`: model id, weights
digest, torch version, opset; written atomically) and checked against torch when first used (not
at construction: a segmenter built only for its id exports nothing), on a probe at two spatial
sizes: max |ORT - torch| ≤ `PARITY_RTOL` × max(1, max |torch|). When onnxruntime/onnx is
missing, the export fails, the check fails or the model is on CUDA, that pass runs on torch and
`engine_info` says why. At call time a model with hooks, in training mode or with weights edited
in place since the check also runs on torch (an export sees none of these). The engine is not in
the segmenter id: masks agree to float rounding.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.classify import onnx_engine

log = logging.getLogger(__name__)

ENGINES = ("auto", "torch")
PARITY_RTOL = 1e-4  # max abs diff ≤ PARITY_RTOL × max(1, max |torch|), at each probe size
_PARITY: dict[tuple[str, int, tuple[tuple[int, ...], ...]], float] = {}  # CamEngines._parity


class _Features(torch.nn.Module):
    """`model.forward_features` as a module of its own, so it can be exported."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_features(x)


def export_path(module: torch.nn.Module, model_id: str, part: str) -> Path:
    """The cache file of a dynamic-shape export (model id, part, weights digest, torch, opset)."""
    return onnx_engine.cache_file(model_id, part, onnx_engine.module_digest(module), "dynhw")


def export_dynamic(module: torch.nn.Module, example: torch.Tensor, path: Path) -> Path:
    """Export `module` (eval, float32) with dynamic batch, height and width, atomically."""
    axes = {0: "batch", 2: "height", 3: "width"}
    # output axes beyond the batch are named only when the output is a map
    return onnx_engine.export_atomic(
        module, example, path, {"input": axes, "output": {0: "batch"}}, "output"
    )


def load_engine(
    module: torch.nn.Module, model_id: str, part: str, example: torch.Tensor
) -> onnx_engine.OnnxRuntimeEngine:
    """The ORT session of this export, exporting only when the cache file is absent.

    Raises ImportError when onnxruntime or onnx is missing, and whatever the export raises.
    """
    path = export_path(module, model_id, part)
    return onnx_engine.load_cached(path, lambda: export_dynamic(module, example, path))


def _probes(part: str, work_size: int, crop_size: int) -> list[torch.Tensor]:
    """Two deterministic standard-normal batches of different (odd) spatial sizes."""
    generator = torch.Generator().manual_seed(1)
    if part == "features":  # a landscape working image and a smaller portrait one, batch 2
        shapes = [(1, 3, work_size * 2 // 3 + 1, work_size), (2, 3, work_size // 2, work_size // 3)]
    else:  # the crops and a smaller non-square batch
        shapes = [(2, 3, crop_size, crop_size), (1, 3, crop_size * 3 // 4 + 1, crop_size // 2)]
    return [torch.randn(shape, generator=generator) for shape in shapes]


def _weights_stamp(model: torch.nn.Module) -> tuple[tuple[int, int], ...]:
    """Storage and in-place version of every tensor: changes when weights are edited."""
    tensors = [*model.parameters(), *model.buffers()]
    return tuple((t.data_ptr(), t._version) for t in tensors)


def _has_hooks(model: torch.nn.Module) -> bool:
    """Any forward (pre-)hook, global or on a submodule: an export would skip it."""
    from torch.nn.modules import module as nn_module

    if nn_module._global_forward_hooks or nn_module._global_forward_pre_hooks:
        return True
    return any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


class CamEngines:
    """The segmenter's two no-gradient passes: `features(x)` and `logits(x)`, each on ORT when
    it was requested, loaded and checked, else on torch. `info` is `engine_info`.

    Engines load (export, check) on first use, so a segmenter built only for its `id` (build
    fingerprints, config checks) costs no export.
    """

    def __init__(
        self,
        classifier: Any,
        requested: str,
        passes: tuple[str, ...],
        work_size: int,
        crop_size: int,
    ) -> None:
        """`classifier`: its `model` (torch), `id` and `device` are used."""
        if requested not in ENGINES:
            raise ValueError(
                f"cam segmenter: engine must be one of {', '.join(ENGINES)}, got {requested!r}"
            )
        self.model, self._model_id = classifier.model, classifier.id
        self._device = torch.device(getattr(classifier, "device", "cpu"))
        self._requested, self._passes = requested, passes
        self._sizes = (work_size, crop_size)
        self._ort: dict[str, onnx_engine.OnnxRuntimeEngine] = {}
        self._info: dict[str, Any] | None = None
        self._stamp: tuple[tuple[int, int], ...] = ()  # the weights the ORT engines were checked on

    @property
    def info(self) -> dict[str, Any]:
        """Which engine each pass runs on and why (loads the engines on first access)."""
        if self._info is None:
            self._info = self._load()
        return self._info

    def _load(self) -> dict[str, Any]:
        requested, device, model_id = self._requested, self._device, self._model_id
        work_size, crop_size = self._sizes
        details: dict[str, dict[str, Any]] = {}
        for part in self._passes:
            detail: dict[str, Any] = {"engine": "torch", "reason": "", "max_rel_diff": None}
            if requested == "torch":
                detail["reason"] = "engine: torch requested"
            elif device.type != "cpu":
                detail["reason"] = f"{device.type}: the ORT engine runs on CPU only"
            else:
                engine = self._check(part, model_id, work_size, crop_size, detail)
                if engine is not None:
                    self._ort[part] = engine
                    detail["engine"] = "onnxruntime"
            details[part] = detail
        self._stamp = _weights_stamp(self.model) if self._ort else ()
        engines = {d["engine"] for d in details.values()}
        return {
            "requested": requested,
            "engine": engines.pop() if len(engines) == 1 else ("mixed" if engines else "torch"),
            "reason": "; ".join(f"{p}: {d['reason']}" for p, d in details.items())
            or "no no-gradient pass (LayerCAM needs gradients through the blocks: torch)",
            "passes": details,
        }

    def _module(self, part: str) -> torch.nn.Module:
        return _Features(self.model) if part == "features" else self.model

    def _torch(self, part: str, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.model.forward_features(x) if part == "features" else self.model(x)

    def _check(
        self, part: str, model_id: str, work_size: int, crop_size: int, detail: dict[str, Any]
    ) -> onnx_engine.OnnxRuntimeEngine | None:
        """The checked ORT engine of one pass, or None with `detail["reason"]` saying why."""
        probes = _probes(part, work_size, crop_size)
        try:
            engine = load_engine(self._module(part), model_id, part, probes[0])
        except ImportError as error:
            detail["reason"] = f"onnxruntime unavailable ({error}); fell back to torch"
        except Exception as error:  # any export or session failure falls back, loudly
            detail["reason"] = (
                f"ONNX export/load failed ({type(error).__name__}: {error}); fell back to torch"
            )
        else:
            worst = self._parity(part, engine, probes)
            detail["max_rel_diff"] = worst  # relative to max(1, max |torch|)
            detail["onnx_path"] = str(engine.path)
            if worst <= PARITY_RTOL:
                sizes = ", ".join("x".join(map(str, p.shape[2:])) for p in probes)
                detail["reason"] = f"ORT matches torch within {worst:.1e} (probes {sizes})"
                return engine
            detail["reason"] = (
                f"ORT differs from torch by {worst:.2e} > {PARITY_RTOL:.0e} (relative) on the "
                "probe; fell back to torch"
            )
        log.warning("cam segmenter %s %s pass: %s", model_id, part, detail["reason"])
        return None

    def _parity(
        self, part: str, engine: onnx_engine.OnnxRuntimeEngine, probes: list[torch.Tensor]
    ) -> float:
        """Max |ORT - torch| / max(1, max |torch|) over the probes, remembered per export file
        (its name holds the weights digest) while the model is eval and unhooked."""
        key = (str(engine.path), engine.threads, tuple(tuple(p.shape) for p in probes))
        plain = not self.model.training and not _has_hooks(self.model)
        if plain and key in _PARITY:
            return _PARITY[key]
        worst = 0.0
        for probe in probes:
            expected = self._torch(part, probe).float().numpy()
            diff = float(np.abs(engine(probe) - expected).max())
            worst = max(worst, diff / max(1.0, float(np.abs(expected).max())))
        if plain:
            _PARITY[key] = worst
        return worst

    def _run(self, part: str, x: torch.Tensor) -> torch.Tensor:
        """ORT while the exported graph still is the model (eval, no hooks, the same weights);
        a hooked model runs on torch before anything loads, so its hooks see every call."""
        if self.model.training or _has_hooks(self.model):
            return self._torch(part, x)
        engine = self._ort.get(part) if self.info else None
        if engine is None or _weights_stamp(self.model) != self._stamp:
            return self._torch(part, x)
        return torch.from_numpy(engine(x))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """`forward_features(x)` without gradient (N x C x h x w, float32)."""
        return self._run("features", x)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """`model(x)` without gradient (N x classes)."""
        return self._run("crops", x)
