"""Parquet manifests: one part per (record kind, shard cache key), consolidated per build.

Parts are written atomically, so a crash loses at most the shard in flight. The consolidated
manifest of a kind is the union of the parts a build run produced, sorted by the record id, so
the same config and seed give byte-identical tables.
"""

from __future__ import annotations

import hashlib
import io
import logging
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.records import RECORD_TYPES, Record
from pipeline.store.atomic import atomic_write_bytes

ID_COLUMNS = {
    "images": "image_id",
    "masks": "mask_id",
    "styles": "style_id",
    "stylized": "stylized_id",
    "counterfactuals": "cf_id",
}


def records_to_table(kind: str, records: Sequence[Record]) -> pa.Table:
    """Rows of `records` under the schema their type declares (typed even when empty)."""
    schema = RECORD_TYPES[kind].arrow_schema()
    return pa.Table.from_pylist([record.to_row() for record in records], schema=schema)


def write_table(path: str | Path, table: pa.Table) -> Path:
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd")
    return atomic_write_bytes(path, buffer.getvalue(), skip_if_same=True)


def read_records(path: str | Path, kind: str) -> list[Record]:
    record_type = RECORD_TYPES[kind]
    table = pq.read_table(path)
    return [record_type.from_row(row) for row in table.to_pylist()]


def concat_sorted(kind: str, tables: Iterable[pa.Table]) -> pa.Table:
    """Union of part tables, de-duplicated on the record id and sorted by it."""
    non_empty = [t for t in tables if t.num_rows]
    if not non_empty:
        return records_to_table(kind, [])
    table = pa.concat_tables(non_empty, promote_options="permissive")
    id_column = ID_COLUMNS[kind]
    rows = {row[id_column]: row for row in table.to_pylist()}
    ordered = [rows[key] for key in sorted(rows)]
    return pa.Table.from_pylist(ordered, schema=RECORD_TYPES[kind].arrow_schema())


def table_digest(path: str | Path) -> str:
    """sha256 of a manifest's rows (not of the Parquet bytes): equal data, equal digest."""
    table = pq.read_table(path)
    digest = hashlib.sha256()
    for row in table.to_pylist():
        digest.update(repr(sorted(row.items())).encode())
    return digest.hexdigest()


def declared_table(record: type[Record], rows: Iterable[Record | Mapping[str, Any]]) -> pa.Table:
    """Rows (records or their ``to_row`` dicts, extra keys ignored) as an Arrow table of the
    schema ``record`` declares: the one writer of the editing tables."""
    schema = record.arrow_schema()
    data = [row.to_row() if isinstance(row, Record) else row for row in rows]
    return pa.Table.from_pylist([{n: row[n] for n in schema.names} for row in data], schema=schema)


def read_declared(record: type[Record], path: str | Path, what: str) -> pd.DataFrame:
    """A table of ``record``'s declared columns and types; empty (with those columns) when the
    file is absent or was written by a version without some declared column — its rows are
    dropped, since their run keys are stale and the runner recomputes them, and the log says
    so (``what`` names the table there)."""
    schema = record.arrow_schema()
    path = Path(path)
    if not path.is_file():
        return schema.empty_table().to_pandas()
    table = pq.read_table(path)
    missing = [name for name in schema.names if name not in table.column_names]
    if missing:
        logging.getLogger("conceptswap.edit").warning(
            "%s: %d rows of an older %s version (no %s) ignored; re-run the edits",
            path,
            table.num_rows,
            what,
            ", ".join(missing[:3]),
        )
        return schema.empty_table().to_pandas()
    return table.select(schema.names).cast(schema).to_pandas()
