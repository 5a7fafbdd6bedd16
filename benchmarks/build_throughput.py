"""Build throughput (images/s) and overhead: build wall time / time spent in the models.

    .venv/bin/python benchmarks/build_throughput.py [--folder PATH --limit N] [--threads N]
        [--max-side 384] [--concepts object,background] [--textures snow,wood,brick,grass]
        [--styles-per-texture N]

Everything runs in this process. The loaded models' methods are wrapped with
`time.perf_counter` timers (`Segmenter.segment`, `Stylizer.stylize`,
`Classifier.predict_proba` and `predict_proba_tensor`, through `flows.build.load_*`); calls
nested in another model call (the `cam` segmenter shares the classifier) count once, in the
outer call. The classifier's preprocessing, done one batch ahead in the compositing thread, is
outside its timer (it overlaps the model). The stage functions
(`ingest_shard`, `segment_shard`, ...) are timed the same way, so the wall time splits into

* models: the three methods above;
* stages outside the models: decoding, resizing, PNG encode/decode, compositing, Parquet parts;
* flow: Prefect task runs and state round trips, `build.yaml`, consolidated manifests, report.

overhead ratio = build wall time / model time, for the same images in the same run; the target
is ≤ 1.25. A warm-up build of one image runs first (starts Prefect's temporary server, imports,
loads the models and hashes their weights), so the timed build measures steady state; its time
is printed separately. Sources: the built-in samples (default) or `--folder` (e.g.
`../shared/datasets/imagenet-samples/images`, skipped with a message when absent), whose first
`--limit` files (sorted) are linked into a temporary folder. The device (CPU/CUDA), torch threads,
batch sizes and the load average are printed: on a shared machine other processes change these
figures.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="conceptswap-prefect-"))
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

MODEL_METHODS = {  # per role, the methods timed (a call nested in another counts once)
    "segmenter": ("segment",),
    "stylizer": ("stylize",),
    "classifier": ("predict_proba", "predict_proba_tensor"),
}
LOADERS = ("segmenter", "stylizer", "classifier")  # the `Backends` attributes whose models load
STAGES = ("ingest_shard", "segment_shard", "stylize_shard", "counterfactual_shard")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


class BuildTimer:
    """perf_counter timers around the models' methods and the stage functions of a build."""

    def __init__(self) -> None:
        self.seconds: Counter[str] = Counter()  # per model role and per stage
        self.calls: Counter[str] = Counter()
        self.items: Counter[str] = Counter()  # images passed to each model
        self.styles: Counter[str] = Counter()  # style images loaded for a stylize batch
        self.cpu_seconds: Counter[str] = Counter()  # per stage, CPU time of all threads
        self._depth = 0
        self._wrapped: set[int] = set()

    def _timed_model(self, role: str, method: Callable[..., Any]) -> Callable[..., Any]:
        def timed(images: Any, *args: Any, **kwargs: Any) -> Any:
            outer = self._depth == 0
            self._depth += 1
            start = time.perf_counter()
            try:
                return method(images, *args, **kwargs)
            finally:
                self._depth -= 1
                if outer:
                    self.seconds[role] += time.perf_counter() - start
                    self.calls[role] += 1
                    self.items[role] += len(images)

        return timed

    def instrument(self, role: str, model: Any) -> Any:
        """Wrap the model's method once (the loaders cache one instance per process)."""
        if id(model) not in self._wrapped:
            for name in MODEL_METHODS[role]:
                if hasattr(model, name):
                    setattr(model, name, self._timed_model(role, getattr(model, name)))
            self._wrapped.add(id(model))
        return model

    @contextmanager
    def installed(self) -> Iterator[BuildTimer]:
        """Time the models each build's `Backends` loads, the stage functions `run_shard` calls
        and the style images decoded, for the duration of the block."""
        import dataclasses

        import pipeline.stages as stages
        import pipeline.stages.backends as backends_module

        backends_class = backends_module.Backends
        saved_of = backends_class.__dict__["of"]
        saved_stages = {name: getattr(stages, name) for name in STAGES}
        saved_load_style = backends_module.load_style
        timed_backends: set[int] = set()

        def loader(role: str, original: Callable[..., Any]) -> Callable[..., Any]:
            return lambda: self.instrument(role, original())

        def of(config: Any) -> Any:
            backends = saved_of.__func__(backends_class, config)
            if id(backends) not in timed_backends:
                for role in LOADERS:
                    stage_backend = getattr(backends, role)
                    timed = dataclasses.replace(
                        stage_backend, load=loader(role, stage_backend.load)
                    )
                    setattr(backends, role, timed)
                timed_backends.add(id(backends))
            return backends

        def stage(name: str, original: Callable[..., Any]) -> Callable[..., Any]:
            def timed(*args: Any, **kwargs: Any) -> Any:
                start, cpu_start = time.perf_counter(), time.process_time()
                try:
                    return original(*args, **kwargs)
                finally:
                    self.seconds[name] += time.perf_counter() - start
                    self.cpu_seconds[name] += time.process_time() - cpu_start
                    self.calls[name] += 1

            return timed

        def load_style(style: Any) -> Any:
            self.styles[style.style_id] += 1
            return saved_load_style(style)

        backends_class.of = staticmethod(of)  # type: ignore[method-assign,assignment]
        for name in STAGES:
            setattr(stages, name, stage(name, saved_stages[name]))
        backends_module.load_style = load_style
        try:
            yield self
        finally:
            backends_class.of = saved_of  # type: ignore[method-assign]
            for name, original in saved_stages.items():
                setattr(stages, name, original)
            backends_module.load_style = saved_load_style

    def reset(self) -> None:
        self.seconds.clear()
        self.calls.clear()
        self.items.clear()
        self.styles.clear()

    @property
    def model_seconds(self) -> float:
        return sum(self.seconds[role] for role in MODEL_METHODS)

    @property
    def stage_seconds(self) -> float:
        return sum(self.seconds[name] for name in STAGES)


def machine_line() -> str:
    """CPU model, cores, load average, torch device and threads."""
    import torch

    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    device = f"CUDA ({torch.cuda.get_device_name(0)})" if torch.cuda.is_available() else "CPU"
    return (
        f"machine: {cpu}, {os.cpu_count()} cores, load average {load}; device: {device}; "
        f"torch threads: {torch.get_num_threads()}"
    )


def linked_folder(folder: Path, limit: int | None) -> Path:
    """A temp folder with symlinks to the first `limit` images of `folder` (sorted)."""
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    target = Path(tempfile.mkdtemp(prefix="conceptswap-bench-images-"))
    for path in files[:limit]:
        (target / path.name).symlink_to(path.resolve())
    return target


def build_config(args: argparse.Namespace, source: dict[str, Any]) -> dict[str, Any]:
    stylize: dict[str, Any] = {"textures": args.textures.split(",")}
    if args.styles_per_texture:
        stylize["styles_per_texture"] = args.styles_per_texture
    return {
        "name": "throughput",
        "source": source,
        "image": {"max_side": args.max_side},
        "segment": {"concepts": args.concepts.split(",")},
        "stylize": stylize,
        "filter": {"require_clean_correct": False},
    }


def print_run(label: str, wall: float, images: int, timer: BuildTimer, rows: int) -> None:
    model = timer.model_seconds
    stages = timer.stage_seconds
    print(f"{label}: {images} images, {rows} counterfactuals in {wall:.1f} s")
    print(f"  throughput: {images / wall:.2f} images/s ({rows / wall:.1f} counterfactuals/s)")
    for role in MODEL_METHODS:
        print(
            f"  {role:<10} {timer.seconds[role]:7.1f} s  {timer.calls[role]:4d} calls, "
            f"{timer.items[role]:5d} images"
        )
    for name in STAGES:
        seconds, cpu = timer.seconds[name], timer.cpu_seconds[name]
        busy = cpu / seconds if seconds else 0.0
        print(f"  {name:<21} {seconds:6.1f} s wall, {cpu:6.1f} s CPU ({busy:.2f} cores busy)")
    print(f"  models total        {model:7.1f} s  ({model / wall:.0%} of the wall time)")
    print(f"  stages, not models  {stages - model:7.1f} s  (decode, PNG, compositing, parts)")
    print(f"  flow                {wall - stages:7.1f} s  (Prefect, build.yaml, manifests, report)")
    ratio = wall / model if model else float("inf")
    verdict = "meets" if ratio <= 1.25 else "misses"
    print(f"  overhead ratio wall / models: {ratio:.2f} ({verdict} the target of 1.25)")


def run(args: argparse.Namespace, source: dict[str, Any], warmup: dict[str, Any]) -> None:
    import pyarrow.parquet as pq

    from flows.build import build_dataset

    config = build_config(args, source)
    scratch = Path(tempfile.mkdtemp(prefix="conceptswap-bench-"))
    timer = BuildTimer()
    with timer.installed():
        start = time.perf_counter()
        build_dataset(config={**config, "source": warmup}, out=str(scratch / "warmup"))
        cold = time.perf_counter() - start
        timer.reset()
        start = time.perf_counter()
        build_dataset(config=config, out=str(scratch / "build"))
        wall = time.perf_counter() - start
    images = pq.read_table(scratch / "build" / "manifests" / "images.parquet").num_rows
    rows = pq.read_table(scratch / "build" / "manifest.parquet").num_rows
    from pipeline.config import BuildConfig

    resolved = BuildConfig.model_validate(config)
    print(machine_line())
    print(
        f"config: max_side {resolved.image.max_side}, concepts {resolved.segment.concepts}, "
        f"textures {resolved.stylize.textures} x {resolved.stylize.styles_per_texture or 'all'} "
        f"style images, shard_size {resolved.shard_size}; batch sizes: segment "
        f"{resolved.segment.batch_size}, stylize {resolved.stylize.batch_size}, classifier "
        f"{resolved.classifier.batch_size} (device setting {resolved.classifier.device!r})"
    )
    from pipeline.stages.backends import Backends

    engine = getattr(Backends.of(resolved).classifier.load(), "engine_info", None)  # loaded above
    if engine is not None:
        print(
            f"classifier engine: {engine.engine} at batch {engine.batch_size} "
            f"(requested {engine.requested}; {engine.reason})"
        )
    print(f"warm-up (1 image: Prefect server, model loads, weight hashes): {cold:.1f} s")
    print_run(f"build of {source['kind']}", wall, images, timer, rows)
    shutil.rmtree(scratch, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, default=None, help="image folder (recursive)")
    parser.add_argument("--limit", type=int, default=None, help="first N files of --folder")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--max-side", type=int, default=384)
    parser.add_argument("--concepts", default="object,background")
    parser.add_argument("--textures", default="snow,wood,brick,grass")
    parser.add_argument("--styles-per-texture", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    warmup = {"kind": "samples", "names": ["camera"]}
    if args.folder is None:
        run(args, {"kind": "samples"}, warmup)
        return
    if not args.folder.is_dir():
        print(f"skipped: image folder {args.folder} not found")
        sys.exit(0)
    folder = linked_folder(args.folder, args.limit)
    try:
        run(args, {"kind": "folder", "path": str(folder)}, warmup)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
