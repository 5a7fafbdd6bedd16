"""The build directory: content-addressed files, manifest parts, quarantine, resolved config.

```
<build>/build.yaml                     resolved config, versions, model ids, weight hashes, seed
<build>/manifest.parquet               one row per counterfactual (the main manifest)
<build>/manifests/<kind>.parquet       images, masks, styles, stylized
<build>/manifests/parts/<kind>/<key>.parquet   one part per shard and stage cache key
<build>/images|masks|stylized|counterfactuals/<id[:2]>/<id>.png
<build>/quarantine.jsonl               inputs that could not be used, and why
```
"""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from pipeline.config import BuildConfig
from pipeline.imageio import encode_png, load_png
from pipeline.records import RECORD_TYPES, QuarantineEntry, Record
from pipeline.store.atomic import atomic_write_bytes, atomic_write_text, sweep_temp_files
from pipeline.store.manifest import concat_sorted, read_records, records_to_table, write_table

if TYPE_CHECKING:
    import pandas as pd

FILE_KINDS = ("images", "masks", "stylized", "counterfactuals")
BUILD_YAML = "build.yaml"


def _write_png(path: Path, array: np.ndarray) -> Path:
    return atomic_write_bytes(path, encode_png(array))


class PngWriter:
    """`save(relpath, array)` queued on a thread pool; at most `max_pending` images in memory."""

    def __init__(self, store: BuildStore, pool: ThreadPoolExecutor, max_pending: int) -> None:
        self._store, self._pool, self._max_pending = store, pool, max(1, max_pending)
        self._pending: deque[Future[Path]] = deque()

    def save(self, relpath: str, array: np.ndarray) -> None:
        path = self._store.path(relpath)  # validate here, in the caller's thread
        self._pending.append(self._pool.submit(_write_png, path, array))
        self.wait(self._max_pending)

    def wait(self, pending: int) -> None:
        """Block until at most `pending` writes are in flight; re-raise a failed write's error."""
        while len(self._pending) > pending:
            self._pending.popleft().result()


_quarantine_lock = threading.Lock()


class BuildStore:
    """All reads and writes of one build directory go through here."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    # -- content-addressed files -------------------------------------------------------------
    def relpath(self, kind: str, file_id: str, suffix: str = ".png") -> str:
        if kind not in FILE_KINDS:
            raise ValueError(f"unknown file kind {kind!r}")
        if not file_id or any(c not in "0123456789abcdef" for c in file_id):
            raise ValueError(f"file ids are lowercase hex digests, got {file_id!r}")
        return f"{kind}/{file_id[:2]}/{file_id}{suffix}"

    def path(self, relpath: str) -> Path:
        resolved = (self.root / relpath).resolve()
        if self.root not in resolved.parents:
            raise ValueError(f"path {relpath!r} escapes the build directory {self.root}")
        return resolved

    def exists(self, relpath: str) -> bool:
        return self.path(relpath).is_file()

    def save_png(self, relpath: str, array: np.ndarray) -> str:
        atomic_write_bytes(self.path(relpath), encode_png(array))
        return relpath

    @contextmanager
    def png_writer(self, threads: int = 2, max_pending: int = 32) -> Iterator[PngWriter]:
        """Save PNGs on background threads: OpenCV and Pillow release the GIL while they
        compress, so the encoding overlaps the next model call. The block ends only when every
        file is written (the first error is raised then), so a stage still writes its part
        after its files."""
        with ThreadPoolExecutor(threads, thread_name_prefix="png-writer") as pool:
            writer = PngWriter(self, pool, max_pending)
            try:
                yield writer
            finally:
                writer.wait(0)

    def load_image(self, relpath: str) -> np.ndarray:
        return load_png(self.path(relpath))

    def load_mask(self, relpath: str) -> np.ndarray:
        return load_png(self.path(relpath), mask=True)

    # -- manifest parts ----------------------------------------------------------------------
    def part_path(self, kind: str, key: str) -> Path:
        return self.root / "manifests" / "parts" / kind / f"{key}.parquet"

    def has_part(self, kind: str, key: str) -> bool:
        return self.part_path(kind, key).is_file()

    def write_part(self, kind: str, key: str, records: Sequence[Record]) -> Path:
        return write_table(self.part_path(kind, key), records_to_table(kind, records))

    def read_part(self, kind: str, key: str) -> list[Record]:
        return read_records(self.part_path(kind, key), kind)

    def consolidate(self, kind: str, keys: Iterable[str], target: Path | None = None) -> Path:
        """Write the manifest of `kind` from the parts named by `keys` (this run's shards)."""
        tables = [pq.read_table(self.part_path(kind, key)) for key in keys]
        target = target or self.manifest_path(kind)
        return write_table(target, concat_sorted(kind, tables))

    def has_manifest(self, kind: str = "counterfactuals") -> bool:
        return self.manifest_path(kind).is_file()

    def table(self, kind: str, columns: Sequence[str] | None = None) -> pa.Table:
        """The consolidated manifest of `kind` under its declared schema (an absent manifest
        reads as an empty, typed table)."""
        schema = RECORD_TYPES[kind].arrow_schema()
        names = list(columns) if columns is not None else schema.names
        path = self.manifest_path(kind)
        if not path.is_file():
            return pa.schema([schema.field(n) for n in names]).empty_table()
        table = pq.read_table(path, columns=names)
        return table.cast(pa.schema([schema.field(n) for n in names]))

    def read(self, kind: str) -> list[Record]:
        """The records of the consolidated manifest of `kind`."""
        record_type = RECORD_TYPES[kind]
        return [record_type.from_row(row) for row in self.table(kind).to_pylist()]

    def frame(self, kind: str, columns: Sequence[str] | None = None) -> pd.DataFrame:
        """The manifest of `kind` as a DataFrame with the declared column types (for the
        statistics that group and join whole tables)."""
        return self.table(kind, columns).to_pandas()

    # -- the resolved config -------------------------------------------------------------------
    @property
    def build_yaml(self) -> Path:
        return self.root / BUILD_YAML

    def resolved(self) -> dict[str, Any]:
        """`build.yaml` as written: the config plus its `resolved` section (versions, model
        ids, weight hashes, style images); empty when the build has none yet."""
        if not self.build_yaml.is_file():
            return {}
        data = yaml.safe_load(self.build_yaml.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}

    def config(self) -> BuildConfig:
        """The config this build was made with (the file's `resolved` section set aside)."""
        if not self.build_yaml.is_file():
            raise FileNotFoundError(f"{self.root} has no {BUILD_YAML}; build it first")
        return BuildConfig.from_yaml(self.build_yaml)

    def manifest_path(self, kind: str) -> Path:
        if kind == "counterfactuals":
            return self.root / "manifest.parquet"
        return self.root / "manifests" / f"{kind}.parquet"

    # -- quarantine --------------------------------------------------------------------------
    @property
    def quarantine_path(self) -> Path:
        return self.root / "quarantine.jsonl"

    def quarantined(self) -> list[QuarantineEntry]:
        if not self.quarantine_path.is_file():
            return []
        lines = self.quarantine_path.read_text(encoding="utf-8").splitlines()
        return [QuarantineEntry(**json.loads(line)) for line in lines if line.strip()]

    def quarantine(self, entries: Iterable[QuarantineEntry]) -> None:
        """Add entries, one per (uri, stage), rewriting the file atomically."""
        new = list(entries)
        with _quarantine_lock:
            merged = {(e.uri, e.stage): e for e in self.quarantined()}
            if not new and self.quarantine_path.exists():
                return
            for entry in new:
                merged[(entry.uri, entry.stage)] = entry
            lines = [
                json.dumps(entry.to_row(), sort_keys=True, ensure_ascii=False)
                for _, entry in sorted(merged.items())
            ]
            text = "".join(line + "\n" for line in lines)
            atomic_write_text(self.quarantine_path, text, skip_if_same=True)

    # -- housekeeping ------------------------------------------------------------------------
    def sweep(self) -> int:
        """Remove temp files a crashed run left behind."""
        return sweep_temp_files(self.root)
