"""Image sources, created from the build config's `source` section."""

from __future__ import annotations

from pipeline.config import SourceConfig
from pipeline.sources.base import Source, SourceRef


def create_source(config: SourceConfig) -> Source:
    if config.kind == "samples":
        from pipeline.sources.samples import SampleSource

        return SampleSource(config.names)
    if config.kind == "folder":
        from pipeline.sources.folder import FolderSource

        return FolderSource(config.path or "")
    from pipeline.sources.huggingface import HuggingFaceSource

    return HuggingFaceSource(
        dataset=config.dataset,
        path=config.path,
        dataset_config=config.dataset_config,
        split=config.split,
        image_column=config.image_column,
        label_column=config.label_column,
        label_names=config.label_names,
        limit=config.limit,
    )


__all__ = ["Source", "SourceRef", "create_source"]
