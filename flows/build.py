"""`build_dataset`: source → segment → stylize → transform → classify/filter → manifest.

Tasks run over shards of images (`shard_size`), never one task per image. Each stage skips a
shard whose output part already exists with its files (see `pipeline.stages`), so a re-run
redoes nothing and a crashed build resumes where it stopped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import ThreadPoolTaskRunner

import flows  # noqa: F401  (Prefect defaults)
from flows.runners import results_in_order
from pipeline import progress
from pipeline.build_info import write_build_yaml, write_concept_stats
from pipeline.config import DEFAULT_BUILDS_DIR, BuildConfig
from pipeline.records import ConceptMask, Counterfactual, SourceImage, StyleImage, Stylized
from pipeline.report.build_overview import write_build_overview
from pipeline.sources import Source, SourceRef, create_source
from pipeline.stages.counterfactual import counterfactual_shard
from pipeline.stages.ingest import ingest_shard
from pipeline.stages.models import (
    classifier_fingerprint,
    load_classifier,
    load_segmenter,
    load_stylizer,
    segmenter_fingerprint,
    stylizer_fingerprint,
)
from pipeline.stages.segment import segment_shard
from pipeline.stages.stylize import images_to_stylize, stylize_shard
from pipeline.store import BuildStore
from pipeline.store.stamp import build_styles, clear_stamp, config_signature, write_stamp
from pipeline.stylize.library import load_style


def _retry_on_io_error(task: Any, task_run: Any, state: Any) -> bool:
    """Retry a task only when it failed on I/O; a bug or bad input fails at once."""
    try:
        state.result()
    except OSError:
        return True
    except Exception:
        return False
    return False


# Stages skip finished shards themselves (keys per the design brief, checked against the files on
# disk), so Prefect's own input hashing of large record lists is turned off.
IO_RETRIES: dict[str, Any] = {
    "cache_policy": NO_CACHE,
    "retries": 2,
    "retry_delay_seconds": 1,
    "retry_condition_fn": _retry_on_io_error,
}


def segment_images(
    store: BuildStore, images: list[SourceImage], config: BuildConfig
) -> tuple[str, list[ConceptMask]]:
    return segment_shard(
        store,
        images,
        config.segment,
        segmenter_fingerprint(config.segment, config.classifier),
        lambda: load_segmenter(config.segment, config.classifier, config.image.max_side),
    )


def stylize_images(
    store: BuildStore,
    images: list[SourceImage],
    masks: list[ConceptMask],
    styles: list[StyleImage],
    config: BuildConfig,
) -> tuple[str, list[Stylized]]:
    return stylize_shard(
        store,
        images_to_stylize(images, masks),
        styles,
        config.stylize,
        stylizer_fingerprint(config.stylize),
        config.seed,
        lambda: load_stylizer(config.stylize),
        load_style,
    )


def counterfactual_images(
    store: BuildStore,
    images: list[SourceImage],
    masks: list[ConceptMask],
    stylized: list[Stylized],
    config: BuildConfig,
) -> tuple[str, list[Counterfactual]]:
    return counterfactual_shard(
        store,
        images,
        masks,
        stylized,
        config.transform,
        config.classifier,
        config.filter,
        classifier_fingerprint(config.classifier),
        lambda: load_classifier(config.classifier),
    )


@dataclass(frozen=True)
class ShardResult:
    """The part keys a shard wrote (one per record kind) and the counts the flow logs."""

    keys: dict[str, str]
    images: int
    masks_kept: int
    counterfactuals: int
    counterfactuals_kept: int


@task(name="shard", **IO_RETRIES)
def shard_task(
    store: BuildStore,
    source: Source,
    refs: Sequence[SourceRef],
    styles: list[StyleImage],
    config: BuildConfig,
) -> ShardResult:
    """All stages for one shard of images, in one task so that a worker process keeps the
    records in memory and its models loaded (`pipeline.stages.models` caches them per process).

    Every stage skips its part when it already exists, so a retry or a re-run redoes nothing.
    """
    images_key, images = ingest_shard(store, source, refs, config.image)
    masks_key, masks = segment_images(store, images, config)
    stylized_key, stylized = stylize_images(store, images, masks, styles, config)
    cf_key, counterfactuals = counterfactual_images(store, images, masks, stylized, config)
    return ShardResult(
        keys={
            "images": images_key,
            "masks": masks_key,
            "stylized": stylized_key,
            "counterfactuals": cf_key,
        },
        images=len(images),
        masks_kept=sum(m.kept for m in masks),
        counterfactuals=len(counterfactuals),
        counterfactuals_kept=sum(c.kept for c in counterfactuals),
    )


@task(name="write-manifests", **IO_RETRIES)
def manifest_task(store: BuildStore, parts: dict[str, list[str]], styles: list[StyleImage]) -> str:
    for kind, keys in parts.items():
        store.consolidate(kind, keys)
    store.write_part("styles", "library", styles)
    store.consolidate("styles", ["library"])
    write_concept_stats(store)
    write_build_overview(store.root)
    return str(store.manifest_path("counterfactuals"))


def resolve_config(config: dict[str, Any] | None, config_path: str | None) -> BuildConfig:
    if config_path:
        return BuildConfig.from_yaml(config_path)
    if config is None:
        return BuildConfig.demo()
    return BuildConfig.model_validate(config)


def shard_resources(config: BuildConfig) -> dict[str, float] | None:
    """Dask resources a shard task needs: one GPU when the models run on CUDA (workers then
    need `--resources GPU=1`, so that two shards never share one device)."""
    from pipeline.classify.base import resolve_device

    return {"GPU": 1} if resolve_device(config.classifier.device).type == "cuda" else None


@flow(name="build_dataset", task_runner=ThreadPoolTaskRunner(max_workers=1))
def build_dataset(
    config: dict[str, Any] | None = None,
    config_path: str | None = None,
    out: str | None = None,
    runner: str | None = None,
) -> str:
    """Build a counterfactual dataset; returns the path of its manifest.

    `runner` picks where the shard tasks run (`local`, `dask`, `dask:N`, `dask=ADDRESS`; see
    `flows.runners`); None uses the flow's task runner (one shard at a time, in process).
    """
    build_config = resolve_config(config, config_path)
    logger = get_run_logger()
    store = BuildStore(out or DEFAULT_BUILDS_DIR / build_config.name)
    swept = store.sweep()
    if swept:
        logger.info("removed %d temp files left by an interrupted run", swept)
    clear_stamp(store.root)  # not up to date until this run finishes
    styles = build_styles(build_config)
    signature = config_signature(build_config, styles)
    write_build_yaml(store, build_config, styles)
    source = create_source(build_config.source)
    refs = list(source.refs())
    shards = [
        refs[start : start + build_config.shard_size]
        for start in range(0, len(refs), build_config.shard_size)
    ]
    logger.info("%d images in %d shards -> %s", len(refs), len(shards), store.root)
    progress.advance("images", 0, len(refs))
    parts: dict[str, list[str]] = {
        k: [] for k in ("images", "masks", "stylized", "counterfactuals")
    }
    params = [
        {"store": store, "source": source, "refs": shard, "styles": styles, "config": build_config}
        for shard in shards
    ]
    results = results_in_order(shard_task, params, runner, resources=shard_resources(build_config))
    for shard, result in zip(shards, results, strict=True):
        for kind in parts:
            parts[kind].append(result.keys[kind])
        progress.advance("images", len(shard))
        logger.info(
            "shard: %d images, %d masks kept, %d counterfactuals (%d kept)",
            result.images,
            result.masks_kept,
            result.counterfactuals,
            result.counterfactuals_kept,
        )
    store.quarantine([])  # make sure quarantine.jsonl exists, empty when all inputs were good
    manifest = manifest_task(store, parts, styles)
    write_stamp(store.root, signature)
    return manifest
