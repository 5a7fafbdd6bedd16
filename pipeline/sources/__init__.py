"""Image sources, created from the build config's `source` section.

Every option of `SourceConfig` that a kind accepts is honoured by it: `limit` (the first N
images, in the source's own sorted order) works for every kind, so a config never has an
option that is silently ignored (`pipeline.validate` refuses the options a kind does not use).
"""

from __future__ import annotations

from pipeline.config import SourceConfig
from pipeline.sources.base import Source, SourceRef


def create_source(config: SourceConfig) -> Source:
    if config.kind == "samples":
        from pipeline.sources.samples import SampleSource

        return SampleSource(config.names, limit=config.limit)
    if config.kind == "folder":
        from pipeline.sources.folder import FolderSource

        return FolderSource(config.path or "", limit=config.limit)
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


# which `SourceConfig` fields each kind uses (besides `kind`): a field set for a kind that does
# not use it is a config mistake (`pipeline.validate`)
SOURCE_FIELDS: dict[str, tuple[str, ...]] = {
    "samples": ("names", "limit"),
    "folder": ("path", "limit"),
    "huggingface": (
        "path",
        "dataset",
        "dataset_config",
        "split",
        "image_column",
        "label_column",
        "label_names",
        "limit",
    ),
}

__all__ = ["SOURCE_FIELDS", "Source", "SourceRef", "create_source"]
