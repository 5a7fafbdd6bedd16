"""Prefect task runners by name: where the shard tasks of a build run.

- `local` (default): `ThreadPoolTaskRunner(max_workers=1)`, shards one after another in the
  flow's process;
- `dask`: `DaskTaskRunner` on a new `LocalCluster` bound to 127.0.0.1, one worker process per
  CPU core (at most 4), one task at a time per worker, no dashboard;
- `dask:N`: the same with N worker processes; `dask:N:T` also sets T torch threads per worker;
- `dask=ADDRESS`: `DaskTaskRunner(address=ADDRESS)`, an existing scheduler (`dask scheduler`,
  then `dask worker ADDRESS --nthreads 1` on each machine).

Torch threads: Dask starts workers with `OMP_NUM_THREADS=1`, and a classifier's probabilities
depend (in the last bits) on the number of threads. So local workers get, unless `T` is given,
the thread count torch uses in the flow's process: the manifest is then identical to a `local`
build on the same machine. `T = cores / N` is faster when the machine has fewer cores than
`N × threads`, at the price of last-bit differences in the stored probabilities.

Dask workers report their task runs to the Prefect API of the flow (prefect-dask passes the
flow's settings along): run a Prefect server and set `PREFECT_API_URL`. Without one, every worker
process starts its own temporary server (slow, and its records are lost).

Dask needs the `dask` extra (`pip install 'conceptswap[dask]'`: `prefect-dask`,
`dask[distributed]`). Each Dask worker is a separate process, so it loads the models once
(`pipeline.stages.Backends.of` caches them per process) and keeps them for every shard it runs.
Workers on other machines need the same code, the same textures and model weights, and the build
directory on a shared file system (the stages read and write it directly).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)
RUNNER_SPECS = "local | dask | dask:N | dask:N:T | dask=ADDRESS"
MAX_DEFAULT_WORKERS = 4


def default_dask_workers() -> int:
    return max(1, min(os.cpu_count() or 1, MAX_DEFAULT_WORKERS))


def default_torch_threads() -> int:
    """Threads torch uses in this process (what a `local` build computes with)."""
    import torch

    return int(torch.get_num_threads())


@dataclass(frozen=True)
class RunnerSpec:
    kind: str  # "local" or "dask"
    n_workers: int | None = None  # a new LocalCluster of this many worker processes
    torch_threads: int | None = None  # per local Dask worker (None: as in this process)
    address: str | None = None  # an existing Dask scheduler


def parse_runner(spec: str | None) -> RunnerSpec:
    """The runner a spec names; raises ValueError on an unknown spec."""
    text = (spec or "local").strip()
    if text == "local":
        return RunnerSpec("local")
    if text == "dask":
        return RunnerSpec("dask", n_workers=default_dask_workers())
    if text.startswith("dask=") and text[5:].strip():
        return RunnerSpec("dask", address=text[5:].strip())
    numbers = text[5:].split(":") if text.startswith("dask:") else []
    if 1 <= len(numbers) <= 2 and all(n.isdigit() and int(n) >= 1 for n in numbers):
        threads = int(numbers[1]) if len(numbers) == 2 else None
        return RunnerSpec("dask", n_workers=int(numbers[0]), torch_threads=threads)
    raise ValueError(f"unknown task runner {spec!r}; use {RUNNER_SPECS}")


def dask_cluster_kwargs(n_workers: int, torch_threads: int | None = None) -> dict[str, Any]:
    """A LocalCluster of worker processes on 127.0.0.1 (one task at a time), no dashboard."""
    threads = str(torch_threads or default_torch_threads())
    return {
        "n_workers": n_workers,
        "threads_per_worker": 1,
        "processes": True,
        "host": "127.0.0.1",
        "dashboard_address": None,
        "env": {"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads},
    }


def _warn_without_api() -> None:
    from prefect.settings import PREFECT_API_URL

    if not PREFECT_API_URL.value():
        logger.warning(
            "no PREFECT_API_URL: each Dask worker process will start its own temporary Prefect "
            "server (slow; its task runs are not recorded with the flow's). Run `prefect server "
            "start` and set PREFECT_API_URL (docs/operations.md)."
        )


def task_runner_for(spec: str | None) -> Any:
    """A Prefect task runner for `spec` (see the module docstring)."""
    runner = parse_runner(spec)
    if runner.kind == "local":
        from prefect.task_runners import ThreadPoolTaskRunner

        return ThreadPoolTaskRunner(max_workers=1)
    try:
        from prefect_dask import DaskTaskRunner
    except ImportError as error:
        raise ImportError(
            f"task runner {spec!r} needs prefect-dask and dask.distributed: "
            "pip install 'conceptswap[dask]'"
        ) from error
    _warn_without_api()
    if runner.address:
        return DaskTaskRunner(address=runner.address)
    assert runner.n_workers is not None
    kwargs = dask_cluster_kwargs(runner.n_workers, runner.torch_threads)
    return DaskTaskRunner(cluster_class="distributed.LocalCluster", cluster_kwargs=kwargs)


def results_in_order(
    task: Any,
    parameters: Sequence[dict[str, Any]],
    runner: str | None = None,
    resources: dict[str, float] | None = None,
) -> Iterator[Any]:
    """Submit `task` once per parameter dict and yield the results in submission order.

    With `runner=None` the calling flow's own task runner is used (`Flow.with_options(
    task_runner=...)`); otherwise a runner made by `task_runner_for(runner)` is started for
    these tasks only and shut down afterwards (so a deployment can choose it by parameter).
    `resources` (e.g. `{"GPU": 1}`) annotate the tasks for Dask's scheduler; other runners
    ignore them. Must be called from inside a flow run.
    """
    context = nullcontext(None) if runner is None else task_runner_for(runner)
    with context as task_runner, _dask_resources(resources):
        if task_runner is None:
            futures = [task.submit(**params) for params in parameters]
        else:
            futures = [task_runner.submit(task, params) for params in parameters]
        for future in futures:
            yield future.result()


def _dask_resources(resources: dict[str, float] | None) -> Any:
    """`dask.annotate(resources=...)` when Dask is installed and resources are asked for."""
    if not resources:
        return nullcontext()
    try:
        import dask
    except ImportError:
        return nullcontext()
    return dask.annotate(resources=resources)


__all__ = ["RUNNER_SPECS", "RunnerSpec", "parse_runner", "results_in_order", "task_runner_for"]
