"""Build throughput of `build_dataset` with the local runner and with 1 and 2 Dask workers.

    .venv/bin/python benchmarks/dask_throughput.py                       # 6 sample photos
    .venv/bin/python benchmarks/dask_throughput.py --folder ../shared/datasets/imagenet-samples \\
        --limit 24 --workers 1 2 4 --threads 1

Every build goes to a fresh directory (nothing is reused from an earlier build). For each worker
count a `LocalCluster` is started first (not timed), then two builds run on it: `cold` includes
each worker loading its models, `warm` (a second fresh build on the same workers) is the steady
state. The tasks column counts the tasks the Dask workers executed (one `shard` task per shard
of `--shard-size` images).

A temporary Prefect server (`prefect_test_harness`) gives the flow and the Dask workers one API.
Needs the `dask` extra (`prefect-dask`, `dask[distributed]`).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--folder", help="image folder (default: the built-in sample photos)")
    parser.add_argument("--limit", type=int, default=None, help="at most this many images")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads per worker (default: as here)"
    )
    parser.add_argument("--shard-size", type=int, default=1)
    parser.add_argument("--max-side", type=int, default=160)
    parser.add_argument("--textures", nargs="+", default=["snow", "wood"])
    parser.add_argument("--no-local", action="store_true", help="skip the local-runner baseline")
    return parser.parse_args()


def limited_folder(folder: Path, limit: int, scratch: Path) -> Path:
    """A copy of the first `limit` images of `folder` (sorted, sub-folders kept for labels)."""
    from pipeline.sources.folder import IMAGE_SUFFIXES

    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    target = scratch / "images"
    for path in files[:limit]:
        copy = target / path.relative_to(folder)
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, copy)
    return target


def build_config(args: argparse.Namespace, scratch: Path) -> dict[str, Any]:
    source: dict[str, Any] = {"kind": "samples"}
    if args.folder:
        folder = Path(args.folder).resolve()
        if args.limit:
            folder = limited_folder(folder, args.limit, scratch)
        source = {"kind": "folder", "path": str(folder)}
    elif args.limit:
        from pipeline.sources.samples import SAMPLES

        source["names"] = list(SAMPLES)[: args.limit]
    return {
        "name": "dask-throughput",
        "shard_size": args.shard_size,
        "source": source,
        "image": {"max_side": args.max_side},
        "stylize": {"textures": args.textures, "styles_per_texture": 1},
        "filter": {"require_clean_correct": False},
    }


def timed_build(flow: Any, config: dict[str, Any], scratch: Path) -> tuple[float, int, int]:
    """Seconds, images and counterfactual rows of one build into a fresh directory."""
    import pyarrow.parquet as pq

    out = Path(tempfile.mkdtemp(prefix="build-", dir=scratch))
    start = time.perf_counter()
    manifest = Path(flow(config=config, out=str(out)))
    seconds = time.perf_counter() - start
    images = pq.read_metadata(out / "manifests" / "images.parquet").num_rows
    rows = pq.read_metadata(manifest).num_rows
    shutil.rmtree(out, ignore_errors=True)
    return seconds, images, rows


def executed_tasks(address: str) -> int:
    from distributed import Client

    with Client(address) as client:
        counts = client.run(lambda dask_worker: dask_worker.state.executed_count)
    return int(sum(counts.values()))


def main() -> None:
    args = parse_args()
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="prefect-home-"))
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    import torch
    from distributed import LocalCluster
    from prefect.testing.utilities import prefect_test_harness

    from flows.build import build_dataset
    from flows.runners import dask_cluster_kwargs, task_runner_for

    scratch = Path(tempfile.mkdtemp(prefix="dask-throughput-"))
    config = build_config(args, scratch)
    threads = args.threads or torch.get_num_threads()
    print(f"cpu cores: {os.cpu_count()}, torch threads here: {torch.get_num_threads()}")
    source = config["source"].get("path") or "samples"
    print(f"source: {source}, shard_size={args.shard_size}, textures={args.textures}")
    print(f"{'runner':<22}{'run':<6}{'seconds':>9}{'images':>8}{'rows':>7}{'img/s':>8}{'tasks':>7}")

    def report(name: str, run: str, result: tuple[float, int, int], tasks: str = "-") -> None:
        seconds, images, rows = result
        rate = images / seconds if seconds else float("nan")
        print(
            f"{name:<22}{run:<6}{seconds:>9.1f}{images:>8}{rows:>7}{rate:>8.2f}{tasks:>7}",
            flush=True,
        )

    saved_environ = dict(os.environ)
    try:
        with prefect_test_harness(server_startup_timeout=120):
            if not args.no_local:
                local = build_dataset.with_options(task_runner=task_runner_for("local"))
                report("local", "cold", timed_build(local, config, scratch))
                report("local", "warm", timed_build(local, config, scratch))
            for workers in args.workers:
                kwargs = dask_cluster_kwargs(workers, torch_threads=threads)
                with LocalCluster(**kwargs) as cluster:
                    runner = task_runner_for(f"dask={cluster.scheduler_address}")
                    flow = build_dataset.with_options(task_runner=runner)
                    name = f"dask {workers}w x {threads}t"
                    for run in ("cold", "warm"):
                        before = executed_tasks(cluster.scheduler_address)
                        result = timed_build(flow, config, scratch)
                        tasks = executed_tasks(cluster.scheduler_address) - before
                        report(name, run, result, str(tasks))
                os.environ.clear()  # a Dask nanny sets OMP_NUM_THREADS=1 & co. here
                os.environ.update(saved_environ)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
