"""Atomic file writes: write a temp file in the same folder, fsync, then rename over the target.

A reader (or a resumed build) sees either the old file or the complete new one, never a torn
write. Temp files carry a `.tmp-` prefix so a resumed build can sweep leftovers of a crash.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

TEMP_PREFIX = ".tmp-"


def atomic_write_bytes(path: str | Path, data: bytes, skip_if_same: bool = False) -> Path:
    """Write `data` to `path` atomically; with `skip_if_same`, leave an identical file alone."""
    path = Path(path)
    same_size = skip_if_same and path.is_file() and path.stat().st_size == len(data)
    if same_size and path.read_bytes() == data:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str, skip_if_same: bool = False) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"), skip_if_same=skip_if_same)


def sweep_temp_files(root: str | Path) -> int:
    """Remove temp files left by a crashed writer under `root`; returns how many."""
    removed = 0
    for temp in Path(root).rglob(f"{TEMP_PREFIX}*"):
        if temp.is_file():
            temp.unlink(missing_ok=True)
            removed += 1
    return removed
