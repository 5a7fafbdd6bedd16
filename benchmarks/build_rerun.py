"""Time a fresh build, a cached re-run, and the repair of one deleted counterfactual.

Each run is a separate `conceptswap build` process, as a user runs it, so the figures include
interpreter start, imports and Prefect's temporary server.

    .venv/bin/python benchmarks/build_rerun.py [--config FILE] [--out DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq


def run_build(out: Path, config: str | None) -> float:
    command = [str(Path(sys.executable).with_name("conceptswap")), "build", "--out", str(out)]
    if config:
        command += ["--config", config]
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def file_times(root: Path) -> dict[str, int]:
    return {str(p): p.stat().st_mtime_ns for p in root.rglob("*.png")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=None, help="build config (default: the demo)")
    parser.add_argument("--out", type=Path, default=None, help="build directory (default: temp)")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="conceptswap-bench-")) / "build"
    shutil.rmtree(out, ignore_errors=True)
    os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="conceptswap-prefect-"))

    first = run_build(out, args.config)
    images = pq.read_table(out / "manifests" / "images.parquet").num_rows
    rows = pq.read_table(out / "manifest.parquet").to_pylist()
    before = file_times(out)
    second = run_build(out, args.config)
    untouched = file_times(out) == before
    victim = out / rows[0]["path"]
    victim.unlink()
    third = run_build(out, args.config)
    after = file_times(out)
    rewritten = [p for p, t in after.items() if before.get(p) != t]

    print(f"images: {images}, counterfactuals: {len(rows)}")
    print(f"first build:      {first:7.1f} s  ({images / first:.2f} images/s end to end)")
    print(f"cached re-run:    {second:7.1f} s  ({second / first:.2f} of the first run)")
    print(f"  files untouched by the re-run: {untouched}")
    print(f"repair one file:  {third:7.1f} s  (files rewritten: {len(rewritten)})")


if __name__ == "__main__":
    main()
