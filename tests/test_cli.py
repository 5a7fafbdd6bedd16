"""The command line: listing commands, doctor, and clear errors for bad arguments."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from flows.cli import app
from flows.cli_support import DEPRECATED_BUILD_OPTION, Options, quiet_flow_logs

runner = CliRunner()


def empty_build(root: Path) -> Path:
    """A build whose manifests are all present, typed and empty: every check accepts it."""
    from pipeline.records import RECORD_TYPES
    from pipeline.store import BuildStore

    store = BuildStore(root)
    for kind, record in RECORD_TYPES.items():
        store.manifest_path(kind).parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(record.arrow_schema().empty_table(), store.manifest_path(kind))
    return root


def lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.strip()]


def test_doctor_reports_packaged_weights_and_never_a_token(monkeypatch) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_secret_value_123")
    result = runner.invoke(app, ["doctor"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    line = next(row for row in result.output.splitlines() if "timm:tf_efficientnet_lite0" in row)
    assert "yes" in line
    assert "hf_secret_value_123" not in result.output


def test_samples_and_textures_list_their_licenses() -> None:
    samples = runner.invoke(app, ["samples"], env={"COLUMNS": "200"})
    assert samples.exit_code == 0 and "espresso" in samples.output
    textures = runner.invoke(app, ["textures"], env={"COLUMNS": "200"})
    assert textures.exit_code == 0 and "snow/0, snow/1, snow/2" in textures.output


def test_bad_config_is_a_clear_error_before_any_work(tmp_path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("segment:\n  backnd: cam\n")
    result = runner.invoke(app, ["build", "--config", str(config), "--out", str(tmp_path / "b")])
    assert result.exit_code == 2
    assert "bad.yaml" in result.output and "backnd" in result.output
    assert not (tmp_path / "b").exists()


def test_concepts_of_a_missing_build_fails_clearly(tmp_path) -> None:
    result = runner.invoke(app, ["concepts", str(tmp_path / "nothing")])
    assert result.exit_code == 2


def test_edit_runs_the_flow_on_the_chosen_cases(tmp_path, monkeypatch, prefect_harness) -> None:
    """`conceptswap edit` → the `run_edits` flow → `pipeline.editing.runner.run_edits`, with the
    command's options; the comparison is printed."""
    from pipeline.editing import runner as edit_runner
    from pipeline.store import edits_layout

    build = empty_build(tmp_path / "build")
    calls, covariances = [], []

    def fake_resolve(build_dir, cases=None, plan="auto"):
        return [type("Case", (), {"case_id": c})() for c in (cases or ["a", "b", "c"])]

    def fake_run(build_dir, config, *, cases=None, **kwargs):
        calls.append(
            (config.model, config.layer, config.method_names, list(cases), config.budget_pp)
        )
        covariances.append(config.covariance.images)
        out = edits_layout.edits_dir(build_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / edits_layout.COMPARISON_MD).write_text("| method | SR |\n| rewrite | 0.5 |\n")
        return out

    monkeypatch.setattr(edit_runner, "resolve_cases", fake_resolve)
    monkeypatch.setattr(edit_runner, "run_edits", fake_run)
    monkeypatch.setattr("pipeline.report.edits.write_comparison", lambda build_dir, **_: None)
    args = ["edit", str(build), "--layer", "blocks.6.0.conv_pwl"]
    args += ["--method", "rewrite-closed", "--case", "b", "--case", "c", "--budget-pp", "0.5"]
    result = runner.invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert calls == [
        ("timm:tf_efficientnet_lite0", "blocks.6.0.conv_pwl", ["rewrite-closed"], ["b", "c"], 0.5)
    ]
    assert "| rewrite | 0.5 |" in result.output
    assert covariances == [[]]  # default: the build's images no case uses

    (tmp_path / "val").mkdir()
    (tmp_path / "photos").mkdir()
    mix = ["--covariance", str(tmp_path / "val"), "--covariance", str(tmp_path / "photos")]
    result = runner.invoke(app, [*args, *mix], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert covariances[-1] == [str(tmp_path / "val"), str(tmp_path / "photos")]
    hub = runner.invoke(app, [*args, "--covariance", "hf:user/photos@validation"])
    assert hub.exit_code == 0, hub.output
    assert covariances[-1] == ["hf:user/photos@validation"]  # passed on verbatim
    bad = runner.invoke(app, [*args, "--covariance", str(tmp_path / "absent")])
    assert bad.exit_code == 2 and "is not a folder" in bad.output

    # a config file, with the command's options on top
    config = tmp_path / "edit.yaml"
    config.write_text(
        "methods: [rewrite, finetune-local]\nbudget_pp: 2.0\n"
        f"covariance: {{images: ['{tmp_path / 'val'}'], views: windows}}\n"
    )
    result = runner.invoke(app, ["edit", str(build), "-c", str(config), "--case", "a"])
    assert result.exit_code == 0, result.output
    assert calls[-1] == (
        "timm:tf_efficientnet_lite0",
        None,
        ["rewrite", "finetune-local"],
        ["a"],
        2.0,
    )
    assert covariances[-1] == [str(tmp_path / "val")]
    result = runner.invoke(app, ["edit", str(build), "-c", str(config), "--budget-pp", "0.25"])
    assert result.exit_code == 0 and calls[-1][-1] == 0.25
    config.write_text("budget_pp: -3\n")
    result = runner.invoke(app, ["edit", str(build), "-c", str(config)])
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1
    assert "budget_pp" in result.output and str(config) in result.output
    config.write_text("methods: [rewrite-closd]\n")
    result = runner.invoke(app, ["edit", str(build), "-c", str(config)])
    assert result.exit_code == 2 and "unknown edit method 'rewrite-closd'" in result.output

    missing = runner.invoke(app, ["edit", str(tmp_path / "nothing")])
    assert missing.exit_code == 2 and "does not exist" in missing.output


# -- every command checks its inputs before Prefect starts --------------------------------------
@pytest.fixture
def tiny_build_copy(tmp_path, tmp_path_factory) -> Path:
    """A copy of the session's tiny finished build (3 photos, 12 counterfactuals)."""
    from tiny_export_build import session_build

    copy = tmp_path / "build"
    shutil.copytree(session_build(tmp_path_factory.getbasetemp()), copy)
    return copy


@pytest.mark.parametrize(
    ("command", "manifest"),
    [
        (["audit"], "manifest.parquet"),
        (["audit"], "manifests/stylized.parquet"),
        (["edit"], "manifests/images.parquet"),
        (["concepts"], "manifests/masks.parquet"),
        (["export", "--out", "OUT"], "manifests/styles.parquet"),
        (["publish", "--repo-id", "org/name", "--dry-run"], "manifest.parquet"),
    ],
)
def test_a_truncated_manifest_is_one_line_exit_2_before_any_flow(
    tmp_path, tiny_build_copy, flow_calls, command, manifest
) -> None:
    """Given a finished build whose manifest lost its second half (a full disk, a copy cut
    short), when a command that reads it runs, then it names the file in one line, exit code 2,
    and no flow (so no Prefect server) starts."""
    path = tiny_build_copy / manifest
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    name, *options = command
    options = [str(tmp_path / "out") if o == "OUT" else o for o in options]
    result = runner.invoke(app, [name, str(tiny_build_copy), *options])
    assert result.exit_code == 2, result.output
    assert lines(result.output) == [
        f"error: BUILD: {path} is not readable Parquet (Parquet magic bytes not found in "
        "footer); rewrite it with `conceptswap build --force` and the build's config"
    ]
    assert flow_calls == []


def test_a_manifest_of_another_schema_names_the_column(tmp_path, flow_calls) -> None:
    import pyarrow as pa

    build = empty_build(tmp_path / "build")
    masks = build / "manifests" / "masks.parquet"
    pq.write_table(pa.table({"mask_id": ["a"], "score": ["high"]}), masks)
    result = runner.invoke(app, ["concepts", str(build)])
    assert result.exit_code == 2 and len(lines(result.output)) == 1, result.output
    assert str(masks) in result.output and "columns image_id, concept" in result.output
    as_text = {name: ["x"] for name in empty_schema("masks").names}  # every column a string
    pq.write_table(pa.table(as_text), masks)
    typed = runner.invoke(app, ["edit", str(build)])
    assert typed.exit_code == 2 and "column score is string, not double" in typed.output
    assert flow_calls == []


def empty_schema(kind: str):
    from pipeline.records import RECORD_TYPES

    return RECORD_TYPES[kind].arrow_schema()


def test_a_negative_budget_is_one_line_exit_2_before_any_flow(tmp_path, flow_calls) -> None:
    build = empty_build(tmp_path / "build")
    for value in ("-3", "nan", "inf"):
        result = runner.invoke(app, ["edit", str(build), "--budget-pp", value])
        assert result.exit_code == 2, result.output
        (line,) = lines(result.output)
        assert line.startswith("error: --budget-pp: "), line
    assert flow_calls == []


def test_every_command_takes_the_build_first_and_build_option_still_works(
    tmp_path, flow_calls
) -> None:
    """The build is the first argument of audit, edit, concepts, export and publish; the old
    `--build/-b` of audit and edit still works, with a one-line note."""
    build = empty_build(tmp_path / "build")
    out = str(tmp_path / "out")
    for args in (
        ["audit", str(build)],
        ["edit", str(build)],
        ["concepts", str(build)],
        ["export", str(build), "--out", out],
        ["publish", str(build), "--repo-id", "org/name", "--dry-run"],
    ):
        runner.invoke(app, args)
    assert flow_calls == [
        "audit_model",
        "run_edits",
        "build_concept_stats",
        "export_build",
        "publish",
    ]
    old = runner.invoke(app, ["audit", "--build", str(tmp_path / "nothing")])
    assert old.exit_code == 2 and lines(old.output) == [
        f"note: {DEPRECATED_BUILD_OPTION}",
        f"error: BUILD: {tmp_path / 'nothing'} does not exist; give a build directory "
        "(conceptswap build)",
    ]
    runner.invoke(app, ["edit", "-b", str(build)])
    assert flow_calls[-1] == "run_edits"
    twice = runner.invoke(app, ["edit", str(build), "-b", str(tmp_path / "other")])
    assert twice.exit_code == 2 and "give the build once" in twice.output
    none = runner.invoke(app, ["audit"])
    assert none.exit_code == 2 and lines(none.output) == [
        "error: BUILD: missing; give the build directory as the first argument"
    ]


def test_a_bad_command_line_is_one_line_exit_2(tmp_path) -> None:
    build = empty_build(tmp_path / "build")
    unknown = runner.invoke(app, ["audit", str(build), "--modle", "x"])
    assert unknown.exit_code == 2 and len(lines(unknown.output)) == 1
    assert lines(unknown.output)[0].startswith("error: No such option: --modle")
    command = runner.invoke(app, ["audti"])
    assert command.exit_code == 2 and len(lines(command.output)) == 1


def test_an_error_inside_a_flow_is_one_line_exit_1_traceback_with_debug(
    tmp_path, monkeypatch
) -> None:
    import flows.audit

    def failing_flow(*args, **kwargs):
        raise ValueError("12 counterfactuals name a stylized_id missing from the manifests")

    monkeypatch.setattr(flows.audit, "audit_model", failing_flow)
    build = empty_build(tmp_path / "build")
    result = runner.invoke(app, ["audit", str(build)])
    assert result.exit_code == 1
    assert lines(result.output) == [
        "error: 12 counterfactuals name a stylized_id missing from the manifests "
        "(ValueError; --debug shows the traceback)"
    ]
    debug = runner.invoke(app, ["--debug", "audit", str(build)])
    assert isinstance(debug.exception, ValueError)


def test_prefect_run_failures_are_logged_without_tracebacks(monkeypatch) -> None:
    """Inside a flow run, Prefect's reports of the failure (with tracebacks) are dropped; its
    other lines stay, without tracebacks. The command prints the error once itself."""
    import io

    monkeypatch.setattr(Options, "debug", False)  # as without the global --debug

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    runs, other = logging.getLogger("prefect.task_runs"), logging.getLogger("prefect.test")
    for logger in (runs, other):
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    try:
        with quiet_flow_logs():
            try:
                raise ValueError("boom")
            except ValueError:
                runs.error("Task run failed with exception: ValueError('boom')", exc_info=True)
                runs.info("Finished in state Failed('boom')")
                runs.info("Beginning task run")
                other.warning("a warning with a traceback", exc_info=True)
    finally:
        for logger in (runs, other):
            logger.removeHandler(handler)
    assert stream.getvalue().splitlines() == ["Beginning task run", "a warning with a traceback"]
