"""A tiny progress hook: flows report work done; the CLI shows it as rich progress bars.

Flows run inside Prefect and must not depend on a terminal, so they call `advance(...)`, which
does nothing unless a front end (the CLI) installed a reporter.
"""

from __future__ import annotations

from collections.abc import Callable

Reporter = Callable[[str, int, int | None], None]  # (stage, advance, total or None)
_reporter: Reporter | None = None


def set_reporter(reporter: Reporter | None) -> None:
    global _reporter
    _reporter = reporter


def advance(stage: str, amount: int = 1, total: int | None = None) -> None:
    if _reporter is not None:
        _reporter(stage, amount, total)
