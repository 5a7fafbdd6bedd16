"""Named failpoints: what arms them, what they do, that every one is reached by a crash test,
and the edit and export paths killed at theirs.

The build's points are each killed in `tests/test_crash_resume.py`; here the edit run and the
export are killed at theirs in a child process (SIGKILL to itself), then resumed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from test_crash_resume import BUILD_POINTS
from tiny_export_build import session_build

from pipeline import failpoints
from pipeline.failpoints import ENV, POINTS, FailpointError, failpoint
from pipeline.publish.export import _staging_prefix, _sweep_staging, export_build, read_export_bytes
from pipeline.store.atomic import TEMP_PREFIX

REPO = Path(__file__).resolve().parents[1]
EDIT_POINTS = ("edit.after_case", "edit.before_results")
EXPORT_POINTS = ("export.after_rows", "export.old_set_aside")
TIMEOUT_S = 300


@pytest.fixture
def disarmed():
    yield
    failpoints.arm("")


def test_an_armed_point_raises_on_its_hit_and_others_do_nothing(disarmed) -> None:
    failpoints.arm("shard.after:raise@2")
    failpoint("consolidate.before")  # not armed
    failpoint("shard.after")  # hit 1: not yet
    with pytest.raises(FailpointError, match=r"shard\.after"):
        failpoint("shard.after")
    failpoint("shard.after")  # hit 3: past it
    failpoints.arm("")
    failpoint("shard.after")


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ("shard.aftr:kill", "unknown failpoint 'shard.aftr'"),
        ("shard.after:explode", "the action must be one of kill, raise"),
        ("shard.after:kill@0", "@HIT must be a positive integer"),
        ("shard.after:kill@x", "@HIT must be a positive integer"),
    ],
)
def test_a_bad_spec_is_refused_naming_the_variable_and_the_item(spec: str, problem: str) -> None:
    with pytest.raises(ValueError, match=re.escape(problem)) as error:
        failpoints.parse(spec)
    assert ENV in str(error.value)


def test_a_kill_is_sigkill_to_the_process_itself_and_names_the_point() -> None:
    child = subprocess.run(
        [sys.executable, "-c", "from pipeline.failpoints import failpoint\n"
         "failpoint('consolidate.before')\nprint('after')"],
        env={**os.environ, ENV: "consolidate.before:kill", "PYTHONPATH": str(REPO)},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert child.returncode == -signal.SIGKILL
    assert child.stdout == ""
    assert child.stderr.strip() == "failpoint consolidate.before: kill (hit 1)"


def declared_in_code() -> set[str]:
    """Every point the library calls (literal names; `consolidate.after_{kind}` expanded)."""
    names: set[str] = set()
    for path in (REPO / "pipeline").rglob("*.py"):
        for name in re.findall(r'failpoint\(f?"([^"]+)"\)', path.read_text(encoding="utf-8")):
            if name == "consolidate.after_{kind}":
                names |= {f"consolidate.after_{k}" for k in failpoints.MANIFEST_KINDS[:4]}
            else:
                names.add(name)
    return names


def test_every_point_is_called_declared_and_killed_by_a_crash_test() -> None:
    assert declared_in_code() == set(POINTS)
    killed = {point.partition("@")[0] for point in BUILD_POINTS} | {*EDIT_POINTS, *EXPORT_POINTS}
    assert killed == set(POINTS)


def run_child(script: str, args: list[str], point: str | None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'tests'}"}
    env.pop(ENV, None)
    if point:
        env[ENV] = f"{point}:kill"
    return subprocess.run(
        [sys.executable, "-c", script, *args],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=TIMEOUT_S,
    )  # fmt: skip


def assert_killed_at(child: subprocess.CompletedProcess, point: str) -> None:
    assert child.returncode == -signal.SIGKILL, child.stderr[-3000:]
    assert child.stderr.strip().splitlines()[-1].startswith(f"failpoint {point}: kill")


# -- edit ---------------------------------------------------------------------------------------
EDIT_CHILD = """
import sys, torch
torch.set_num_threads(1)
from test_editing_eval import GRIDS, edit_config, tiny_classifier
from pipeline.editing import runner
config = edit_config(["rewrite-closed", "finetune-local"], GRIDS, layer="mid")
runner.run_edits(sys.argv[1], config, classifier=tiny_classifier(),
                 log=lambda m: print(m, flush=True))
"""
VOLATILE = re.compile(r"_s$|^reused_delta$")  # timings and whether a delta was loaded


def edit_build(root: Path) -> Path:
    from test_editing_eval import write_tiny_build

    return write_tiny_build(root).root


def stable(results: pd.DataFrame) -> pd.DataFrame:
    columns = [c for c in results.columns if not VOLATILE.search(c)]
    order = [c for c in ("case_id", "method", "group") if c in columns]
    return results[columns].sort_values(order).reset_index(drop=True)


@pytest.mark.slow
def test_a_killed_edit_run_resumes_without_redoing_cases_or_duplicating_rows(
    tmp_path: Path,
) -> None:
    reference, crashed = edit_build(tmp_path / "reference"), edit_build(tmp_path / "crashed")
    assert run_child(EDIT_CHILD, [str(reference)], None).returncode == 0

    first = run_child(EDIT_CHILD, [str(crashed)], "edit.after_case")
    assert_killed_at(first, "edit.after_case")
    results = pd.read_parquet(crashed / "edits" / "results.parquet")
    assert results["case_id"].nunique() == 1  # the first case, whole
    done_case = results["case_id"].iloc[0]

    second = run_child(EDIT_CHILD, [str(crashed)], "edit.before_results")
    assert_killed_at(second, "edit.before_results")
    assert f"{done_case}: results exist, skipped" in second.stderr + second.stdout
    assert pd.read_parquet(crashed / "edits" / "results.parquet")["case_id"].nunique() == 1

    last = run_child(EDIT_CHILD, [str(crashed)], None)
    assert last.returncode == 0, last.stderr[-3000:]
    resumed = pd.read_parquet(crashed / "edits" / "results.parquet")
    expected = pd.read_parquet(reference / "edits" / "results.parquet")
    assert len(resumed) == len(expected)
    pd.testing.assert_frame_equal(stable(resumed), stable(expected))
    # the second case's deltas were saved before the kill: loaded, not edited again
    later = resumed[resumed["case_id"] != done_case]
    assert len(later) and later["reused_delta"].all()
    assert not resumed[resumed["case_id"] == done_case]["reused_delta"].any()
    # the per-style breakdown, written before the results, is neither lost nor doubled
    key = ["case_id", "method", "candidate_index", "group", "style_image"]
    styles = [
        pd.read_parquet(build / "edits" / "style_outcomes.parquet").sort_values(key)
        for build in (crashed, reference)
    ]
    pd.testing.assert_frame_equal(*(s.reset_index(drop=True) for s in styles))
    assert not list(crashed.rglob(f"{TEMP_PREFIX}*"))


# -- export -------------------------------------------------------------------------------------
EXPORT_CHILD = """
import sys
from pipeline.publish.export import export_build
export_build(sys.argv[1], sys.argv[2], format="parquet")
"""


@pytest.fixture(scope="module")
def export_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return session_build(tmp_path_factory.getbasetemp())


def leftovers(out: Path) -> list[Path]:
    return sorted(out.parent.glob(f"{_staging_prefix(out)}*"))


@pytest.mark.slow
def test_a_killed_export_leaves_no_output_folder_and_the_next_one_completes(
    tmp_path: Path, export_source: Path
) -> None:
    out = tmp_path / "out"  # the card names the folder: the reference is made there, then removed
    expected = read_export_bytes(export_build(export_source, out, format="parquet").root)
    shutil.rmtree(out)
    child = run_child(EXPORT_CHILD, [str(export_source), str(out)], "export.after_rows")
    assert_killed_at(child, "export.after_rows")
    assert not out.exists() and len(leftovers(out)) == 1  # the staging folder, never `out`
    export_build(export_source, out, format="parquet")
    assert read_export_bytes(out) == expected and not leftovers(out)


@pytest.mark.slow
def test_a_killed_re_export_keeps_the_old_export_readable(
    tmp_path: Path, export_source: Path
) -> None:
    out = tmp_path / "out"
    expected = read_export_bytes(export_build(export_source, out, format="parquet").root)
    child = run_child(EXPORT_CHILD, [str(export_source), str(out)], "export.after_rows")
    assert_killed_at(child, "export.after_rows")
    assert read_export_bytes(out) == expected  # the old export, untouched

    child = run_child(EXPORT_CHILD, [str(export_source), str(out)], "export.old_set_aside")
    assert_killed_at(child, "export.old_set_aside")
    assert not out.exists()  # the old one is aside under the staging prefix, complete
    assert _sweep_staging(out) == 2 and read_export_bytes(out) == expected  # put back
    export_build(export_source, out, format="parquet")
    assert read_export_bytes(out) == expected and not leftovers(out)


def test_json_of_a_failpoint_spec_round_trips_through_the_environment() -> None:
    """The spec is plain text in one variable: a Dask worker inherits it with the rest."""
    spec = "atomic.before_rename:kill@3,edit.after_case:raise"
    assert json.loads(json.dumps(spec)) == spec
    assert failpoints.parse(spec) == {
        "atomic.before_rename": failpoints.Trigger("kill", 3),
        "edit.after_case": failpoints.Trigger("raise", 1),
    }
