"""WebDataset shards of one export config: `<config>-XXXXXX.tar`, one sample per row.

A sample is the files of one row under one key (the row's id, a hex hash, so it has no dots):
`<key>.<column>.png` for each image column and `<key>.json` for every other column. The tar
members carry no owner and mtime 0, so the same rows give the same bytes. Shard boundaries are
planned from the rows' estimated sizes, like the Parquet shards.
"""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pipeline.publish.shards import ConfigExport, plan_shards


def _member(name: str, data: bytes) -> tuple[tarfile.TarInfo, io.BytesIO]:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 0, 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info, io.BytesIO(data)


def sample_files(row: dict[str, Any], key_column: str, image_columns: Sequence[str]) -> dict:
    """The files of one row's sample: `{extension: bytes}` (`counterfactual.png`, `json`)."""
    files: dict[str, bytes] = {}
    for column in image_columns:
        value = row.get(column)
        if value is not None:
            files[f"{column}.png"] = value["bytes"]
    meta = {k: v for k, v in row.items() if k not in image_columns}
    files["json"] = json.dumps(meta, sort_keys=True).encode()
    assert "." not in str(row[key_column]), row[key_column]
    return files


def write_tar_config(
    root: Path,
    name: str,
    key_column: str,
    image_columns: Sequence[str],
    count: int,
    make_row: Callable[[int], dict[str, Any]],
    sizes: Sequence[int],
    max_shard_bytes: int,
    on_rows: Callable[[int], None] | None = None,
) -> ConfigExport:
    """Write `<name>-XXXXXX.tar` shards under `root` (`make_row(i)`, `sizes[i]` as in
    `pipeline.publish.shards.write_config`); the row count is the number of `.json` members."""
    shards = plan_shards(sizes, max_shard_bytes) if count else [range(0)]
    files: list[str] = []
    total = 0
    for number, rows in enumerate(shards):
        relpath = f"{name}-{number:06d}.tar"
        with tarfile.open(root / relpath, "w", format=tarfile.USTAR_FORMAT) as tar:
            for index in rows:
                row = make_row(index)
                for extension, data in sample_files(row, key_column, image_columns).items():
                    tar.addfile(*_member(f"{row[key_column]}.{extension}", data))
                if on_rows is not None:
                    on_rows(1)
        total += (root / relpath).stat().st_size
        files.append(relpath)
    return ConfigExport(name, count, tuple(files), total, total)
