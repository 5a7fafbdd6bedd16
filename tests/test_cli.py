"""The command line: listing commands, doctor, and clear errors for bad arguments."""

from __future__ import annotations

from typer.testing import CliRunner

from pipeline.cli import app

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
