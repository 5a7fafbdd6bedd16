"""ONNX Runtime on CPU for a torch classifier: export once, cache on disk, run with torch's
thread count.

The export is keyed by the classifier id, a digest of the exported module's tensors (so a
randomly initialised or edited model never reuses another's file), the torch version and the
input shape; it lives in `$CONCEPTSWAP_CACHE/onnx/` or `~/.cache/conceptswap/onnx/` and is
written to a temporary file then renamed, so a crash never leaves a half-written model that a
later run would load. onnxruntime and onnx are optional: importing this module without them
works, and `load_onnx_engine` raises ImportError, which the caller turns into a torch fallback.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import warnings
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

OPSET = 17


def cache_root() -> Path:
    """The project's cache: `$CONCEPTSWAP_CACHE`, else `~/.cache/conceptswap`."""
    root = os.environ.get("CONCEPTSWAP_CACHE")
    return Path(root).expanduser() if root else Path.home() / ".cache" / "conceptswap"


def cache_dir() -> Path:
    """Where exported models live: `$CONCEPTSWAP_CACHE/onnx`, else `~/.cache/conceptswap/onnx`."""
    return cache_root() / "onnx"


def module_digest(module: torch.nn.Module) -> str:
    """sha256 (16 hex digits) over the module's parameters and buffers: names, shapes, bytes."""
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        value = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}:{tuple(value.shape)}:{value.dtype};".encode())
        digest.update(value.view(torch.uint8).numpy().tobytes() if value.numel() else b"")
    return digest.hexdigest()[:16]


def safe_model_id(model_id: str) -> str:
    """The model id without its weights suffix, safe in a file name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", model_id.split("@")[0])[:80]


def cache_file(model_id: str, *parts: str) -> Path:
    """`<model>-<parts>-torch<version>-op<opset>.onnx` in the cache folder."""
    torch_version = re.sub(r"[^A-Za-z0-9.]+", "_", torch.__version__)
    name = "-".join((safe_model_id(model_id), *parts, f"torch{torch_version}", f"op{OPSET}"))
    return cache_dir() / f"{name}.onnx"


def onnx_path(module: torch.nn.Module, input_shape: tuple[int, ...], model_id: str) -> Path:
    """The cache file of this module's export (model id, weights digest, torch, input shape)."""
    shape = "x".join(str(s) for s in input_shape)
    return cache_file(model_id, module_digest(module), shape)


def export_onnx(module: torch.nn.Module, input_shape: tuple[int, ...], path: Path) -> Path:
    """Export `module` (eval mode, float32, dynamic batch axis) to `path`, atomically."""
    axes = {"input": {0: "batch"}, "logits": {0: "batch"}}
    return export_atomic(module, torch.zeros((2, *input_shape)), path, axes, "logits")


def export_atomic(
    module: torch.nn.Module,
    example: torch.Tensor,
    path: Path,
    dynamic_axes: dict[str, dict[int, str]],
    output_name: str,
) -> Path:
    """`torch.onnx.export` to a temporary file renamed to `path`: a crash never leaves a
    half-written model that a later run would load."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".onnx")
    os.close(handle)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
            torch.onnx.export(
                module.eval(),
                (example,),
                temp,
                input_names=["input"],
                output_names=[output_name],
                dynamic_axes=dynamic_axes,
                opset_version=OPSET,
                dynamo=False,
            )
        os.chmod(temp, 0o644)  # mkstemp's 0600 would hide the cache from other users
        os.replace(temp, path)
    finally:
        if os.path.exists(temp):
            os.unlink(temp)
    return path


# Intra-op threads that sleep between parallel sections instead of spinning: in a build the
# model shares the cores with compositing, preprocessing and PNG threads, which spinning starves.
# Measured on the 48-photo build: 57-59 s instead of 62-65 s; the bare rate alone is unchanged
# within noise (73-80 against 77-88 images/s). Part of the stored engine-choice key.
SESSION_CONFIG = {"session.intra_op.allow_spinning": "0"}


class OnnxRuntimeEngine:
    """An ONNX Runtime CPU session: normalised float32 batch → float32 logits."""

    def __init__(self, path: Path, threads: int) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        for key, value in SESSION_CONFIG.items():
            options.add_session_config_entry(key, value)
        self.path = path
        self.threads = threads
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, batch: torch.Tensor) -> np.ndarray:
        x = np.ascontiguousarray(batch.detach().cpu().numpy(), dtype=np.float32)
        (logits,) = self.session.run(None, {self.input_name: x})
        return np.asarray(logits, dtype=np.float32)


def load_onnx_engine(
    module: torch.nn.Module, input_shape: tuple[int, ...], model_id: str
) -> OnnxRuntimeEngine:
    """The engine of this module, exporting it only when its cache file is absent.

    Raises ImportError when onnxruntime or onnx is missing, and whatever the export raises.
    """
    path = onnx_path(module, input_shape, model_id)
    return load_cached(path, lambda: export_onnx(module, input_shape, path))


def load_cached(path: Path, export: Callable[[], object]) -> OnnxRuntimeEngine:
    """The session of the export at `path`, running `export` first when the file is absent;
    one session per (file, thread count) per process."""
    import onnxruntime  # noqa: F401  (fail here, before any export, with a clear ImportError)

    if not path.is_file():
        import onnx  # noqa: F401  (the exporter writes through it)

        export()
    return _session(str(path), torch.get_num_threads())


@lru_cache(maxsize=16)
def _session(path: str, threads: int) -> OnnxRuntimeEngine:
    return OnnxRuntimeEngine(Path(path), threads)
