"""Validation before work: every config mistake is one line naming the key and the fix, exit
code 2, in a second or two, before Prefect starts or a file is written."""

from __future__ import annotations

import time

import pytest
import timm  # noqa: F401  (imported once here: the timings below are validation's own)
from typer.testing import CliRunner

import pipeline.classify  # noqa: F401
from flows.cli import app
from pipeline.config import BuildConfig, SegmentConfig
from pipeline.names import did_you_mean
from pipeline.validate import check_build, check_layer, check_methods, load_build_config

runner = CliRunner()
MAX_SECONDS = 8.0  # validation only (models never loaded, Prefect never started); 2 shared cores


def error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("error:")]


def build_with(tmp_path, yaml_text: str, out=None):
    config = tmp_path / "c.yaml"
    config.write_text(yaml_text)
    target = out or tmp_path / "build"
    started = time.perf_counter()
    result = runner.invoke(app, ["build", "-c", str(config), "--out", str(target)])
    return result, time.perf_counter() - started, target


@pytest.mark.parametrize(
    ("yaml_text", "key", "hint"),
    [
        ("segment: {concepts: [object, wheell]}\n", "segment.concepts[1]", "did you mean wheel?"),
        ("segment: {concepts: [road]}\n", "segment.concepts[0]", "use segment.backend"),
        ("classifier: {name: 'timm:resnet9000'}\n", "classifier.name", "did you mean"),
        ("classifier: {name: resnet50}\n", "classifier.name", "did you mean timm:resnet50?"),
        ("stylize: {textures: [snw]}\n", "stylize.textures[0]", "did you mean snow?"),
        ("segment: {backnd: cam}\n", "segment.backnd", "did you mean backend?"),
        ("segment: {backend: camm}\n", "segment.backend", "did you mean cam?"),
        ("source: {kind: samples, names: [cofee]}\n", "source.names[0]", "did you mean coffee?"),
        ("source: {kind: samples, split: test}\n", "source.split", "not used by source kind"),
        ("classifier: {device: cuda}\n", "classifier.device", "no GPU"),
    ],
)
def test_each_config_mistake_is_one_line_exit_2_nothing_written(
    tmp_path, yaml_text, key, hint
) -> None:
    import torch

    if "cuda" in yaml_text and torch.cuda.is_available():
        pytest.skip("a GPU is visible here: cuda is a valid device")
    result, seconds, target = build_with(tmp_path, yaml_text)
    assert result.exit_code == 2, result.output
    lines = error_lines(result.output)
    assert len(lines) == 1, result.output
    assert lines[0].startswith(f"error: {key}: ") and hint in lines[0], lines[0]
    assert "Traceback" not in result.output and "temporary server" not in result.output
    assert not target.exists()
    assert seconds < MAX_SECONDS, seconds


def test_several_mistakes_give_one_line_each(tmp_path) -> None:
    text = "segment: {concepts: [wheell]}\nstylize: {textures: [snw, wod]}\n"
    result, _, target = build_with(tmp_path, text)
    assert result.exit_code == 2
    assert len(error_lines(result.output)) == 3
    assert not target.exists()


def test_missing_or_empty_folder_and_an_out_that_is_a_file(tmp_path) -> None:
    missing, _, target = build_with(tmp_path, f"source: {{kind: folder, path: {tmp_path}/nope}}\n")
    assert missing.exit_code == 2 and "source.path: no folder" in missing.output
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no image here")
    empty, _, _ = build_with(tmp_path, f"source: {{kind: folder, path: {tmp_path}/empty}}\n")
    assert empty.exit_code == 2 and "no image files under" in empty.output
    assert not target.exists()
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    result, seconds, _ = build_with(tmp_path, "seed: 1\n", out=a_file)
    assert result.exit_code == 2 and error_lines(result.output) == [
        f"error: --out: {a_file} is a file; give a folder for the build"
    ]
    assert a_file.read_text() == "x" and seconds < MAX_SECONDS


def test_audit_and_edit_refuse_unknown_models_methods_and_layers(tmp_path) -> None:
    build = tmp_path / "b"
    build.mkdir()
    (build / "manifest.parquet").write_bytes(b"")
    audit = runner.invoke(app, ["audit", "-b", str(build), "-m", "timm:tf_efficientnet_lite9"])
    assert audit.exit_code == 2 and "did you mean" in audit.output
    edit = runner.invoke(app, ["edit", "-b", str(build), "--method", "rewrite-magic"])
    assert edit.exit_code == 2 and error_lines(edit.output)[0].startswith("error: --method:")
    assert not (build / "edits").exists()


def test_library_checks_return_problems_without_printing(capsys) -> None:
    from torch import nn

    config = BuildConfig(segment=SegmentConfig(concepts=["wheell"]))
    problems = check_build(config, None)
    assert [p.key for p in problems] == ["segment.concepts[0]"]
    assert "did you mean rewrite-closed" in check_methods(["rewrite", "rewrite-closd"])[0].message
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.Conv2d(4, 4, 3, groups=4), nn.Linear(4, 2))
    assert check_layer(model, "0") == []
    assert check_layer(model, "3")[0].message.startswith("the model has no layer '3'")
    assert "grouped" in check_layer(model, "1")[0].message
    assert capsys.readouterr().out == ""
    assert did_you_mean("zzz", ["a", "b"], "things") == "; known things: a, b"


def test_a_schema_error_names_the_key_and_the_file(tmp_path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("shard_size: 0\nimage: {max_side: big}\n")
    config, problems = load_build_config(path)
    assert config is None
    assert [p.key for p in problems] == ["shard_size", "image.max_side"]
    assert all(str(path) in p.message for p in problems)
