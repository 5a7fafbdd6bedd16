"""Named fault-injection points: a crash test kills the process at exactly the point it names.

A failpoint is a call `failpoint("consolidate.after_images")` at a place where a crash must
leave the build, the edit results or an export resumable. It does nothing unless the
environment variable `CONCEPTSWAP_FAILPOINTS` arms it (the pattern of FoundationDB's and TiKV's
failpoints): a comma-separated list of `NAME:ACTION[@HIT]`, e.g.

    CONCEPTSWAP_FAILPOINTS=consolidate.after_images:kill
    CONCEPTSWAP_FAILPOINTS=atomic.before_rename:kill@3,edit.after_case:raise

- `kill`: SIGKILL to the process itself (nothing runs after it: no `finally`, no atexit),
- `raise`: raise :class:`FailpointError` (an exception the caller may see),
- `@HIT`: act on the HIT-th time the point is reached in this process (default 1).

The variable is read once, at import; a point that is not armed costs one dict lookup on an
empty dict. Every point is declared in :data:`POINTS` with what it interrupts, so an armed name
that does not exist is an error (a misspelt point would otherwise never fire) and the tests can
check that every point is covered. Worker processes (Dask) inherit the variable.
"""

from __future__ import annotations

import os
import signal
import threading
from dataclasses import dataclass

ENV = "CONCEPTSWAP_FAILPOINTS"
ACTIONS = ("kill", "raise")
MANIFEST_KINDS = ("images", "masks", "stylized", "counterfactuals", "styles")

# name -> what a crash there interrupts (docs/reliability.md lists the same)
POINTS: dict[str, str] = {
    "ingest.before_part": "a shard's images are written, its manifest part is not",
    "segment.before_part": "a shard's masks are written, its manifest part is not",
    "stylize.before_part": "a shard's stylized images are written, its manifest part is not",
    "counterfactual.before_part": "a shard's counterfactuals are written, its part is not",
    "shard.after": "a shard has finished every stage; the next has not started",
    "atomic.before_rename": "a file's temp copy is complete and fsynced, not yet renamed",
    "consolidate.before": "every shard is done; no manifest is consolidated yet",
    **{
        f"consolidate.after_{kind}": f"manifest '{kind}' is written, the next one is not"
        for kind in MANIFEST_KINDS
    },
    "consolidate.after_stats": "the manifests and concept_stats.json are written, the report not",
    "build.before_stamp": "the build is complete but not yet stamped as up to date",
    "edit.after_case": "a case's result rows and deltas are written, the next case not started",
    "edit.before_results": "a case's deltas are saved, its result rows are not written",
    "export.after_rows": "an export's data files are in its staging folder, not renamed",
    "export.old_set_aside": "the old export is renamed aside, the new one not yet in place",
}


class FailpointError(RuntimeError):
    """Raised by a failpoint armed with the `raise` action."""


@dataclass(frozen=True)
class Trigger:
    action: str
    hit: int = 1


def parse(spec: str) -> dict[str, Trigger]:
    """`NAME:ACTION[@HIT],...` → triggers; an unknown name or action is a ValueError."""
    triggers: dict[str, Trigger] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, _, rest = item.partition(":")
        action, _, hit = rest.partition("@")
        if name not in POINTS:
            raise ValueError(f"{ENV}: unknown failpoint {name!r}; known: {', '.join(POINTS)}")
        if action not in ACTIONS:
            raise ValueError(f"{ENV}: {item!r}: the action must be one of {', '.join(ACTIONS)}")
        if hit and (not hit.isdigit() or int(hit) < 1):
            raise ValueError(f"{ENV}: {item!r}: @HIT must be a positive integer")
        triggers[name] = Trigger(action, int(hit) if hit else 1)
    return triggers


_armed: dict[str, Trigger] = parse(os.environ.get(ENV, ""))
_hits: dict[str, int] = {}
_lock = threading.Lock()


def arm(spec: str) -> None:
    """Replace the armed points (`""` disarms all) and reset the hit counts (for tests)."""
    global _armed
    triggers = parse(spec)
    with _lock:
        _armed = triggers
        _hits.clear()


def failpoint(name: str) -> None:
    """Act as armed when this point is reached; nothing when it is not armed."""
    trigger = _armed.get(name)
    if trigger is None:
        return
    with _lock:
        _hits[name] = hit = _hits.get(name, 0) + 1
    if hit != trigger.hit:
        return
    if trigger.action == "kill":
        # the last line the process writes: a test reads which point killed it
        os.write(2, f"failpoint {name}: kill (hit {hit})\n".encode())
        os.kill(os.getpid(), signal.SIGKILL)
    raise FailpointError(f"failpoint {name} (hit {hit})")
