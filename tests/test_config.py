"""Build config: YAML in, validation with file-named errors, resolved YAML out."""

from __future__ import annotations

import pytest

from pipeline.config import BuildConfig, ConfigError


def test_demo_defaults_are_the_offline_profile() -> None:
    config = BuildConfig.demo()
    assert config.source.kind == "samples"
    assert config.segment.backend == "cam"
    assert config.stylize.backend == "texture"
    assert config.classifier.name == "timm:tf_efficientnet_lite0"
    assert config.transform.blend == 0.8


def test_yaml_round_trip(tmp_path) -> None:
    path = tmp_path / "build.yaml"
    config = BuildConfig.model_validate(
        {"name": "cars", "seed": 7, "stylize": {"textures": ["snow"]}}
    )
    path.write_text(config.to_yaml())
    assert BuildConfig.from_yaml(path) == config


def test_unknown_key_is_an_error_naming_the_file(tmp_path) -> None:
    path = tmp_path / "typo.yaml"
    path.write_text("segment:\n  backnd: cam\n")
    with pytest.raises(ConfigError, match=r"typo\.yaml") as caught:
        BuildConfig.from_yaml(path)
    assert "backnd" in str(caught.value)


def test_folder_source_needs_a_path(tmp_path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("source:\n  kind: folder\n")
    with pytest.raises(ConfigError, match=r"source\.path"):
        BuildConfig.from_yaml(path)


def test_invalid_yaml_and_missing_file(tmp_path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        BuildConfig.from_yaml(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        BuildConfig.from_yaml(tmp_path / "missing.yaml")
