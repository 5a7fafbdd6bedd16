"""Validation before work: every config mistake is one line naming the key and the fix, exit
code 2, in a second or two, before Prefect starts or a file is written."""

from __future__ import annotations

import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import timm  # noqa: F401  (imported once here: the timings below are validation's own)
from typer.testing import CliRunner

import pipeline.classify  # noqa: F401
from flows.cli import app
from pipeline.config import BuildConfig, ConfigError, SegmentConfig
from pipeline.names import did_you_mean
from pipeline.validate import (
    check_build,
    check_build_dir,
    check_layer,
    check_methods,
    load_build_config,
)

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


def counterfactuals_only(build: Path) -> Path:
    """A build folder with an empty, typed counterfactual manifest and nothing else."""
    from pipeline.records import Counterfactual

    build.mkdir()
    pq.write_table(Counterfactual.arrow_schema().empty_table(), build / "manifest.parquet")
    return build


def test_audit_and_edit_refuse_unknown_models_methods_and_layers(tmp_path) -> None:
    build = counterfactuals_only(tmp_path / "b")
    audit = runner.invoke(app, ["audit", str(build), "-m", "timm:tf_efficientnet_lite9"])
    assert audit.exit_code == 2 and "did you mean" in audit.output
    edit = runner.invoke(app, ["edit", str(build), "--method", "rewrite-magic"])
    (line,) = error_lines(edit.output)
    assert edit.exit_code == 2 and line.startswith("error: --method: unknown edit method 'rewr")
    plan = runner.invoke(app, ["edit", str(build), "--plan", "clases"])
    assert error_lines(plan.output) == [
        "error: --plan: unknown case plan 'clases'; did you mean classes?"
    ]
    assert not (build / "edits").exists()


def test_a_build_that_a_command_reads_is_checked_file_by_file(tmp_path) -> None:
    """Given builds broken in each way, `check_build_dir` names the folder or the file and the
    fix, one problem each; a manifest the operation does not read is never opened."""
    from pipeline.records import ConceptMask

    assert check_build_dir(tmp_path / "none", "audit")[0].message.endswith(
        "does not exist; give a build directory (conceptswap build)"
    )
    build = counterfactuals_only(tmp_path / "b")
    assert check_build_dir(build, "audit") == []
    assert check_build_dir(build, "concepts")[0].message == (
        f"{build} has no manifests/masks.parquet; build it first"
    )
    masks = build / "manifests" / "masks.parquet"
    masks.parent.mkdir()
    masks.write_bytes(b"PAR1 but not much else")
    (problem,) = check_build_dir(build, "edit")
    assert problem.key == "BUILD" and problem.message.startswith(f"{masks} is not readable")
    assert check_build_dir(build, "export") != [] and check_build_dir(build, "audit") != []
    stylized = build / "manifests" / "stylized.parquet"
    stylized.write_bytes(b"")  # only audit reads it
    pq.write_table(ConceptMask.arrow_schema().empty_table(), masks)
    assert check_build_dir(build, "edit") == [] and len(check_build_dir(build, "audit")) == 1
    pq.write_table(pa.table({"mask_id": ["m"]}), masks)
    assert "lacks the masks columns image_id, concept, score" in (
        check_build_dir(build, "concepts")[0].message
    )


def test_one_config_parser_for_the_library_and_the_command_line(tmp_path) -> None:
    """`load_build_config` parses with `BuildConfig.from_yaml`: the same file gives the same
    config, and a file that cannot be parsed the same message."""
    good = tmp_path / "good.yaml"
    good.write_text("name: cars\nseed: 3\nresolved: {versions: {}}\n")
    assert load_build_config(good) == (BuildConfig.from_yaml(good), [])
    for text, reason in (
        ("a: [1, 2\n", "is not valid YAML at line 2, column 1"),
        ("- a list\n", "must be a mapping, found list"),
    ):
        bad = tmp_path / "bad.yaml"
        bad.write_text(text)
        with pytest.raises(ConfigError, match=reason) as raised:
            BuildConfig.from_yaml(bad)
        config, problems = load_build_config(bad)
        assert config is None and [str(p) for p in problems] == [f"--config: {raised.value}"]


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
