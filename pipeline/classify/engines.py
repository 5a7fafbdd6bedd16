"""Inference engines for the no-gradient passes of a torch classifier, chosen by measurement.

Why: on a small CPU machine the same EfficientNet-Lite0 runs 2.5-4x faster in ONNX Runtime than
in torch eager, and the fastest batch size depends on the machine and its load. Passes that need
no gradient (classifying clean images and counterfactuals) therefore run on an `Engine`: a
callable from a normalised N x 3 x H x W float32 batch to N x C float32 logits.

- `onnxruntime` (CPU): the classifier's forward exported once with `torch.onnx.export`, cached
  on disk by model id and weights digest (`pipeline.classify.onnx_engine`), and checked against
  torch on a probe batch at load (max abs logit difference <= `PARITY_TOLERANCE`); when
  onnxruntime is missing, the export fails or the check fails, the classifier falls back to
  torch and `engine_info.reason` says why.
- `torch`: eager under inference mode; on CPU the input memory format (contiguous or
  channels-last) and batch size are chosen by the probe; on CUDA channels-last with fp16 autocast
  and large batches.
- `auto`: times each candidate (engine x batch size) on a short probe at load and keeps the
  fastest; the choice and the measured rates are in `engine_info`. The choice is stored per
  machine (`pipeline.classify.engine_choice`) and reused by every later load of the same
  weights there, so a build, its resume and its rebuild run the same engine and batch size and
  store the same probabilities bit for bit; delete the file to measure again.

Grad-CAM and the editing engine use the torch `model` itself, never an engine.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.classify import engine_choice

log = logging.getLogger(__name__)

ENGINES = ("auto", "torch", "onnxruntime")
PARITY_TOLERANCE = 1e-4  # max abs logit difference, ORT vs torch, on the probe batch
# batch sizes the probe times on CPU; it runs once per machine and weights (engine_choice), so
# it can afford every size and the best of two timings
PROBE_BATCHES = (4, 8, 16, 32)
PROBE_REPEATS = 2
CUDA_MIN_BATCH = 64

Engine = Callable[[torch.Tensor], np.ndarray]


@dataclass
class EngineInfo:
    """Which engine a classifier's no-grad passes run on, and why (recorded in build.yaml).

    `rate` is the probe's images/s for the chosen (engine, batch size); `probe` every candidate
    timed (`onnxruntime@16`: images/s); `reason` the fallback or the choice explained.
    """

    requested: str
    engine: str = "torch"
    device: str = "cpu"
    batch_size: int = 32
    channels_last: bool = False
    amp: bool = False
    rate: float | None = None
    probe: dict[str, float] = field(default_factory=dict)
    max_abs_logit_diff: float | None = None
    onnx_path: str | None = None
    reason: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class TorchEngine:
    """The torch forward under inference mode, in a given input memory format (and fp16 autocast
    on CUDA)."""

    def __init__(
        self,
        forward: Callable[[torch.Tensor], torch.Tensor],
        device: torch.device,
        channels_last: bool = False,
        amp: bool = False,
    ) -> None:
        self.forward = forward
        self.device = device
        self.channels_last = channels_last
        self.amp = amp

    @torch.inference_mode()
    def __call__(self, batch: torch.Tensor) -> np.ndarray:
        x = batch.to(self.device, non_blocking=True)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if self.amp:
            with torch.autocast(self.device.type, dtype=torch.float16):
                logits = self.forward(x)
        else:
            logits = self.forward(x)
        return logits.float().cpu().numpy()


def probe_input(shape: tuple[int, ...], batch: int, seed: int = 0) -> torch.Tensor:
    """A deterministic normalised-image-like batch (standard normal) of the model's input shape."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn((batch, *shape), generator=generator)


def images_per_second(engine: Engine, batch: torch.Tensor, repeats: int = 1) -> float:
    """Best-of-`repeats` rate of one engine on one batch, after one untimed warm-up call."""
    engine(batch)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        engine(batch)
        best = min(best, time.perf_counter() - start)
    return len(batch) / best if best > 0 else float("inf")


def select_engine(
    requested: str,
    forward: Callable[[torch.Tensor], torch.Tensor],
    module: torch.nn.Module,
    input_shape: tuple[int, ...],
    device: torch.device,
    model_id: str,
    batch_size: int,
    probe_batches: tuple[int, ...] | None = None,
) -> tuple[Engine, EngineInfo]:
    """The engine for `requested` (`auto`, `torch`, `onnxruntime`) and what was measured.

    `forward` is the classifier's torch forward (image batch → logits) and `module` the
    nn.Module holding its weights (exported for ONNX Runtime). On CUDA the torch engine runs with
    channels-last and fp16 autocast at batch >= `CUDA_MIN_BATCH`, without a probe.
    """
    probe_batches = probe_batches or PROBE_BATCHES
    if requested not in ENGINES:
        raise ValueError(f"classifier engine {requested!r} is not one of {', '.join(ENGINES)}")
    info = EngineInfo(requested=requested, device=device.type, batch_size=batch_size)
    if device.type == "cuda":
        info.channels_last, info.amp = True, True
        info.batch_size = max(batch_size, CUDA_MIN_BATCH)
        info.reason = "CUDA: torch with channels-last and fp16 autocast"
        if requested == "onnxruntime":
            info.reason += " (the onnxruntime engine runs on CPU only)"
        return TorchEngine(forward, device, channels_last=True, amp=True), info
    candidates: dict[str, tuple[Engine, int]] = {}
    if requested in ("auto", "onnxruntime"):
        ort_engine = _onnx_engine(forward, module, input_shape, model_id, info)
        if ort_engine is not None:
            for batch in probe_batches:
                candidates[f"onnxruntime@{batch}"] = (ort_engine, batch)
    if requested == "torch" or not candidates or requested == "auto":
        # channels-last at each batch, contiguous at the smallest: oneDNN's depthwise kernels
        # usually prefer channels-last, and a slow torch probe costs seconds at load
        channels_last = TorchEngine(forward, device, channels_last=True)
        for batch in probe_batches:
            candidates[f"torch-channels-last@{batch}"] = (channels_last, batch)
        candidates[f"torch@{probe_batches[0]}"] = (TorchEngine(forward, device), probe_batches[0])
    choice_file = _choice_file(requested, module, input_shape, model_id, candidates)
    stored = engine_choice.load(choice_file) if choice_file is not None else None
    if stored is not None and stored.best in candidates:
        info.probe, best = stored.probe, stored.best
    else:
        for name, (engine, batch) in candidates.items():
            rate = images_per_second(engine, probe_input(input_shape, batch), PROBE_REPEATS)
            info.probe[name] = round(rate, 2)
        best = max(info.probe, key=info.probe.__getitem__)
        if choice_file is not None:
            engine_choice.save(choice_file, engine_choice.Choice(best, info.probe))
    engine, info.batch_size = candidates[best]
    info.engine = "onnxruntime" if best.startswith("onnxruntime") else "torch"
    info.channels_last = "channels-last" in best
    info.rate = info.probe[best]
    chosen = f"{best} at {info.rate:.1f} images/s"
    if choice_file is not None:  # the same words whether probed now or read back
        chosen += f" (probe kept in {choice_file})"
    info.reason = f"{info.reason}; {chosen}" if info.reason else f"fastest probed: {chosen}"
    log.info("classifier %s engine %s (%s)", model_id, info.engine, info.reason)
    return engine, info


def _choice_file(
    requested: str,
    module: torch.nn.Module,
    input_shape: tuple[int, ...],
    model_id: str,
    candidates: dict[str, tuple[Engine, int]],
) -> Path | None:
    """Where `auto`'s choice among these candidates is stored on this machine (None otherwise:
    a single requested engine has nothing to remember)."""
    if requested != "auto":
        return None
    return engine_choice.choice_path(model_id, module, input_shape, sorted(candidates))


def _onnx_engine(
    forward: Callable[[torch.Tensor], torch.Tensor],
    module: torch.nn.Module,
    input_shape: tuple[int, ...],
    model_id: str,
    info: EngineInfo,
) -> Engine | None:
    """The checked ONNX Runtime engine, or None with `info.reason` saying why not."""
    from pipeline.classify import onnx_engine

    try:
        ort_engine = onnx_engine.load_onnx_engine(module, input_shape, model_id)
    except ImportError as error:
        info.reason = f"onnxruntime unavailable ({error}); fell back to torch"
    except Exception as error:  # any export or session failure falls back, loudly
        info.reason = (
            f"ONNX export/load failed ({type(error).__name__}: {error}); fell back to torch"
        )
    else:
        probe = probe_input(input_shape, 3, seed=1)  # batch 3: also checks the dynamic batch axis
        with torch.inference_mode():
            expected = forward(probe).float().numpy()
        diff = float(np.abs(ort_engine(probe) - expected).max())
        info.max_abs_logit_diff = diff
        info.onnx_path = str(ort_engine.path)
        if diff <= PARITY_TOLERANCE:
            return ort_engine
        info.reason = (
            f"ONNX Runtime logits differ from torch by {diff:.2e} > {PARITY_TOLERANCE:.0e} on "
            "the probe batch; fell back to torch"
        )
    log.warning("classifier %s: %s", model_id, info.reason)
    return None
