"""Streamed shards of one export config, in one of three layouts (`LAYOUTS`):

- `hub`: `data/<config>/train-XXXXX-of-YYYYY.parquet`, the Hub's layout (what `publish` uploads);
- `arrow`: `<config>/data-XXXXX-of-YYYYY.arrow`, Arrow IPC streams in the layout of
  `datasets.Dataset.save_to_disk` (so `load_from_disk` memory-maps them);
- `parquet`: `<config>.parquet`, one plain Parquet file per config (images as PNG `binary`
  columns, no `datasets` metadata), for pandas, polars or DuckDB.

A shard is written one row group (at most `ROW_GROUP_ROWS` rows) at a time, so at most one row
group of images is in memory. Shard boundaries are planned up front from each row's estimated
size (`max_shard_size`, default 500 MB). The writer adds no timestamps, so the same rows give
the same bytes; `datasets` restores `Image()` and `ClassLabel` from the `huggingface` schema
metadata that `Features.arrow_schema` carries into every file.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

DEFAULT_MAX_SHARD_SIZE = 500 * 1000 * 1000  # bytes (500 MB)
ROW_GROUP_ROWS = 100
ROW_GROUP_BYTES = 64 * 1000 * 1000
SIZE_UNITS = {
    "": 1,
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
}


LAYOUTS = ("hub", "arrow", "parquet")


@dataclass(frozen=True)
class ConfigExport:
    """One config (record kind) of an export."""

    name: str
    rows: int
    files: tuple[str, ...]  # relative to the export root
    num_bytes: int  # Arrow (in-memory) size, as `datasets` reports `dataset_size`
    download_size: int  # Parquet bytes


def parse_size(value: int | str) -> int:
    """`500MB`, `1.5GB`, `64MiB` or a number of bytes -> bytes."""
    if isinstance(value, int):
        size = value
    else:
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(value))
        if not match or match.group(2).lower() not in SIZE_UNITS:
            raise ValueError(f"cannot read size {value!r}: use bytes or e.g. '500MB', '2GB'")
        size = int(float(match.group(1)) * SIZE_UNITS[match.group(2).lower()])
    if size < 1:
        raise ValueError(f"size must be positive, got {value!r}")
    return size


def plan_shards(sizes: Sequence[int], max_shard_bytes: int) -> list[range]:
    """Consecutive row ranges whose estimated sizes stay under the limit (one row at least)."""
    shards: list[range] = []
    start, total = 0, 0
    for index, size in enumerate(sizes):
        if index > start and total + size > max_shard_bytes:
            shards.append(range(start, index))
            start, total = index, 0
        total += size
    shards.append(range(start, len(sizes)))
    return shards


def _row_groups(rows: Iterable[dict[str, Any]], sizes: Sequence[int]) -> Iterator[list[dict]]:
    group: list[dict[str, Any]] = []
    total = 0
    for row, size in zip(rows, sizes, strict=True):
        if group and (len(group) >= ROW_GROUP_ROWS or total + size > ROW_GROUP_BYTES):
            yield group
            group, total = [], 0
        group.append(row)
        total += size
    if group:
        yield group


def _parquet_writer(sink: Any, schema: pa.Schema) -> pq.ParquetWriter:
    options: dict[str, Any] = {"compression": "zstd"}
    try:  # content-defined chunking (pyarrow >= 21): unchanged pages dedupe on the Hub's Xet store
        return pq.ParquetWriter(sink, schema, use_content_defined_chunking=True, **options)
    except TypeError:
        return pq.ParquetWriter(sink, schema, **options)


def plain_schema(features: Any, image_columns: Sequence[str]) -> pa.Schema:
    """The Arrow schema of a plain Parquet file: `Image()` columns as PNG `binary`, and none of
    the `datasets` metadata (ClassLabels stay integers; the names are in the card / docs)."""
    fields = [
        pa.field(f.name, pa.binary()) if f.name in image_columns else f
        for f in features.arrow_schema
    ]
    return pa.schema(fields)


def _plain_row(row: dict[str, Any], image_columns: Sequence[str]) -> dict[str, Any]:
    return {k: (v["bytes"] if k in image_columns and v is not None else v) for k, v in row.items()}


def _shard_path(layout: str, name: str, number: int, count: int) -> str:
    if layout == "hub":
        return f"data/{name}/train-{number:05d}-of-{count:05d}.parquet"
    if layout == "arrow":
        return f"{name}/data-{number:05d}-of-{count:05d}.arrow"
    return f"{name}.parquet"


class _ArrowStream:
    """An Arrow IPC stream writer with the `write_table(table, row_group_size)` of Parquet's."""

    def __init__(self, sink: Any, schema: pa.Schema) -> None:
        self._writer = pa.ipc.new_stream(sink, schema)

    def write_table(self, table: pa.Table, row_group_size: int | None = None) -> None:
        self._writer.write_table(table, max_chunksize=row_group_size)

    def __enter__(self) -> _ArrowStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self._writer.close()


def write_config(
    root: Path,
    name: str,
    features: Any,
    count: int,
    make_row: Callable[[int], dict[str, Any]],
    sizes: Sequence[int],
    max_shard_bytes: int,
    layout: str = "hub",
    on_rows: Callable[[int], None] | None = None,
) -> ConfigExport:
    """Write the shards of config `name` under `root` in `layout` from rows made one at a time
    (`make_row(i)` for i < count, `sizes[i]` its estimated bytes); `on_rows(n)` after each
    row group of n rows (progress).

    `root` is the export's staging folder, renamed into place only once every file is complete,
    so the shards are streamed to their final names rather than written file by file atomically.
    The `parquet` layout is one file whatever `max_shard_bytes`.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; one of {', '.join(LAYOUTS)}")
    images = [k for k, v in features.items() if type(v).__name__ == "Image"]
    plain = layout == "parquet"
    schema = plain_schema(features, images) if plain else features.arrow_schema
    shards = [range(count)] if plain or not count else plan_shards(sizes, max_shard_bytes)
    files: list[str] = []
    num_bytes = download_size = 0
    for number, rows in enumerate(shards):
        relpath = _shard_path(layout, name, number, len(shards))
        target = root / relpath
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("wb") as sink:
            opened = _ArrowStream(sink, schema) if layout == "arrow" else None
            with opened or _parquet_writer(sink, schema) as writer:
                row_sizes = [sizes[i] for i in rows]
                if not rows:
                    writer.write_table(schema.empty_table())
                for group in _row_groups((make_row(i) for i in rows), row_sizes):
                    if plain:
                        group = [_plain_row(row, images) for row in group]
                    table = pa.Table.from_pylist(group, schema=schema)
                    num_bytes += table.nbytes
                    writer.write_table(table, row_group_size=len(group))
                    if on_rows is not None:
                        on_rows(len(group))
        download_size += target.stat().st_size
        files.append(relpath)
    return ConfigExport(name, count, tuple(files), num_bytes, download_size)
