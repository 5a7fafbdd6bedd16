"""The command line: listing commands, doctor, and clear errors for bad arguments."""

from __future__ import annotations

from typer.testing import CliRunner

from flows.cli import app

runner = CliRunner()


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

    build = tmp_path / "build"
    build.mkdir()
    (build / "manifest.parquet").write_bytes(b"")
    calls, covariances = [], []

    def fake_resolve(build_dir, cases=None):
        return [type("Case", (), {"case_id": c})() for c in (cases or ["a", "b", "c"])]

    def fake_run(build_dir, model, layer, methods, **kwargs):
        calls.append((model, layer, list(methods), list(kwargs["cases"]), kwargs["budget_pp"]))
        covariances.append(kwargs["covariance_images"])
        out = edits_layout.edits_dir(build_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / edits_layout.COMPARISON_MD).write_text("| method | SR |\n| rewrite | 0.5 |\n")
        return out

    monkeypatch.setattr(edit_runner, "resolve_cases", fake_resolve)
    monkeypatch.setattr(edit_runner, "run_edits", fake_run)
    monkeypatch.setattr("pipeline.report.edits.write_comparison", lambda build_dir: None)
    args = ["edit", "--build", str(build), "--layer", "blocks.6.0.conv_pwl"]
    args += ["--method", "rewrite-closed", "--case", "b", "--case", "c", "--budget-pp", "0.5"]
    result = runner.invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert calls == [
        ("timm:tf_efficientnet_lite0", "blocks.6.0.conv_pwl", ["rewrite-closed"], ["b", "c"], 0.5)
    ]
    assert "| rewrite | 0.5 |" in result.output
    assert covariances == [None]  # default: the build's images no case uses

    (tmp_path / "val").mkdir()
    (tmp_path / "photos").mkdir()
    mix = ["--covariance", str(tmp_path / "val"), "--covariance", str(tmp_path / "photos")]
    result = runner.invoke(app, [*args, *mix], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert covariances[-1] == [str(tmp_path / "val"), str(tmp_path / "photos")]
    hub = runner.invoke(app, [*args, "--covariance", "hf:user/photos@validation"])
    assert hub.exit_code == 0, hub.output
    assert covariances[-1] == "hf:user/photos@validation"  # passed on verbatim
    bad = runner.invoke(app, [*args, "--covariance", str(tmp_path / "absent")])
    assert bad.exit_code == 2 and "is not a folder" in bad.output

    missing = runner.invoke(app, ["edit", "--build", str(tmp_path / "nothing")])
    assert missing.exit_code == 2 and "no manifest.parquet" in missing.output
