"""What every `conceptswap` command shares: one-line errors, progress bars, tables that fit.

Every error of every command ends as `error: ...` lines on stderr and an exit code, through
`error_line`:

- `OneLineErrors`: the command group; a bad command line (an option out of its range, an
  unknown option, a missing argument) is one line naming the option, exit code 2, before the
  command runs;
- `fail(problems)`: the validation problems (`pipeline.validate.Problem`), one line each, then
  exit code 2 (a usage error: nothing was done);
- `expected_errors()`: any error of a command becomes one line and exit code 1 (no GPU, Hub
  unreachable, no token, a file that vanished), or 2 for the error types the command names as
  its input's fault; `--debug` (the global option) re-raises it with its traceback;
- `quiet_flow_logs()`: around a flow run, Prefect logs its lines without tracebacks and without
  its reports of a failed run (the error itself reaches `expected_errors`); `--debug` keeps them;
- `finite`: the callback of a float option, which refuses nan and inf (they pass `min=`/`max=`);
- `build_argument(...)`: the build directory, the first argument of every command that reads one
  (the old `--build/-b` option still works, with a note);
- `progress_bars()`: rich progress bars (count, elapsed, ETA) for whatever the library reports
  through `pipeline.progress`, quiet when stderr is not a terminal;
- `table(...)`: a rich table whose cells fold instead of truncating to `t…` at 80 columns.
"""

from __future__ import annotations

import logging
import math
import sys
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
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
from typer._click.exceptions import (  # typer vendors click: its errors are these classes
    BadParameter,
    ClickException,
    MissingParameter,
    NoArgsIsHelpError,
)
from typer.core import TyperGroup

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


def usage_message(error: ClickException) -> str:
    """A command-line error as one line: `--seed: input should be ...`, `Missing argument ...`."""
    param = getattr(error, "param", None)
    if isinstance(error, BadParameter) and not isinstance(error, MissingParameter) and param:
        name = param.opts[0] if param.param_type_name == "option" else param.human_readable_name
        message = error.message[:1].lower() + error.message[1:]
        return " ".join(f"{name}: {message}".split()).rstrip(".")
    text = " ".join(error.format_message().split()).rstrip(".")
    ctx = getattr(error, "ctx", None)
    return f"{text} (see {ctx.command_path} --help)" if ctx is not None else text


class OneLineErrors(TyperGroup):
    """The CLI's command group: a command-line error is one `error:` line and exit code 2, the
    same as every other error of a command, instead of a usage block and a framed panel."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            result = super().main(args, prog_name, complete_var, False, **extra)
        except NoArgsIsHelpError as error:
            sys.exit(error.exit_code)  # the help is already printed
        except ClickException as error:
            error_line(usage_message(error))
            sys.exit(error.exit_code)
        except typer.Abort:
            error_line("aborted")
            sys.exit(1)
        sys.exit(result if isinstance(result, int) else 0)


def finite(value: float | None) -> float | None:
    """Option callback: nan and inf are no numbers of a range (`min=0` lets inf through)."""
    if value is not None and not math.isfinite(value):
        raise typer.BadParameter(f"{value} is not a finite number")
    return value


DEPRECATED_BUILD_OPTION = "--build is deprecated: pass the build directory as the first argument"


def build_argument(positional: Path | None, option: Path | None) -> Path:
    """The build directory of a command: its first argument, or the old `--build/-b` option
    (hidden, with a note), so that every command takes the build the same way."""
    if option is not None:
        console.print(f"[yellow]note:[/yellow] {DEPRECATED_BUILD_OPTION}", soft_wrap=True)
        if positional is not None and positional != option:
            fail([f"BUILD: {positional} and --build {option} differ; give the build once"])
    chosen = positional if positional is not None else option
    if chosen is None:
        fail(["BUILD: missing; give the build directory as the first argument"])
    assert chosen is not None
    return chosen


class _NoTracebacks(logging.Filter):
    """Drops the tracebacks of log records, and the lines in which a task or flow run reports
    its failure (Prefect logs the error four times, with a traceback, for one failed task):
    `expected_errors` prints that error once."""

    RUN_LOGGERS = ("prefect.task_runs", "prefect.flow_runs")

    def filter(self, record: logging.LogRecord) -> bool:
        record.exc_info = None
        record.exc_text = None
        if record.name not in self.RUN_LOGGERS:
            return True
        failed = str(record.msg).startswith("Finished in state Failed")
        return record.levelno < logging.ERROR and not failed


def _prefect_handlers() -> list[logging.Handler]:
    loggers = [logging.getLogger()]
    loggers += [
        logging.getLogger(name)
        for name in list(logging.root.manager.loggerDict)
        if name.startswith("prefect")
    ]
    return [handler for logger in loggers for handler in logger.handlers]


@contextmanager
def quiet_flow_logs() -> Iterator[None]:
    """Prefect's log lines without the tracebacks it logs for a failed task or flow run: the
    error reaches `expected_errors`, which prints it once (`--debug`: the tracebacks too).

    Enter it after importing the flow: Prefect sets up its log handlers when first imported."""
    quiet = _NoTracebacks()
    handlers = [] if Options.debug else _prefect_handlers()
    for handler in handlers:
        handler.addFilter(quiet)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(quiet)


@contextmanager
def expected_errors(usage: tuple[type[Exception], ...] = ()) -> Iterator[None]:
    """Turn any error of the body into one line and exit code 1 (`--debug`: the traceback);
    errors of the `usage` types are the input's fault: the message alone, exit code 2."""
    try:
        yield
    except (typer.Exit, typer.Abort, KeyboardInterrupt, SystemExit):
        raise
    except usage as error:
        if Options.debug:
            raise
        error_line(" ".join(str(error).split()) or type(error).__name__)
        raise typer.Exit(2) from None
    except Exception as error:
        if Options.debug:
            raise
        text = " ".join(str(error).split()) or type(error).__name__
        error_line(f"{text} ({type(error).__name__}; --debug shows the traceback)")
        raise typer.Exit(1) from None


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
    "DEPRECATED_BUILD_OPTION",
    "OneLineErrors",
    "Options",
    "build_argument",
    "console",
    "error_line",
    "expected_errors",
    "fail",
    "finite",
    "progress_bars",
    "quiet_flow_logs",
    "table",
    "usage_message",
]
