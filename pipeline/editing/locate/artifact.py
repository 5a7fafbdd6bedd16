"""A trained locator on disk: ``locator.safetensors`` (weights) + ``locator.json`` (provenance).

The record says what the locator was trained for and on: the edited model's id and weights
hash, the parameter groups (:class:`~pipeline.editing.locate.groups.GroupLayout`), the builds
and (concept, texture) pairs of its episodes and the pairs held out, the seed, the number of
steps, the final losses, and the sha256 of the weights file. An edit config names the locator
by its folder (or either file); a bare name is looked up under ``$CONCEPTSWAP_LOCATORS``
(default ``data/locators``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from pipeline.config import expand_path
from pipeline.editing.locate.groups import GroupLayout
from pipeline.editing.locate.locator import Locator
from pipeline.hashing import sha256_file
from pipeline.store.atomic import atomic_write_bytes, atomic_write_text

LOCATOR_FORMAT = "conceptswap.locator.v1"
WEIGHTS_FILE = "locator.safetensors"
RECORD_FILE = "locator.json"
LOCATORS_ENV = "CONCEPTSWAP_LOCATORS"
DEFAULT_LOCATORS_DIR = Path("data/locators")


@dataclass(frozen=True)
class LocatorArtifact:
    """A loaded locator: the network (eval mode), its group layout and its record."""

    locator: Locator
    layout: GroupLayout
    record: dict[str, Any]
    folder: Path

    @property
    def model_id(self) -> str:
        return str(self.record.get("model_id", ""))

    @property
    def weights_hash(self) -> str:
        return str(self.record.get("weights_hash", ""))

    @property
    def trained_pairs(self) -> list[tuple[str, str]]:
        return [(str(c), str(t)) for c, t in self.record.get("pairs", [])]


def save_locator(
    folder: str | Path, locator: Locator, layout: GroupLayout, record: dict[str, Any]
) -> Path:
    """Write the weights and the record (with the layout, the network's shape and the weights'
    sha256) into ``folder``, atomically; returns the folder."""
    from safetensors.torch import save

    folder = Path(folder)
    tensors = {
        name: value.detach().cpu().contiguous() for name, value in locator.state_dict().items()
    }
    weights = atomic_write_bytes(folder / WEIGHTS_FILE, save(tensors, {"format": LOCATOR_FORMAT}))
    full = {
        "format": LOCATOR_FORMAT,
        **record,
        "layout": layout.to_dict(),
        "feature_dim": locator.feature_dim,
        "hidden": locator.hidden,
        "n_groups": locator.n_groups,
        "weights_file": WEIGHTS_FILE,
        "weights_sha256": sha256_file(weights),
    }
    atomic_write_text(folder / RECORD_FILE, json.dumps(full, indent=1, sort_keys=True) + "\n")
    return folder


def resolve_locator(spec: str | Path) -> Path:
    """The folder of a locator given as a folder, one of its files, or a name under
    ``$CONCEPTSWAP_LOCATORS`` (default ``data/locators``). ``~`` and ``${VAR}`` are expanded
    as in a config's paths (method settings are not), so one edit config serves every machine."""
    path = Path(expand_path(str(spec)))
    if path.is_file() and path.name in {RECORD_FILE, WEIGHTS_FILE}:
        path = path.parent
    if (path / RECORD_FILE).is_file():
        return path
    root = Path(os.environ.get(LOCATORS_ENV, DEFAULT_LOCATORS_DIR))
    if (root / str(spec) / RECORD_FILE).is_file():
        return root / str(spec)
    raise FileNotFoundError(
        f"locator {str(spec)!r} not found: expected a folder with {RECORD_FILE} and "
        f"{WEIGHTS_FILE} (conceptswap train-locator writes one), or a name under {root}"
    )


def load_locator(spec: str | Path) -> LocatorArtifact:
    """Load a locator by folder, file or name (cached per folder and file modification)."""
    folder = resolve_locator(spec).resolve()
    record_path = folder / RECORD_FILE
    return _load(str(folder), record_path.stat().st_mtime_ns)


@lru_cache(maxsize=8)
def _load(folder: str, _mtime_ns: int) -> LocatorArtifact:
    from safetensors.torch import load_file

    root = Path(folder)
    record = json.loads((root / RECORD_FILE).read_text(encoding="utf-8"))
    if record.get("format") != LOCATOR_FORMAT:
        raise ValueError(f"{root / RECORD_FILE}: not a locator record ({LOCATOR_FORMAT})")
    weights = root / str(record.get("weights_file", WEIGHTS_FILE))
    if sha256_file(weights) != record.get("weights_sha256"):
        raise ValueError(f"{weights}: sha256 differs from its record; retrain or restore it")
    locator = Locator(int(record["feature_dim"]), int(record["n_groups"]), int(record["hidden"]))
    locator.load_state_dict(load_file(str(weights)))
    locator.eval()
    layout = GroupLayout.from_dict(record["layout"])
    return LocatorArtifact(locator, layout, record, root)
