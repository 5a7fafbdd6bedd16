"""Atomic file writes: write a temp file in the same folder, fsync, then rename over the target.

A reader (or a resumed build) sees either the old file or the complete new one, never a torn
write. Temp files carry a `.tmp-` prefix so a resumed build can sweep leftovers of a crash.

Files get the mode the user's umask allows (0644 under umask 022, 0600 under 077), like any
file `open()` creates: the temp file is created with `os.open(..., 0o666)` and the kernel applies
the umask. (`tempfile.mkstemp` would make every build file 0600, unreadable to teammates, a
flow worker running as another user or a web server serving the report.)
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from pipeline.failpoints import failpoint

TEMP_PREFIX = ".tmp-"
FILE_MODE = 0o666  # before the umask, as for open(path, "w")


def _create_temp(folder: Path) -> tuple[int, Path]:
    """A new, exclusively created temp file in `folder` (mode: FILE_MODE minus the umask)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    while True:
        temp = folder / f"{TEMP_PREFIX}{secrets.token_hex(8)}"
        try:
            return os.open(temp, flags, FILE_MODE), temp
        except FileExistsError:  # a 64-bit name collision: draw again
            continue


def atomic_write_bytes(path: str | Path, data: bytes, skip_if_same: bool = False) -> Path:
    """Write `data` to `path` atomically; with `skip_if_same`, leave an identical file alone."""
    path = Path(path)
    same_size = skip_if_same and path.is_file() and path.stat().st_size == len(data)
    if same_size and path.read_bytes() == data:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = _create_temp(path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        failpoint("atomic.before_rename")
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
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
