"""Build storage: atomic writes, content-addressed files, Parquet manifests, quarantine."""

from pipeline.store.build_store import BuildStore

__all__ = ["BuildStore"]
