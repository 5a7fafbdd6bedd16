"""Incremental rebuild: add one texture to a finished build's config and build again.

    .venv/bin/python benchmarks/incremental_rebuild.py [--threads N] [--max-side 384]
        [--textures snow,wood] [--add brick] [--styles-per-texture 1]

A build of the built-in samples with `--textures`, then the same config with `--add` appended,
into the same directory, then once more unchanged. For each run: wall time and the models'
calls, counted by wrapping the loaded models' methods (see `build_throughput.BuildTimer`). The
rebuild must make no segmenter call, stylize only for the new texture's style images and leave
every existing file untouched; the last run must call no model at all. Everything runs in this
process after a one-image warm-up build (Prefect's temporary server, model loads), so the times
are steady state; the load average is printed because other processes change them.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from build_throughput import MODEL_METHODS, BuildTimer, machine_line

FILE_KINDS = ("images", "masks", "stylized", "counterfactuals")


def snapshot(root: Path) -> dict[str, int]:
    return {
        str(p.relative_to(root)): p.stat().st_mtime_ns
        for kind in FILE_KINDS
        for p in (root / kind).rglob("*.png")
    }


def describe(label: str, wall: float, timer: BuildTimer) -> None:
    calls = ", ".join(
        f"{role} {timer.calls[role]} calls / {timer.items[role]} images" for role in MODEL_METHODS
    )
    print(f"{label}: {wall:.1f} s; {calls}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--max-side", type=int, default=384)
    parser.add_argument("--concepts", default="object,background")
    parser.add_argument("--textures", default="snow,wood")
    parser.add_argument("--add", default="brick", help="the texture added for the rebuild")
    parser.add_argument("--styles-per-texture", type=int, default=1)
    args = parser.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    import pyarrow.parquet as pq

    from flows.build import build_dataset

    base: dict[str, Any] = {
        "name": "incremental",
        "source": {"kind": "samples"},
        "image": {"max_side": args.max_side},
        "segment": {"concepts": args.concepts.split(",")},
        "stylize": {
            "textures": args.textures.split(","),
            "styles_per_texture": args.styles_per_texture,
        },
        "filter": {"require_clean_correct": False},
    }
    textures = [*args.textures.split(","), args.add]
    added = {**base, "stylize": {**base["stylize"], "textures": textures}}
    scratch = Path(tempfile.mkdtemp(prefix="conceptswap-bench-"))
    out = scratch / "build"
    timer = BuildTimer()
    with timer.installed():
        warmup = {**base, "source": {"kind": "samples", "names": ["camera"]}}
        build_dataset(config=warmup, out=str(scratch / "warmup"))

        timer.reset()
        start = time.perf_counter()
        build_dataset(config=base, out=str(out))
        first = time.perf_counter() - start
        rows_before = pq.read_table(out / "manifest.parquet").num_rows
        print(machine_line())
        describe(f"first build ({', '.join(base['stylize']['textures'])})", first, timer)

        before = snapshot(out)
        timer.reset()
        start = time.perf_counter()
        build_dataset(config=added, out=str(out))
        rebuild = time.perf_counter() - start
        after = snapshot(out)
        describe(f"rebuild with {args.add} added", rebuild, timer)
        rows_after = pq.read_table(out / "manifest.parquet").num_rows
        changed = [p for p in before if after.get(p) != before[p]]
        new = [p for p in after if p not in before]
        new_kinds = sorted({p.split("/")[0] for p in new})
        print(f"  rebuild / first build: {rebuild / first:.2f}")
        print(f"  segmenter calls: {timer.calls['segmenter']} (must be 0)")
        print(
            f"  stylizer calls: {timer.calls['stylizer']}, for style images "
            f"{sorted(timer.styles)} (must all be {args.add}/*)"
        )
        print(
            f"  classifier: {timer.items['classifier']} images for "
            f"{rows_after - rows_before} new counterfactuals ({rows_before} existed before)"
        )
        print(
            f"  files: {len(new)} new ({', '.join(new_kinds)}), "
            f"{len(changed)} of {len(before)} existing rewritten"
        )
        ok = timer.calls["segmenter"] == 0 and all(
            s.startswith(f"{args.add}/") for s in timer.styles
        )

        timer.reset()
        start = time.perf_counter()
        build_dataset(config=added, out=str(out))
        again = time.perf_counter() - start
        describe("unchanged re-run", again, timer)
        ok = ok and sum(timer.calls[role] for role in MODEL_METHODS) == 0
    print(f"incremental rebuild as specified: {'yes' if ok else 'NO'}")
    shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
