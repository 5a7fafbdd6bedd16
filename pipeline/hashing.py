"""Stable content hashes: image ids, cache keys, file digests."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def pixels_id(rgb: np.ndarray) -> str:
    """sha256 of decoded uint8 RGB pixels and their shape: the image id, which names every file
    derived from the image."""
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected HxWx3 uint8 pixels, got {rgb.shape} {rgb.dtype}")
    digest = hashlib.sha256(f"{rgb.shape[0]}x{rgb.shape[1]}:".encode())
    digest.update(np.ascontiguousarray(rgb).tobytes())
    return digest.hexdigest()


def stable_key(*parts: Any, length: int = 24) -> str:
    """Hash of JSON-serialisable parts (dict keys sorted): cache keys and derived ids."""
    payload = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()[:length]
