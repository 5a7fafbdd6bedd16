"""How close a build comes to the speed its models allow: the limit ratio, before and after.

    .venv/bin/python benchmarks/model_limit.py [--folder PATH] [--limits 48] [--photos 64]
        [--before /tmp/before] [--after .] [--no-demo] [--no-builds]

1. Bare model rates of the build's classifier on this machine: ONNX Runtime (CPU EP, torch's
   thread count) and torch eager (channels-last) at batch 1..32 on a fixed random batch; the
   best attainable rate is the fastest of them.
2. `predict_proba` on `--photos` real photos resized to 384 px (preprocessing included), against
   ORT's bare rate at its best batch (target >= 0.8), for: the Python API
   (`create_classifier(name)`, no engine named), the build's classifier (`load_classifier` of
   the default `ClassifierConfig`) and torch eager by name (`engine="eager"`).
3. Builds, side by side in this run: `benchmarks/build_throughput.py` of the code at `--before`
   (the commit before the engines) and at `--after`, for the demo and the first N photos of
   `--folder` for each N in `--limits`. For each build: wall, time inside the models, the old
   overhead ratio (wall / models), and the limit = classifier passes / best attainable rate +
   the segmenter's and stylizer's model time (no faster engine exists for them here:
   Grad-CAM needs gradients and the stylizer is numpy/OpenCV), limit ratio = wall / limit.
   `--no-builds` stops after 2.

Every figure depends on the machine's load: the load average is printed with each.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_FOLDER = ROOT.parent / "shared" / "datasets" / "imagenet-samples" / "images"
BATCHES = (1, 4, 8, 16, 32)
MODEL = "timm:tf_efficientnet_lite0"


def load() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def bare_rates(repeats: int = 3) -> dict[str, float]:
    """images/s of the bare classifier per (engine, batch): best of `repeats` timed calls."""
    import torch

    from pipeline.classify import create_classifier
    from pipeline.classify.engines import TorchEngine, images_per_second, probe_input
    from pipeline.classify.onnx_engine import load_onnx_engine

    classifier = create_classifier(MODEL, device="cpu", engine="eager")
    shape = classifier.input_shape()
    engines = {"torch-channels-last": TorchEngine(classifier.forward, torch.device("cpu"), True)}
    try:
        engines["onnxruntime"] = load_onnx_engine(classifier.model, shape, classifier.id)
    except ImportError as error:
        print(f"onnxruntime unavailable: {error}")
    rates = {}
    for name, engine in engines.items():
        for batch in BATCHES:
            rates[f"{name}@{batch}"] = images_per_second(engine, probe_input(shape, batch), repeats)
    return rates


def photos_at_384(folder: Path, count: int) -> list:
    """The first `count` photos of `folder`, resized to 384 px on their longer side."""
    import numpy as np
    from PIL import Image

    from pipeline.imageio import resize_max_side

    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
    return [resize_max_side(np.asarray(Image.open(p).convert("RGB")), 384) for p in files[:count]]


def predict_proba_paths() -> dict:
    """The classifiers whose `predict_proba` is timed: the Python API's default, the build's
    and torch eager by name (each loads, and `auto` probes or reads its stored choice, here)."""
    from pipeline.classify import create_classifier
    from pipeline.config import ClassifierConfig
    from pipeline.stages.backends import load_classifier

    return {
        "create_classifier(name)": create_classifier(MODEL, device="cpu"),
        "build (load_classifier)": load_classifier(ClassifierConfig(name=MODEL, device="cpu")),
        'engine="eager"': create_classifier(MODEL, device="cpu", engine="eager"),
    }


def predict_proba_rate(classifier: Any, photos: list) -> tuple[float, dict]:
    """images/s of `classifier.predict_proba` on `photos` (best of two), and its engine info."""
    from pipeline.classify import engine_info

    classifier.predict_proba(photos[:8])
    best = float("inf")
    for _ in range(2):
        start = time.perf_counter()
        classifier.predict_proba(photos)
        best = min(best, time.perf_counter() - start)
    return len(photos) / best, engine_info(classifier) or {"engine": "eager", "batch_size": 32}


def run_build(root: Path, folder: Path | None, limit: int | None) -> dict[str, float]:
    """Run build_throughput.py of the code at `root` in a fresh process; parse its figures."""
    command = [sys.executable, "benchmarks/build_throughput.py"]
    if folder is not None:
        command += ["--folder", str(folder), "--limit", str(limit)]
    env = {**os.environ, "PYTHONPATH": str(root)}
    done = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, check=False)
    text = done.stdout
    match = re.search(r"build of \w+: (\d+) images, (\d+) counterfactuals in ([\d.]+) s", text)
    if done.returncode or match is None:
        raise RuntimeError(f"{root}: build_throughput failed:\n{text[-2000:]}{done.stderr[-3000:]}")
    out = {"images": float(match[1]), "wall": float(match[3])}
    for role in ("segmenter", "stylizer", "classifier"):
        found = re.search(rf"  {role}\s+([\d.]+) s\s+(\d+) calls,\s+(\d+) images", text)
        assert found is not None, text
        out[role], out[f"{role}_images"] = float(found[1]), float(found[3])
    return out


def limit_of(build: dict[str, float], best_rate: float) -> float:
    """Seconds a build needs at best: classifier passes at the best rate, plus the models with
    no faster engine at their measured time."""
    return build["classifier_images"] / best_rate + build["segmenter"] + build["stylizer"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, default=DEFAULT_FOLDER)
    parser.add_argument("--limits", default="48", help="comma-separated photo counts")
    parser.add_argument("--photos", type=int, default=64)
    parser.add_argument("--before", type=Path, default=Path("/tmp/before"))
    parser.add_argument("--after", type=Path, default=ROOT)
    parser.add_argument("--no-demo", action="store_true")
    parser.add_argument("--no-builds", action="store_true", help="stop after predict_proba")
    args = parser.parse_args()
    import torch

    print(f"torch threads {torch.get_num_threads()}, load average {load()}")
    rates = bare_rates()
    for name, rate in rates.items():
        print(f"  bare {name:<26} {rate:7.1f} images/s")
    best_name = max(rates, key=rates.__getitem__)
    best = rates[best_name]
    ort = {k: v for k, v in rates.items() if k.startswith("onnxruntime")}
    print(f"best attainable: {best_name} at {best:.1f} images/s (load {load()})")
    has_photos = args.folder.is_dir()
    if has_photos and ort:
        photos, ort_best = photos_at_384(args.folder, args.photos), max(ort.values())
        print(f"predict_proba on {len(photos)} photos at 384 px, preprocessing included:")
        for label, classifier in predict_proba_paths().items():
            rate, info = predict_proba_rate(classifier, photos)
            print(
                f"  {label:<24} {rate:7.1f} images/s on {info['engine']}@{info['batch_size']} "
                f"= {rate / ort_best:.2f} x bare ORT at its best batch (target 0.8; "
                f"load {load()})",
                flush=True,
            )
    if args.no_builds:
        return
    builds: list[tuple[str, Path | None, int | None]] = (
        [] if args.no_demo else [("demo", None, None)]
    )
    if has_photos:
        builds += [(f"{n} photos", args.folder, int(n)) for n in args.limits.split(",")]
    else:
        print(f"skipped the photo builds: {args.folder} not found")
    print(
        f"{'build':<10} {'code':<7} {'wall s':>7} {'models s':>8} {'overhead':>8} "
        f"{'limit s':>7} {'limit ratio':>11} {'speed-up':>8}"
    )
    for label, folder, limit in builds:
        results = {}
        for code, root in (("before", args.before), ("after", args.after)):
            results[code] = build = run_build(root, folder, limit)
            models = build["segmenter"] + build["stylizer"] + build["classifier"]
            bound = limit_of(build, best)
            speedup = results["before"]["wall"] / build["wall"]
            print(
                f"{label:<10} {code:<7} {build['wall']:7.1f} {models:8.1f} "
                f"{build['wall'] / models:8.2f} {bound:7.1f} {build['wall'] / bound:11.2f} "
                f"{speedup:8.2f}   (classifier {build['classifier']:.1f} s for "
                f"{build['classifier_images']:.0f} images, segmenter {build['segmenter']:.1f} s, "
                f"stylizer {build['stylizer']:.1f} s; load {load()})",
                flush=True,
            )


if __name__ == "__main__":
    main()
