"""Every numeric option of every command has a declared range, and a value outside it is one
line naming the option, exit code 2, before anything runs.

The options are found by introspecting the CLI (the typer app's commands and their parameters),
so a new `int` or `float` option without `min=`/`max=` fails here by name; a float option must
also refuse nan and inf (`flows.cli_support.finite`), which pass any `min=`/`max=` comparison.
"""

from __future__ import annotations

import types
import typing
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import typer
from typer.testing import CliRunner

from flows.cli import app

runner = CliRunner()


def _number_type(param: Any) -> type | None:
    """`int` or `float` when the parameter holds numbers (also `int | None`, `list[float]`)."""
    annotation = param.type_descriptor.annotation  # typer's parsed annotation of the parameter
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
    if typing.get_origin(annotation) in (list, tuple):
        annotation = typing.get_args(annotation)[0]
    return annotation if annotation in (int, float) else None


def numeric_options() -> list[tuple[str, str, Any]]:
    """(command, option, parameter) for every numeric option of every command."""
    group = typer.main.get_command(app)
    found = []
    for name, command in sorted(group.commands.items()):  # type: ignore[attr-defined]
        for param in command.params:
            if param.param_type_name == "option" and _number_type(param) is not None:
                found.append((name, param.opts[0], param))
    return found


def out_of_range(param: Any) -> list[str]:
    """Values the option must refuse: just past each declared bound; nan and inf for floats."""
    number = _number_type(param)
    step = 1 if number is int else 0.5
    values = []
    if param.min is not None:
        values.append(str(number(param.min) - step))
    if param.max is not None:
        values.append(str(number(param.max) + step))
    if number is float:
        values += ["nan", "inf", "-inf"]
    return values


OPTIONS = numeric_options()
CASES = [
    pytest.param(command, option, value, id=f"{command} {option} {value}")
    for command, option, param in OPTIONS
    for value in out_of_range(param)
]


def test_the_introspection_finds_the_numeric_options() -> None:
    """A guard on the table itself: it sees the options it must see."""
    found = {(command, option) for command, option, _ in OPTIONS}
    assert {("audit", "--seed"), ("edit", "--budget-pp")} <= found


@pytest.mark.parametrize(
    ("command", "option"), [(command, option) for command, option, _ in OPTIONS]
)
def test_every_numeric_option_declares_its_range(command: str, option: str) -> None:
    param = next(p for c, o, p in OPTIONS if (c, o) == (command, option))
    assert param.min is not None or param.max is not None, (
        f"conceptswap {command} {option}: declare its range (typer.Option(min=..., max=...))"
    )


@pytest.fixture
def build(tmp_path: Path) -> Path:
    """A build with every manifest present, typed and empty: the build checks accept it, so
    only the option under test can stop the command."""
    from pipeline.records import RECORD_TYPES
    from pipeline.store import BuildStore

    store = BuildStore(tmp_path / "build")
    for kind, record in RECORD_TYPES.items():
        store.manifest_path(kind).parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(record.arrow_schema().empty_table(), store.manifest_path(kind))
    return store.root


def command_line(command: str, build: Path, option: str, value: str) -> list[str]:
    """`command [BUILD] [required options] option value`, every other input valid."""
    params = typer.main.get_command(app).commands[command].params  # type: ignore[attr-defined]
    args = [command]
    if any(p.param_type_name == "argument" for p in params):
        args.append(str(build))
    for param in params:
        if param.param_type_name == "option" and param.required:
            args += [param.opts[0], "org/name" if param.opts[0] == "--repo-id" else str(build)]
    return [*args, f"{option}={value}"]


@pytest.mark.parametrize(("command", "option", "value"), CASES)
def test_an_out_of_range_value_is_one_line_exit_2_and_runs_nothing(
    command: str, option: str, value: str, build: Path, flow_calls: list[str]
) -> None:
    result = runner.invoke(app, command_line(command, build, option, value))
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: {option}: "), result.output
    assert "Traceback" not in result.output
    assert flow_calls == []


def test_an_in_range_value_reaches_the_flow(build: Path, flow_calls: list[str]) -> None:
    """The other side of the table: the same command lines with valid numbers do run."""
    runner.invoke(app, ["audit", str(build), "--seed", "0"])
    runner.invoke(app, ["edit", str(build), "--budget-pp", "0"])
    assert flow_calls == ["audit_model", "run_edits"]
