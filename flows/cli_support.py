"""What every `conceptswap` command shares: one-line errors, progress bars, tables that fit.

- `fail(problems)`: the validation problems (`pipeline.validate.Problem`), one line each, then
  exit code 2 (a usage error: nothing was done);
- `expected_errors()`: any error of a command becomes one line and exit code 1 (no GPU, Hub
  unreachable, no token, a file that vanished); `--debug` (the global option) re-raises it with
  its traceback, and also keeps the tracebacks in Prefect's log lines;
- `progress_bars()`: rich progress bars (count, elapsed, ETA) for whatever the library reports
  through `pipeline.progress`, quiet when stderr is not a terminal;
- `table(...)`: a rich table whose cells fold instead of truncating to `t…` at 80 columns.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from pipeline import progress

console = Console(stderr=True)


class Options:
    """The global options (`conceptswap --debug CMD`)."""

    debug: bool = False


def error_line(message: str) -> None:
    """One line on stderr, never wrapped by rich (a test or a log grep sees one line)."""
    console.print(f"[red]error:[/red] {message}", soft_wrap=True, highlight=False)


def fail(problems: Iterable[Any], code: int = 2) -> None:
    """Print each problem on its own line and exit (2: the input is wrong, nothing was done)."""
    problems = list(problems)
    for problem in problems:
        error_line(str(problem))
    if problems:
        raise typer.Exit(code)


class _NoTracebacks(logging.Filter):
    """Drops the traceback of a log record (Prefect logs one for every failed run)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.exc_info = None
        record.exc_text = None
        return True


def _prefect_handlers() -> list[logging.Handler]:
    loggers = [logging.getLogger()]
    loggers += [
        logging.getLogger(name)
        for name in list(logging.root.manager.loggerDict)
        if name.startswith("prefect")
    ]
    return [handler for logger in loggers for handler in logger.handlers]


@contextmanager
def expected_errors() -> Iterator[None]:
    """Turn any error of the body into one line and exit code 1 (`--debug`: the traceback)."""
    quiet = _NoTracebacks()
    handlers = [] if Options.debug else _prefect_handlers()
    for handler in handlers:
        handler.addFilter(quiet)
    try:
        yield
    except (typer.Exit, typer.Abort, KeyboardInterrupt, SystemExit):
        raise
    except Exception as error:
        if Options.debug:
            raise
        text = " ".join(str(error).split()) or type(error).__name__
        error_line(f"{text} ({type(error).__name__}; --debug shows the traceback)")
        raise typer.Exit(1) from None
    finally:
        for handler in handlers:
            handler.removeFilter(quiet)


def _rich_reporter(bar: Progress) -> progress.Reporter:
    tasks: dict[str, Any] = {}

    def report(stage: str, amount: int, total: int | None) -> None:
        if stage not in tasks:
            tasks[stage] = bar.add_task(progress.STAGES.get(stage, stage), total=total)
        elif total is not None:
            bar.update(tasks[stage], total=total)
        if amount:
            bar.advance(tasks[stage], amount)

    return report


@contextmanager
def progress_bars() -> Iterator[None]:
    """Show the library's progress (`pipeline.progress`) as bars while the body runs; quiet
    (no reporter) when stderr is not a terminal, so logs and pipes get no bar fragments."""
    if not sys.stderr.isatty():
        yield
        return
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=False) as bar:
        progress.set_reporter(_rich_reporter(bar))
        try:
            yield
        finally:
            progress.set_reporter(None)


def table(*headers: str, title: str | None = None) -> Table:
    """A table whose cells fold onto more lines rather than truncate (80-column terminals)."""
    grid = Table(title=title)
    for header in headers:
        grid.add_column(header, overflow="fold")
    return grid


__all__ = [
    "Options",
    "console",
    "error_line",
    "expected_errors",
    "fail",
    "progress_bars",
    "table",
]
