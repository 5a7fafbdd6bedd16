"""`build_dataset`: source → segment → stylize → transform → classify/filter → manifest.

Tasks run over shards of images (`shard_size`), never one task per image. Each stage skips a
shard whose output part already exists with its files (see `pipeline.stages`), so a re-run
redoes nothing and a crashed build resumes where it stopped.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import ThreadPoolTaskRunner

import flows  # noqa: F401  (Prefect defaults)
from flows.runners import results_in_order
from pipeline import progress
from pipeline.classify.base import resolve_device
from pipeline.config import DEFAULT_BUILDS_DIR, BuildConfig
from pipeline.sources import SourceRef
from pipeline.stages import STAGE_KINDS, Backends, ShardResult, run_shard
from pipeline.stages.build import finish_build, start_build
from pipeline.store import BuildStore


def _retry_on_io_error(task: Any, task_run: Any, state: Any) -> bool:
    """Retry a task only when it failed on I/O; a bug or bad input fails at once."""
    try:
        state.result()
    except OSError:
        return True
    except Exception:
        return False
    return False


# Stages skip finished shards themselves (cache keys checked against the files on disk), so
# Prefect's own input hashing of large record lists is turned off.
IO_RETRIES: dict[str, Any] = {
    "cache_policy": NO_CACHE,
    "retries": 2,
    "retry_delay_seconds": 1,
    "retry_condition_fn": _retry_on_io_error,
}


ORCHESTRATOR_PACKAGES = ("prefect",)  # their versions go into build.yaml too


@task(name="shard", **IO_RETRIES)
def shard_task(store: BuildStore, shard: Sequence[SourceRef], config: BuildConfig) -> ShardResult:
    """All stages for one shard of images, in one task so that a worker process keeps the
    records in memory and its models loaded (`Backends.of` is built once per process)."""
    return run_shard(store, shard, Backends.of(config), config)


@task(name="write-manifests", **IO_RETRIES)
def manifest_task(
    store: BuildStore, parts: dict[str, list[str]], config: BuildConfig, signature: str | None
) -> str:
    finish_build(store, Backends.of(config), parts, signature, packages=ORCHESTRATOR_PACKAGES)
    return str(store.manifest_path("counterfactuals"))


def shard_resources(config: BuildConfig) -> dict[str, float] | None:
    """Dask resources a shard task needs: one GPU when the models run on CUDA (workers then
    need `--resources GPU=1`, so that two shards never share one device)."""
    return {"GPU": 1} if resolve_device(config.classifier.device).type == "cuda" else None


@flow(name="build_dataset", task_runner=ThreadPoolTaskRunner(max_workers=1))
def build_dataset(
    config: BuildConfig | None = None,
    config_path: str | None = None,
    out: str | None = None,
    runner: str | None = None,
) -> str:
    """Build a counterfactual dataset; returns the path of its manifest.

    `config`: the parsed build config (None: the demo profile); deployments that keep their
    config in a file pass `config_path` instead. `runner` picks where the shard tasks run
    (`local`, `dask`, `dask:N`, `dask=ADDRESS`; see `flows.runners`); None uses the flow's task
    runner (one shard at a time, in process).
    """
    if config is None:
        config = BuildConfig.from_yaml(config_path) if config_path else BuildConfig.demo()
    logger = get_run_logger()
    store = BuildStore(out or DEFAULT_BUILDS_DIR / config.name)
    backends = Backends.of(config)
    started = start_build(store, backends, packages=ORCHESTRATOR_PACKAGES)
    shards = started.shards
    if started.swept:
        logger.info("removed %d temp files left by an interrupted run", started.swept)
    total = sum(len(shard) for shard in shards)
    logger.info("%d images in %d shards -> %s", total, len(shards), store.root)
    if total == 0:
        raise ValueError(f"the source lists no images ({config.source.kind}): nothing to build")
    progress.advance("images", 0, total)
    parts: dict[str, list[str]] = {kind: [] for kind in STAGE_KINDS}
    params = [{"store": store, "shard": shard, "config": config} for shard in shards]
    results = results_in_order(shard_task, params, runner, resources=shard_resources(config))
    finished = 0
    for shard, result in zip(shards, results, strict=True):
        for kind in parts:
            parts[kind].append(result.keys[kind])
        finished += len(shard)
        # the segment stage advances per batch in this process; skipped shards, quarantined
        # images and shards run by Dask workers are caught up here
        progress.catch_up("images", finished)
        logger.info(
            "%d/%d images; shard: %d images, %d masks kept, %d counterfactuals (%d kept)",
            finished,
            total,
            result.images,
            result.masks_kept,
            result.counterfactuals,
            result.counterfactuals_kept,
        )
    manifest = manifest_task(store, parts, config, started.signature)
    images = sum(1 for _ in store.table("images", ["image_id"]).column("image_id"))
    create_table_artifact(
        key="build-summary",
        table=[
            {"item": "build", "value": str(store.root)},
            {"item": "source images", "value": str(total)},
            {"item": "usable images", "value": str(images)},
            {"item": "quarantined", "value": str(len(store.quarantined()))},
            {"item": "report", "value": str(store.root / "report" / "build.html")},
        ],
        description=f"build {config.name}: {manifest}",
    )
    if images == 0:
        raise ValueError(
            f"none of the {total} source images could be used; see "
            f"{store.quarantine_path} for why each was quarantined"
        )
    return manifest
