"""`auto`'s engine choice, measured once per machine and weights and reused afterwards.

Why: the probe's fastest (engine, batch size) depends on the machine's load, and ONNX Runtime
and torch, or two batch sizes, agree only to ~1e-6 in the probabilities. Re-probing at every
load would let a resumed build store other bits than the build it resumes, so the first probe's
choice is written to `$CONCEPTSWAP_CACHE/engines/` (or `~/.cache/conceptswap/engines/`), keyed
by the model id, its weights digest, the input shape, the candidates, the torch and onnxruntime
versions, the ONNX Runtime session settings, the thread count and the CPU, and read back by
every later load. Delete the file (or the folder) to measure again.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import tempfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import torch

from pipeline.classify.onnx_engine import (
    SESSION_CONFIG,
    cache_root,
    module_digest,
    safe_model_id,
)


@dataclass(frozen=True)
class Choice:
    """The probed candidate kept (`onnxruntime@16`) and every candidate's images/s."""

    best: str
    probe: dict[str, float]


@cache
def _cpu() -> str:
    """The CPU's model name (Linux), else the platform's processor string."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _onnxruntime_version() -> str:
    try:
        import onnxruntime
    except ImportError:
        return "none"
    return str(onnxruntime.__version__)


def choice_path(
    model_id: str, module: torch.nn.Module, input_shape: tuple[int, ...], candidates: list[str]
) -> Path:
    """The file holding the choice for this model, input and candidate set on this machine."""
    key = json.dumps(
        [
            model_id,
            module_digest(module),
            list(input_shape),
            candidates,
            torch.__version__,
            _onnxruntime_version(),
            sorted(SESSION_CONFIG.items()),
            torch.get_num_threads(),
            os.cpu_count(),
            _cpu(),
        ]
    )
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return cache_root() / "engines" / f"{safe_model_id(model_id)}-{digest}.json"


def load(path: Path) -> Choice | None:
    """The stored choice, or None when absent or unreadable (then the caller probes anew)."""
    try:
        data = json.loads(path.read_text())
        return Choice(str(data["best"]), {str(k): float(v) for k, v in data["probe"].items()})
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def save(path: Path, choice: Choice) -> None:
    """Write the choice atomically (a temporary file renamed), readable by other users."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".json")
    try:
        with os.fdopen(handle, "w") as file:
            json.dump({"best": choice.best, "probe": choice.probe}, file, indent=1)
        os.chmod(temp, 0o644)
        os.replace(temp, path)
    finally:
        if os.path.exists(temp):
            os.unlink(temp)
