"""Build stages as plain functions over one shard of records (no Prefect here).

`run_shard(store, shard, backends, config)` is the one unit of work of a build: ingest →
segment → stylize → transform / classify / filter for one shard of source references. Each
stage derives a cache key for its shard from its inputs' ids, its config, its backend's
fingerprint (weights hash included) and its code version. A finished shard is a manifest part
named by that key: re-running finds it and skips the shard without loading a model; a part
whose files were deleted re-creates only those files.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pipeline.config import BuildConfig
from pipeline.failpoints import failpoint
from pipeline.sources import SourceRef
from pipeline.stages.backends import Backends
from pipeline.stages.counterfactual import counterfactual_shard
from pipeline.stages.ingest import ingest_shard
from pipeline.stages.segment import segment_shard
from pipeline.stages.stylize import stylize_shard
from pipeline.store import BuildStore

STAGE_KINDS = ("images", "masks", "stylized", "counterfactuals")


@dataclass(frozen=True)
class ShardResult:
    """The part keys a shard wrote (one per record kind) and the counts a flow logs."""

    keys: dict[str, str]
    images: int
    masks_kept: int
    counterfactuals: int
    counterfactuals_kept: int


def run_shard(
    store: BuildStore, shard: Sequence[SourceRef], backends: Backends, config: BuildConfig
) -> ShardResult:
    """All stages for one shard of source references; each skips its finished part."""
    images_key, images = ingest_shard(store, shard, backends, config)
    masks_key, masks = segment_shard(store, images, backends, config)
    stylized_key, stylized = stylize_shard(store, images, masks, backends, config)
    cf_key, records = counterfactual_shard(store, images, masks, stylized, backends, config)
    failpoint("shard.after")
    return ShardResult(
        keys=dict(zip(STAGE_KINDS, (images_key, masks_key, stylized_key, cf_key), strict=True)),
        images=len(images),
        masks_kept=sum(m.kept for m in masks),
        counterfactuals=len(records),
        counterfactuals_kept=sum(c.kept for c in records),
    )


__all__ = ["Backends", "ShardResult", "run_shard"]
