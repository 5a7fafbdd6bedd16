"""Scale-out: `build_dataset` on a Dask `LocalCluster` gives the same manifest as the local runner.

The flow submits one `shard` task per shard; on the cluster they run in the two worker
processes, and the manifests must be identical to a local build's (`table_digest`).
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from prefect import flow, task

from flows.runners import RunnerSpec, parse_runner, results_in_order, task_runner_for

HAS_DASK = importlib.util.find_spec("prefect_dask") is not None
CONFIG = {
    "name": "dask",
    "shard_size": 1,  # two shards, so two workers have something to share
    "source": {"kind": "samples", "names": ["coffee", "chelsea"]},
    "image": {"max_side": 96},
    "stylize": {"textures": ["snow"], "styles_per_texture": 1},
    "filter": {"require_clean_correct": False},
}
DASK_ENVIRON = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MALLOC_TRIM_THRESHOLD_",
    "PYTHONHASHSEED",
)
MANIFESTS = (
    "manifest.parquet",
    "manifests/images.parquet",
    "manifests/masks.parquet",
    "manifests/stylized.parquet",
)


def test_runner_specs() -> None:
    assert parse_runner(None) == RunnerSpec("local")
    assert parse_runner("local") == RunnerSpec("local")
    assert parse_runner("dask:3") == RunnerSpec("dask", n_workers=3)
    assert parse_runner("dask:2:1") == RunnerSpec("dask", n_workers=2, torch_threads=1)
    assert parse_runner("dask=tcp://10.0.0.5:8786") == RunnerSpec(
        "dask", address="tcp://10.0.0.5:8786"
    )
    default = parse_runner("dask")
    assert default.kind == "dask" and default.n_workers is not None and default.n_workers >= 1
    for bad in ("threads", "dask:0", "dask=", "dask:x", "dask:1:2:3"):
        with pytest.raises(ValueError, match="unknown task runner"):
            parse_runner(bad)
    assert type(task_runner_for("local")).__name__ == "ThreadPoolTaskRunner"


@pytest.mark.skipif(not HAS_DASK, reason="prefect-dask is not installed (extra `dask`)")
def test_dask_runner_specs() -> None:
    import torch
    from prefect_dask import DaskTaskRunner

    runner = task_runner_for("dask:2")
    assert isinstance(runner, DaskTaskRunner)
    assert runner.cluster_kwargs["n_workers"] == 2
    assert runner.cluster_kwargs["host"] == "127.0.0.1"
    assert runner.cluster_kwargs["env"]["OMP_NUM_THREADS"] == str(torch.get_num_threads())
    assert task_runner_for("dask:2:1").cluster_kwargs["env"]["OMP_NUM_THREADS"] == "1"
    assert task_runner_for("dask=tcp://127.0.0.1:8786").address == "tcp://127.0.0.1:8786"


@pytest.fixture
def one_torch_thread():
    """Torch on one thread here, as on the cluster's workers: the same numbers either way."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def warm_worker() -> None:
    """What a long-lived worker has done already: import the stages, load the build's models."""
    from pipeline.config import BuildConfig
    from pipeline.stages.models import load_classifier, load_segmenter, load_stylizer

    config = BuildConfig.model_validate(CONFIG)
    load_classifier(config.classifier)
    load_segmenter(config.segment, config.classifier)
    load_stylizer(config.stylize)


@pytest.fixture(scope="module")
def cluster_address() -> Iterator[str]:
    """One LocalCluster (2 worker processes, 1 torch thread each) for this module's tests.

    The workers start loading the models at once (in the background, while the local build
    runs), as the workers of a long-lived cluster would have.
    """
    from distributed import Client, LocalCluster

    from flows.runners import dask_cluster_kwargs

    saved = {name: os.environ.get(name) for name in DASK_ENVIRON}
    try:
        with (
            LocalCluster(**dask_cluster_kwargs(2, torch_threads=1)) as cluster,
            Client(cluster.scheduler_address) as client,
        ):
            client.run(warm_worker, wait=False, on_error="ignore")
            yield cluster.scheduler_address
    finally:  # a Dask nanny writes OMP_NUM_THREADS=1 & co. into this process's os.environ
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def executed_on_workers(address: str) -> int:
    from distributed import Client

    with Client(address) as client:
        counts = client.run(lambda dask_worker: dask_worker.state.executed_count)
    return int(sum(counts.values()))


@task
def worker_pid(index: int) -> tuple[int, int]:
    return index, os.getpid()


@pytest.mark.skipif(not HAS_DASK, reason="prefect-dask is not installed (extra `dask`)")
@pytest.mark.usefixtures("prefect_harness")
def test_results_in_order_runs_tasks_on_dask_worker_processes(cluster_address: str) -> None:
    @flow
    def fan_out(runner: str) -> list[tuple[int, int]]:
        return list(results_in_order(worker_pid, [{"index": i} for i in range(4)], runner))

    results = fan_out(f"dask={cluster_address}")
    assert [index for index, _ in results] == [0, 1, 2, 3]
    assert all(pid != os.getpid() for _, pid in results)
    assert [index for index, _ in fan_out("local")] == [0, 1, 2, 3]


@pytest.mark.slow
@pytest.mark.skipif(not HAS_DASK, reason="prefect-dask is not installed (extra `dask`)")
@pytest.mark.usefixtures("prefect_harness", "one_torch_thread")
def test_dask_build_matches_local_build(tmp_path: Path, cluster_address: str) -> None:
    from flows.build import build_dataset
    from pipeline.store.manifest import table_digest

    local = Path(build_dataset(config=CONFIG, out=str(tmp_path / "local"))).parent
    on_dask = build_dataset.with_options(task_runner=task_runner_for(f"dask={cluster_address}"))
    before = executed_on_workers(cluster_address)
    dask = Path(on_dask(config=CONFIG, out=str(tmp_path / "dask"))).parent
    assert executed_on_workers(cluster_address) - before >= 2  # the two shard tasks ran there
    for name in MANIFESTS:
        assert table_digest(local / name) == table_digest(dask / name), name
    rows = pq.read_table(dask / "manifest.parquet").to_pylist()
    assert rows and all((dask / r["path"]).is_file() for r in rows)
