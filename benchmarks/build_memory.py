"""Peak memory of a build against its image count: it must not grow with the number of images.

    .venv/bin/python benchmarks/build_memory.py [--counts 100,2000] [--max-side 64]
        [--work-size 160] [--threads N] [--shard-size 32] [--env NAME=VALUE ...]

Synthetic inputs: random crops, flips, colour shifts and sizes (64-256 px) of scikit-image
photos, written as JPEGs to a temporary folder (the first N of them for a build of N). Each
build runs in its own process (its own PREFECT_HOME and temporary Prefect server), so peaks do
not carry over. Reported per build:

* peak RSS of the build process (`resource.getrusage(RUSAGE_SELF).ru_maxrss`);
* its RSS after imports and model loads (before the first image), and after every shard
  (`pipeline.progress` hook, psutil): the figures at 25/50/75/100 % of the images show whether
  memory creeps up as images go by;
* the peak RSS of its child processes (Prefect's temporary server), sampled with psutil.

The config is cheap so that thousands of images finish on 2 CPU cores: `image.max_side` 64,
concepts [background] with the `cam` segmenter at `work_size` 160 (CAM and GrabCut run on 160 px
instead of 320: GrabCut at 320 px takes ~0.6 s per image; at 64 px the CAM finds nothing), one
style image, default shard and batch sizes. Peak memory is what the comparison is
about, not speed; the time per image is printed anyway, with the load average (other processes
on a shared machine slow the build down, not its memory).

`--env` sets variables for the build processes only, e.g. glibc's `MALLOC_MMAP_THRESHOLD_` to
compare allocator settings (see docs/performance.md: with glibc's defaults the RSS of a long
build grows with freed-but-retained heap, not with live data).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

PHOTOS = ("coffee", "chelsea", "astronaut", "rocket", "immunohistochemistry", "colorwheel", "cat")


def make_images(folder: Path, count: int, seed: int = 0) -> None:
    """`count` JPEGs: random crop (40-100 % of each side), flip, colour shift, 64-256 px."""
    import skimage.data
    from PIL import Image

    rng = np.random.default_rng(seed)
    photos = [np.asarray(getattr(skimage.data, name)())[..., :3] for name in PHOTOS]
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        photo = photos[index % len(photos)]
        height, width = photo.shape[:2]
        h, w = (int(side * rng.uniform(0.4, 1.0)) for side in (height, width))
        top, left = int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1))
        crop = photo[top : top + h, left : left + w].astype(np.float32)
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        crop = crop * rng.uniform(0.7, 1.3, size=3) + rng.uniform(-20, 20, size=3)
        image = Image.fromarray(np.clip(crop, 0, 255).astype(np.uint8))
        scale = rng.uniform(64, 256) / max(image.size)
        size = (max(8, round(image.width * scale)), max(8, round(image.height * scale)))
        image.resize(size, Image.Resampling.BILINEAR).save(
            folder / f"img{index:05d}.jpg", quality=90
        )


def rss_mb(process: Any) -> float:
    return process.memory_info().rss / 2**20


def child(args: argparse.Namespace) -> None:
    """One build in this process; prints a JSON line with the measurements."""
    import psutil

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    from flows.build import build_dataset
    from pipeline import progress
    from pipeline.config import BuildConfig
    from pipeline.stages import Backends

    config = {
        "name": "memory",
        "shard_size": args.shard_size,
        "source": {"kind": "folder", "path": args.folder},
        "image": {"max_side": args.max_side},
        "segment": {"concepts": ["background"], "options": {"work_size": args.work_size}},
        "stylize": {"textures": ["snow"], "styles_per_texture": 1},
        "filter": {"require_clean_correct": False},
    }
    resolved = BuildConfig.model_validate(config)
    backends = Backends.of(resolved)  # the models load before the baseline is taken
    backends.segmenter.load()
    backends.stylizer.load()
    backends.classifier.load()
    me = psutil.Process()
    baseline = rss_mb(me)
    samples: list[tuple[int, float]] = []  # (images done, RSS MB) after each shard
    done, total = 0, 0

    def reporter(stage: str, amount: int, count: int | None) -> None:
        nonlocal done, total
        if stage == "images" and count is not None:
            total = count
        if stage == "images" and amount:
            done += amount
            samples.append((done, rss_mb(me)))

    server_peak = 0.0
    phase_peaks = {"shards": 0.0, "manifests": 0.0}  # sampled every 0.1 s
    stop = threading.Event()

    def watch() -> None:
        nonlocal server_peak
        ticks = 0
        while not stop.wait(0.1):
            phase = "manifests" if total and done >= total else "shards"
            phase_peaks[phase] = max(phase_peaks[phase], rss_mb(me))
            ticks += 1
            if ticks % 5:
                continue
            for process in me.children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    server_peak = max(server_peak, rss_mb(process))

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    progress.set_reporter(reporter)
    start = time.perf_counter()
    build_dataset(config=config, out=args.out)
    wall = time.perf_counter() - start
    stop.set()
    watcher.join()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    import pyarrow.parquet as pq

    rows = {
        kind: pq.read_table(Path(args.out) / path).num_rows
        for kind, path in (
            ("masks kept", "manifests/masks.parquet"),
            ("stylized", "manifests/stylized.parquet"),
            ("counterfactuals", "manifest.parquet"),
        )
    }
    rows["masks kept"] = sum(
        pq.read_table(Path(args.out) / "manifests/masks.parquet").column("kept").to_pylist()
    )
    print(
        json.dumps(
            {
                "images": done,
                "wall_s": wall,
                "baseline_mb": baseline,
                "peak_mb": peak,
                "samples": samples,
                "server_peak_mb": server_peak,
                "phase_peaks_mb": phase_peaks,
                "rows": rows,
            }
        )
    )


def quartiles(samples: list[tuple[int, float]], total: int) -> str:
    points = []
    for share in (0.25, 0.5, 0.75, 1.0):
        done, rss = next((s for s in samples if s[0] >= share * total), samples[-1])
        points.append(f"{rss:.0f} MB @ {done}")
    return ", ".join(points)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", default="100,2000", help="image counts, one build each")
    parser.add_argument("--max-side", type=int, default=64)
    parser.add_argument("--work-size", type=int, default=160, help="cam segmenter work_size")
    parser.add_argument("--shard-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="environment of the build processes, e.g. MALLOC_MMAP_THRESHOLD_=1048576",
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    counts = [int(c) for c in args.counts.split(",")]
    scratch = Path(tempfile.mkdtemp(prefix="conceptswap-memory-"))
    source = scratch / "all"
    start = time.perf_counter()
    make_images(source, max(counts))
    print(f"{max(counts)} synthetic images in {time.perf_counter() - start:.1f} s -> {source}")
    from build_throughput import machine_line

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    print(machine_line())
    print(
        f"config: max_side {args.max_side}, concepts [background], cam work_size "
        f"{args.work_size}, 1 style image (snow/0), shard_size {args.shard_size}"
        + (f"; build environment: {' '.join(args.env)}" if args.env else "")
    )
    files = sorted(source.iterdir())
    for count in counts:
        folder = scratch / f"in-{count}"
        folder.mkdir()
        for path in files[:count]:
            (folder / path.name).symlink_to(path)
        env = {
            **os.environ,
            "PREFECT_HOME": tempfile.mkdtemp(prefix="conceptswap-prefect-"),
            "PREFECT_LOGGING_LEVEL": "WARNING",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "DO_NOT_TRACK": "1",
            "HF_HUB_OFFLINE": "1",
            **dict(item.split("=", 1) for item in args.env),
        }
        command = [
            sys.executable,
            __file__,
            "--child",
            "--folder",
            str(folder),
            "--out",
            str(scratch / f"build-{count}"),
            "--max-side",
            str(args.max_side),
            "--work-size",
            str(args.work_size),
            "--shard-size",
            str(args.shard_size),
        ]
        if args.threads:
            command += ["--threads", str(args.threads)]
        result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            print(f"build of {count} images failed:\n{result.stderr[-3000:]}")
            sys.exit(1)
        figures = json.loads(result.stdout.strip().splitlines()[-1])
        print(
            f"{count:5d} images: peak RSS {figures['peak_mb']:.0f} MB (after imports and model "
            f"loads: {figures['baseline_mb']:.0f} MB); RSS after shards: "
            f"{quartiles(figures['samples'], count)}"
        )
        phases = figures["phase_peaks_mb"]
        made = ", ".join(f"{n} {kind}" for kind, n in figures["rows"].items())
        print(
            f"        sampled peak while shards run {phases['shards']:.0f} MB, while manifests "
            f"and report are written {phases['manifests']:.0f} MB; Prefect server peak "
            f"{figures['server_peak_mb']:.0f} MB; made {made}; {figures['wall_s']:.0f} s "
            f"({figures['wall_s'] / count:.2f} s/image)"
        )
    print(f"load average at the end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
