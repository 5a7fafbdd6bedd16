"""Stylized images per second for each stylizer, on CPU (and CUDA when present).

    .venv/bin/python benchmarks/stylize_throughput.py [--size 256] [--threads N] [--gatys-steps N]

* `texture`: the training-free default (numpy/OpenCV, CPU only), batch sizes 1 and 16.
* `adain`: the release architecture with random weights (speed does not depend on the weights),
  `content_size` = `style_size` = size, batch sizes 1 and 16.
* `gatys`: one image at batch 1 with the default steps (or --gatys-steps), default encoder.

Inputs are `size` x `size` crops of scikit-image photos; the style is the library's wood/0
(`--style` for another). Each row is timed after one warm-up call, over at least
`--min-seconds` and two calls. The load average is printed because other processes on a shared
machine change these figures.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch
from skimage import data

from pipeline.stylize import Stylizer, create_stylizer
from pipeline.stylize.library import load_style, load_texture_library


def photos(size: int, count: int) -> list[np.ndarray]:
    """`count` different size x size RGB crops of scikit-image's colour photos."""
    sources = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
    out = []
    for index in range(count):
        image = sources[index % len(sources)]
        height, width = image.shape[:2]
        side = min(height, width) - 8 * (index // len(sources))
        top, left = (height - side) // 2, (width - side) // 2
        crop = image[top : top + side, left : left + side]
        out.append(cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA))
    return out


def throughput(
    stylizer: Stylizer,
    images: list[np.ndarray],
    style: np.ndarray,
    batch: int,
    min_seconds: float,
    min_calls: int = 2,
) -> float:
    """Images per second over repeated `stylize` calls of `batch` images, after a warm-up."""
    chunk = images[:batch]
    if min_calls > 1:
        stylizer.stylize(chunk, style, seed=0)  # warm-up: style features, kernels, caches
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    done, calls, start = 0, 0, time.perf_counter()
    while calls < min_calls or time.perf_counter() - start < min_seconds:
        stylizer.stylize(chunk, style, seed=calls)
        sync()
        done += len(chunk)
        calls += 1
    return done / (time.perf_counter() - start)


def row(name: str, device: str, batch: int, rate: float, note: str = "") -> None:
    per = 1.0 / rate
    print(f"{name:<8} {device:<6} {batch:>5} {rate:>10.2f} {per:>10.3f}  {note}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--gatys-steps", type=int, default=None, help="default: the stylizer's")
    parser.add_argument("--min-seconds", type=float, default=3.0)
    parser.add_argument("--skip", nargs="*", default=[], choices=["texture", "adain", "gatys"])
    parser.add_argument("--style", default="wood/0", help="style image, texture/index")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = [
            line.split(":", 1)[1].strip()
            for line in cpuinfo.read_text().splitlines()
            if line.startswith("model name")
        ]
        cpu = names[0] if names else cpu
    print(
        f"machine: {os.cpu_count()} CPU cores ({cpu}), torch {torch.__version__}, "
        f"{torch.get_num_threads()} torch threads, CUDA: {torch.cuda.is_available()}"
    )
    print(f"load average at start: {os.getloadavg()[0]:.2f}")
    texture = args.style.split("/")[0]
    matches = [s for s in load_texture_library().styles([texture]) if s.style_id == args.style]
    if not matches:
        parser.error(f"--style {args.style}: no such style image in the texture library")
    style_record = matches[0]
    style = load_style(style_record)
    images = photos(args.size, 16)
    print(
        f"inputs: {len(images)} x {args.size}x{args.size} RGB; style {style_record.style_id} "
        f"{style.shape[1]}x{style.shape[0]}\n"
    )
    print(f"{'stylizer':<8} {'device':<6} {'batch':>5} {'images/s':>10} {'s/image':>10}")

    factories: list[tuple[str, Callable[[str], Stylizer], list[str], list[int]]] = [
        ("texture", lambda _device: create_stylizer("texture"), ["cpu"], [1, 16]),
        (
            "adain",
            lambda device: create_stylizer(
                "adain",
                pretrained=False,
                content_size=args.size,
                style_size=args.size,
                device=device,
                batch_size=16,
            ),
            devices,
            [1, 16],
        ),
    ]
    gatys_options = {"size": args.size}
    if args.gatys_steps:
        gatys_options["steps"] = args.gatys_steps
    factories.append(
        (
            "gatys",
            lambda device: create_stylizer("gatys", device=device, **gatys_options),
            devices,
            [1],
        )
    )
    for name, make, on, batches in factories:
        if name in args.skip:
            continue
        for device in on:
            stylizer = make(device)
            for batch in batches:
                if name == "gatys":  # one image, after its style targets are computed
                    stylizer.style_targets(style)  # type: ignore[attr-defined]
                    rate = throughput(stylizer, images, style, batch, 0.0, min_calls=1)
                    note = f"steps={stylizer.steps}, one image"  # type: ignore[attr-defined]
                else:
                    rate = throughput(stylizer, images, style, batch, args.min_seconds)
                    note = ""
                row(name, device if name != "texture" else "cpu*", batch, rate, note)
    print("\n* texture runs in numpy/OpenCV on the CPU whatever the device")
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
