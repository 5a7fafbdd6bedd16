"""A tiny progress hook: the library reports work done; a front end shows it.

Library code runs in notebooks, under an orchestrator and in worker processes, and must not
depend on a terminal, so it calls `advance(stage, amount, total)`, which costs one global read
unless a front end (the CLI's rich bars) installed a reporter. Calls are cheap enough for one per
image. A stage's first call may give `total` (with amount 0) so a bar can show an ETA.

The stage names, shared by the code that reports and the front ends that show it:
"""

from __future__ import annotations

import threading
from collections.abc import Callable

STAGES: dict[str, str] = {
    "images": "images",  # a build: one per source image once its shard's masks are done
    "audit": "audit",  # an audit: one per counterfactual classified (all models)
    "edit": "edit",  # edits: one per (case, method) run
    "publish": "publish",  # publish / export: one per row written
}

Reporter = Callable[[str, int, int | None], None]  # (stage, advance, total or None)
_reporter: Reporter | None = None
_done: dict[str, int] = {}
_lock = threading.Lock()


def set_reporter(reporter: Reporter | None) -> None:
    """Install (or with None remove) the reporter; the tallies start again from 0."""
    global _reporter
    with _lock:
        _reporter = reporter
        _done.clear()


def advance(stage: str, amount: int = 1, total: int | None = None) -> None:
    """`amount` more units of `stage` are done (`total`: the stage's size, when known)."""
    if _reporter is None:
        return
    with _lock:
        _done[stage] = _done.get(stage, 0) + amount
    _reporter(stage, amount, total)


def done(stage: str) -> int:
    """Units of `stage` reported in this process since the reporter was installed."""
    return _done.get(stage, 0)


def catch_up(stage: str, expected: int) -> None:
    """Advance `stage` to `expected` if fewer units were reported here: work done in another
    process (a Dask worker) or skipped (a finished shard) still moves the bar."""
    missing = expected - done(stage)
    if missing > 0:
        advance(stage, missing)


__all__ = ["STAGES", "Reporter", "advance", "catch_up", "done", "set_reporter"]
