"""The edit config: one declaration, validated before any work (unknown keys, ranges, methods,
plans, the layer), and the shipped configs valid."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn

from pipeline.cases.plans import ErrorPlan
from pipeline.config import ConfigError
from pipeline.editing.config import DEFAULT_METHOD_NAMES, EditConfig
from pipeline.validate import check_layer

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "edit.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_are_the_four_methods_at_a_one_point_budget() -> None:
    config = EditConfig()
    assert config.method_names == list(DEFAULT_METHOD_NAMES)
    assert config.budget_pp == 1.0 and config.plan == "auto" and config.covariance.images == []


def test_a_full_config_reads_with_its_plan_methods_and_sets(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
model: timm:tf_efficientnet_lite0
layer: blocks.5.0.conv_pwl
plan: {kind: errors, n_train: 10, val_frac: 0.1, each_style: true, concepts: [road]}
methods:
  - rewrite-closed
  - name: finetune-local
    grid: [{lr: 1.0e-6, steps: 5}, {lr: 1.0e-4, steps: 50}]
budget_pp: 0.5
covariance: {images: [/data/cov-build, "hf:imagenet@validation"], views: windows}
locality: {general: [/data/imagenet-samples], limit: 400}
""",
    )
    config = EditConfig.from_yaml(path)
    assert isinstance(config.plan, ErrorPlan) and config.plan.n_train == 10
    assert config.method_names == ["rewrite-closed", "finetune-local"]
    assert config.methods[1].grid == [{"lr": 1e-6, "steps": 5}, {"lr": 1e-4, "steps": 50}]
    assert config.covariance.views == "windows" and len(config.covariance.images) == 2
    assert config.locality.limit == 400 and config.budget_pp == 0.5


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("budget: 1.0\n", ["budget", "Extra inputs are not permitted"]),
        ("budget_pp: -3\n", ["budget_pp", "greater than or equal to 0"]),
        ("budget_pp: .nan\n", ["budget_pp", "finite"]),
        ("budget_pp: .inf\n", ["budget_pp", "finite"]),
        ("methods: [rewrite-closd]\n", ["unknown edit method 'rewrite-closd'"]),
        ("methods: [rewrite, rewrite]\n", ["methods listed twice: ['rewrite']"]),
        ("methods: []\n", ["methods", "at least 1"]),
        ("plan: {kind: everything}\n", ["plan", "everything"]),
        ("plan: {kind: errors, val_frac: 1.5}\n", ["val_frac", "less than 1"]),
        ("plan: {kind: classes, n_trian: 3}\n", ["n_trian", "Extra inputs"]),
        ("covariance: {views: sideways}\n", ["views", "center", "windows"]),
        ("locality: {limit: 0}\n", ["limit", "greater than or equal to 1"]),
        ("batch_size: 0\n", ["batch_size"]),
        ("- a list\n", ["must be a mapping, found list"]),
        ("model: [unclosed\n", ["not valid YAML"]),
    ],
)
def test_a_bad_config_is_refused_naming_the_file_and_the_field(
    tmp_path: Path, text: str, names: list[str]
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as error:
        EditConfig.from_yaml(path)
    message = str(error.value)
    assert str(path) in message
    for name in names:
        assert name in message


def test_overrides_are_validated_like_the_file() -> None:
    config = EditConfig().overridden(budget_pp=2.0, layer=None)
    assert config.budget_pp == 2.0
    with pytest.raises(ConfigError, match="budget_pp"):
        EditConfig().overridden(budget_pp=-1.0)
    with pytest.raises(ConfigError, match="finite"):
        EditConfig().overridden(budget_pp=math.nan)


def test_the_layer_is_checked_against_the_model() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.ReLU(), nn.Conv2d(4, 4, 3, groups=4))
    model(torch.zeros(1, 3, 4, 4))
    assert check_layer(model, "0", key="layer") == []
    (missing,) = check_layer(model, "9", key="layer")
    assert missing.key == "layer" and "no layer '9'" in missing.message
    (depthwise,) = check_layer(model, "2", key="layer")
    assert depthwise.key == "layer"


@pytest.mark.parametrize("name", sorted(p.name for p in CONFIGS.glob("edit-*.yaml")))
def test_the_shipped_edit_configs_are_valid(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BUILDS", "/b")
    monkeypatch.setenv("DATASETS", "/d")
    config = EditConfig.from_yaml(CONFIGS / name)
    assert config.plan != "auto" and config.layer
    assert all(spec.startswith("/b/") for spec in config.covariance.images[:1])


def test_image_sets_expand_variables_and_refuse_unset_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BUILDS", "/data/builds")
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    path = write(tmp_path, "covariance: {images: ['${BUILDS}/val', $BUILDS/x, ~/photos]}\n")
    images = EditConfig.from_yaml(path).covariance.images
    assert images == ["/data/builds/val", "/data/builds/x", str(Path.home() / "photos")]
    path = write(tmp_path, "locality: {general: ['${NOT_SET_ANYWHERE}/photos']}\n")
    with pytest.raises(ConfigError, match="environment variable NOT_SET_ANYWHERE is not set"):
        EditConfig.from_yaml(path)
