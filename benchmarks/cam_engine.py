"""The `cam` segmenter's time per image with its no-gradient passes on torch and on ONNX Runtime.

    nice -n 10 .venv/bin/python benchmarks/cam_engine.py [--folder PATH] [--count 8]
        [--mask-model timm:tf_efficientnet_lite2] [--rounds 2]

`engine: torch` and `engine: auto` (ONNX Runtime for Grad-CAM's feature pass and the crop
classifications, `pipeline/segment/cam_engine.py`) on the same `--count` photos resized to
384 px, for `object`+`background` (Grad-CAM + GrabCut) and `wheel`+`cup` (crops), interleaved
in each round so that a change of load hits both. Prints wall and CPU seconds per image per
round, the load average, and the smallest mask IoU between the two engines (1.0 = identical).
Photos: `../shared/datasets/imagenet-samples/images` by default (skipped with a message where
absent; measurement only).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
from PIL import Image

DEFAULT_FOLDER = Path(__file__).resolve().parents[2] / "shared/datasets/imagenet-samples/images"
CONFIGS = {"object+background": ("object", "background"), "wheel+cup": ("wheel", "cup")}
ENGINES = ("torch", "auto")


def load() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, default=DEFAULT_FOLDER)
    parser.add_argument("--count", type=int, default=8)
    parser.add_argument("--mask-model", default="timm:tf_efficientnet_lite2")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    if not args.folder.is_dir():
        print(f"skipped: {args.folder} not found")
        return 0
    from pipeline.classify import create_classifier
    from pipeline.imageio import resize_max_side
    from pipeline.segment.cam import CamSegmenter

    files = sorted(args.folder.iterdir())[: args.count]
    images = [resize_max_side(np.asarray(Image.open(p).convert("RGB")), 384) for p in files]
    classifier = create_classifier(args.mask_model, device="cpu")
    segmenters = {}
    for name, concepts in CONFIGS.items():
        for engine in ENGINES:
            start = time.perf_counter()
            segmenter = CamSegmenter(concepts, classifier=classifier, engine=engine)
            segmenter.segment(images[:1], [None])  # exports / checks on first use
            print(
                f"first call {name} {engine}: {time.perf_counter() - start:.1f} s "
                f"({segmenter.engine_info['reason']})"
            )
            segmenters[name, engine] = segmenter
    results = {}
    for round_ in range(args.rounds):
        print(f"round {round_ + 1}, load average {load()}")
        for name in CONFIGS:
            for engine in ENGINES:
                wall, cpu = time.perf_counter(), time.process_time()
                results[name, engine] = segmenters[name, engine].segment(
                    images, [None] * len(images)
                )
                wall = (time.perf_counter() - wall) / len(images)
                cpu = (time.process_time() - cpu) / len(images)
                print(f"  {name:<18} {engine:<5} {wall:.3f} s/image wall, {cpu:.3f} s/image CPU")
    for name in CONFIGS:
        ious = [
            float((x.mask & y.mask).sum() / max(1, (x.mask | y.mask).sum()))
            for a, b in zip(results[name, "auto"], results[name, "torch"], strict=True)
            for x, y in zip(a, b, strict=True)
        ]
        print(f"{name}: {len(ious)} masks, smallest IoU auto vs torch {min(ious, default=1.0):.4f}")
    print(f"load average at the end {load()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
