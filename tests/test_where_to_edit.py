"""where-to-edit: parameter groups per architecture, masks, the inner loop, meta-training, the
trained locator as an artifact, and the method in the registry."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from pipeline.editing.delta import EditResult, applied
from pipeline.editing.exemplars import EditExemplars
from pipeline.editing.locate import (
    GroupLayout,
    active_count,
    load_locator,
    locate_and_edit,
    mask_iou,
    mask_specificity,
    parameter_groups,
    random_mask,
    save_locator,
    top_mask,
)
from pipeline.editing.locate.config import LocatorConfig
from pipeline.editing.locate.episodes import EpisodeBank, bank_at_cut, check_pairs, sample_episode
from pipeline.editing.locate.inner import TailRunner
from pipeline.editing.locate.train import (
    MetaSettings,
    evaluate_locator,
    meta_train,
    outer_loss,
    train_locator,
)
from pipeline.editing.methods import EditInputs, create_method
from pipeline.editing.split import SplitModel


def tiny_vit(depth: int = 2, classes: int = 4, seed: int = 0) -> nn.Module:
    import timm

    torch.manual_seed(seed)
    model = timm.create_model(
        "vit_tiny_patch16_224",
        pretrained=False,
        img_size=32,
        patch_size=8,
        depth=depth,
        embed_dim=32,
        num_heads=2,
        num_classes=classes,
    )
    return model.eval()


def exemplars_for(images: torch.Tensor, labels: list[int]) -> EditExemplars:
    n, _, h, w = images.shape
    return EditExemplars(
        images, images * 0.5, torch.ones(n, 1, h, w), torch.tensor(labels, dtype=torch.long)
    )


def touched_groups(layout: GroupLayout, deltas: dict[str, torch.Tensor]) -> set[int]:
    """Indices (in mask order) of the groups whose slices the deltas change."""
    touched: set[int] = set()
    for group_set, part in zip(layout.sets, layout.slices(), strict=True):
        for name, dim in group_set.params:
            if name not in deltas:
                continue
            delta = deltas[name]
            dims = [d for d in range(delta.dim()) if d != dim]
            changed = delta.abs().sum(dim=dims) > 0 if dims else delta != 0
            touched |= {part.start + int(i) for i in changed.nonzero().flatten()}
    return touched


# -- groups and masks --------------------------------------------------------------------------
def test_lite0_groups_are_the_pointwise_convs_of_the_last_blocks(classifier) -> None:
    layout = parameter_groups(classifier.model, blocks=2)
    assert layout.architecture == "efficientnet"
    assert [(s.module, s.size) for s in layout.sets] == [
        ("blocks.5.3.conv_pw", 1152),
        ("blocks.5.3.conv_pwl", 192),
        ("blocks.6.0.conv_pw", 1152),
        ("blocks.6.0.conv_pwl", 320),
    ]
    layout.check(classifier.model)


@pytest.mark.parametrize("sparsity", [0.99, 0.95, 0.9])
def test_lite0_masks_have_the_declared_sparsity_and_touch_only_their_channels(
    classifier, sparsity: float
) -> None:
    # given EfficientNet-Lite0 with its real weights and two exemplars
    model = classifier.model
    layout = parameter_groups(model, blocks=2)
    torch.manual_seed(0)
    exemplars = exemplars_for(torch.randn(2, 3, 224, 224), [817, 817])
    # when the gradient control locates and edits
    located = locate_and_edit(
        model, layout, exemplars, kind="gradient", sparsity=sparsity, lr=1e-2, steps=1
    )
    # then the mask has exactly (1 - s) G groups, and each per-parameter mask fits its weight
    assert located.mask.shape == (2816,)
    assert int(located.mask.sum()) == active_count(2816, sparsity) == round((1 - sparsity) * 2816)
    params = dict(model.named_parameters())
    for name, mask in layout.expand(located.mask.float(), params).items():
        assert torch.broadcast_shapes(mask.shape, params[name].shape) == params[name].shape
    # and the deltas change the masked output channels only
    assert touched_groups(layout, located.deltas) <= set(located.mask.nonzero().flatten().tolist())
    assert touched_groups(layout, located.deltas)


def test_vit_groups_are_fc1_rows_and_fc2_columns() -> None:
    model = tiny_vit(depth=3)
    layout = parameter_groups(model, blocks=2)
    assert layout.architecture == "vit"
    assert [(s.module, s.params, s.size) for s in layout.sets] == [
        ("blocks.1.mlp.fc1", (("blocks.1.mlp.fc1.weight", 0), ("blocks.1.mlp.fc1.bias", 0)), 128),
        ("blocks.1.mlp.fc2", (("blocks.1.mlp.fc2.weight", 1),), 128),
        ("blocks.2.mlp.fc1", (("blocks.2.mlp.fc1.weight", 0), ("blocks.2.mlp.fc1.bias", 0)), 128),
        ("blocks.2.mlp.fc2", (("blocks.2.mlp.fc2.weight", 1),), 128),
    ]
    assert layout.first_module == "blocks.1.mlp.fc1"


@pytest.mark.parametrize("sparsity", [0.99, 0.95, 0.9, 0.5])
def test_vit_delta_touches_only_masked_groups(sparsity: float) -> None:
    model = tiny_vit()
    layout = parameter_groups(model, blocks=2)
    torch.manual_seed(1)
    exemplars = exemplars_for(torch.randn(3, 3, 32, 32), [0, 1, 2])
    for kind in ("gradient", "random"):
        located = locate_and_edit(
            model, layout, exemplars, kind=kind, sparsity=sparsity, lr=0.5, steps=3, seed=3
        )
        active = set(located.mask.nonzero().flatten().tolist())
        assert len(active) == max(1, round((1 - sparsity) * layout.size))
        assert touched_groups(layout, located.deltas) <= active
        assert touched_groups(layout, located.deltas)


def test_top_and_random_masks() -> None:
    scores = torch.tensor([0.1, 3.0, -1.0, 2.0, 2.0])
    assert top_mask(scores, 0.6).tolist() == [False, True, False, True, False]
    assert random_mask(1000, 0.95, seed=1).sum() == 50
    assert torch.equal(random_mask(1000, 0.95, seed=1), random_mask(1000, 0.95, seed=1))
    assert not torch.equal(random_mask(1000, 0.95, seed=1), random_mask(1000, 0.95, seed=2))
    with pytest.raises(ValueError, match="sparsity"):
        active_count(10, 1.0)


def test_mask_specificity_separates_same_and_different_pairs() -> None:
    a = torch.tensor([1, 1, 0, 0, 0, 0], dtype=torch.bool)
    a2 = torch.tensor([1, 1, 1, 0, 0, 0], dtype=torch.bool)
    b = torch.tensor([0, 0, 0, 0, 1, 1], dtype=torch.bool)
    assert mask_iou(a, a2) == pytest.approx(2 / 3)
    result = mask_specificity([a, a2, b], [("road", "snow"), ("road", "snow"), ("sky", "sand")])
    assert result.same == pytest.approx(2 / 3)
    assert result.different == pytest.approx((0 + 0) / 2)
    assert (result.n_same, result.n_different) == (1, 2)
    assert result.gap == pytest.approx(2 / 3)


# -- the inner loop and meta-training on a tiny synthetic task ---------------------------------
def synthetic_bank(
    model: nn.Module, layout: GroupLayout, seed: int = 0
) -> tuple[nn.Module, EpisodeBank]:
    """Three "pairs": a fixed pattern added to random images, whose label is the pair's own
    class (a rule the exemplars teach and the pseudo-samples test); clean images keep the
    model's top-1."""
    generator = torch.Generator().manual_seed(seed)
    dtype = next(model.parameters()).dtype
    clean = torch.randn(40, 3, 32, 32, generator=generator, dtype=dtype)
    patterns = torch.randn(3, 3, 32, 32, generator=generator, dtype=dtype)
    counterfactuals = torch.cat([clean[:10] + patterns[p] for p in range(3)])
    images = torch.cat([clean, counterfactuals])
    split = SplitModel.create(model, layout.first_module, probe=images[:2], max_cache_bytes=0)
    assert split is not None
    frontier, pooled, log_probs = bank_at_cut(split, layout.first_module, images)
    clean_top1 = log_probs[:40].argmax(1)
    labels = torch.cat([clean_top1, torch.arange(3).repeat_interleave(10)])
    pairs = {("c", str(p)): [(40 + 10 * p + i, i) for i in range(10)] for p in range(3)}
    bank = EpisodeBank(
        frontier=frontier,
        pooled=pooled,
        base_log_probs=log_probs,
        labels=labels,
        pairs=pairs,
        clean_rows=list(range(10, 40)),
        clean_ids=[str(i) for i in range(10, 40)],
    )
    return TailRunner(split), bank


def test_inner_loop_gradient_matches_finite_differences() -> None:
    # given a tiny float64 ViT cut before its last FFN and one episode
    model = tiny_vit(depth=2).double()
    layout = parameter_groups(model, blocks=1)
    tail, bank = synthetic_bank(model, layout)
    episode = sample_episode(bank, torch.Generator().manual_seed(0), 3, 5, 6)
    settings = MetaSettings(inner_steps=2, inner_lr=0.5, sparsity_weight=0.0)
    torch.manual_seed(0)
    mask = torch.rand(layout.size, dtype=torch.float64)

    def loss(values: torch.Tensor) -> torch.Tensor:
        return outer_loss(tail, layout, bank, episode, values, settings).total

    # when the outer loss is differentiated through two SGD steps w.r.t. the mask
    probe = mask.clone().requires_grad_(True)
    (analytic,) = torch.autograd.grad(loss(probe), probe)
    # then it matches central differences, for groups of both fc1 and fc2
    eps = 1e-5
    for index in (0, 5, 130, 200):
        step = torch.zeros_like(mask)
        step[index] = eps
        with torch.no_grad():
            numeric = (loss(mask + step) - loss(mask - step)) / (2 * eps)
        assert float(analytic[index]) == pytest.approx(float(numeric), rel=1e-4, abs=1e-9)
    assert float(analytic.abs().sum()) > 0


def test_meta_training_lowers_the_outer_loss_and_is_deterministic() -> None:
    # given a tiny ViT and three synthetic pairs
    model = tiny_vit(depth=2)
    layout = parameter_groups(model, blocks=1)
    tail, bank = synthetic_bank(model, layout)
    settings = MetaSettings(
        sparsity=0.9,
        inner_lr=1.0,
        inner_steps=1,
        steps=40,
        episodes_per_step=2,
        lr=3e-2,
        hidden=16,
        n_exemplars=3,
        n_pseudo=6,
        n_locality=8,
        sparsity_weight=0.0,
        seed=0,
    )
    generator = torch.Generator().manual_seed(123)
    held = [sample_episode(bank, generator, 3, 6, 8) for _ in range(12)]
    torch.manual_seed(0)
    from pipeline.editing.locate.locator import Locator

    untrained = Locator(bank.pooled.shape[1], layout.size, settings.hidden)
    before = evaluate_locator(untrained, tail, layout, bank, held, settings)
    # when the locator is meta-trained
    locator, history = meta_train(tail, layout, bank, settings, bank.pooled.shape[1])
    after = evaluate_locator(locator, tail, layout, bank, held, settings)
    # then the outer loss on held episodes is lower than the untrained locator's
    assert len(history) == 40
    assert after["task"] < before["task"] - 0.02, (before, after)
    # and training again with the same seed gives the same weights
    again, _ = meta_train(tail, layout, bank, settings, bank.pooled.shape[1])
    for (name, value), (_, other) in zip(
        locator.state_dict().items(), again.state_dict().items(), strict=True
    ):
        assert torch.equal(value, other), name


# -- pairs, the artifact and the method ---------------------------------------------------------
def test_trainer_refuses_a_test_pair_among_its_training_pairs(tmp_path) -> None:
    with pytest.raises(ValueError, match=r"test pairs \[\('road', 'snow'\)\]"):
        check_pairs([("road", "sand"), ("road", "snow")], [("road", "snow")])
    config = LocatorConfig(
        builds=[str(tmp_path)],
        out=str(tmp_path / "locator"),
        pairs=[["road", "snow"], "sky/sand"],
        test_pairs=["road/snow"],
    )
    assert config.pairs == [("road", "snow"), ("sky", "sand")]
    with pytest.raises(ValueError, match="training pairs include test pairs"):
        train_locator(config)


def test_method_without_a_locator_names_the_setting() -> None:
    model = tiny_vit()
    exemplars = exemplars_for(torch.randn(2, 3, 32, 32), [0, 1])
    method = create_method("where-to-edit")
    with pytest.raises(ValueError, match="locator: PATH_OR_NAME"):
        method.edit(model, "blocks.1.mlp.fc2", EditInputs(exemplars))


def test_trained_locator_is_an_artifact_the_method_loads(tmp_path) -> None:
    from pipeline.editing.covariance import weights_digest

    # given a (briefly) trained locator saved with its record
    model = tiny_vit()
    layout = parameter_groups(model, blocks=1)
    tail, bank = synthetic_bank(model, layout)
    settings = MetaSettings(steps=2, hidden=8, n_pseudo=4, n_locality=4, sparsity=0.9)
    locator, _ = meta_train(tail, layout, bank, settings, bank.pooled.shape[1])
    record = {"model_id": "tiny-vit", "weights_hash": weights_digest(model), "seed": 0}
    folder = save_locator(tmp_path / "loc", locator, layout, record)
    loaded = load_locator(folder / "locator.json")
    assert loaded.layout == layout
    assert json.loads((folder / "locator.json").read_text())["layout"]["architecture"] == "vit"
    for name, value in locator.state_dict().items():
        assert torch.equal(loaded.locator.state_dict()[name], value)
    # when the method edits with it (settings from an edit config)
    exemplars = exemplars_for(torch.randn(3, 3, 32, 32), [0, 1, 2])
    method = create_method("where-to-edit", locator=str(folder), sparsity=0.9, steps=2, lr=0.5)
    result = method.edit(model, "blocks.1.mlp.fc2", EditInputs(exemplars, model_id="tiny-vit"))
    # then the delta is an ordinary edit: masked groups only, saved, applied and reverted exactly
    mask = json.loads(result.metadata["mask"])
    assert len(mask) == round(0.1 * layout.size)
    assert touched_groups(layout, result.deltas) <= set(mask)
    saved = EditResult.load(result.save(tmp_path / "edit.safetensors"))
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    with applied(model, saved):
        assert not torch.equal(model.blocks[1].mlp.fc2.weight, before["blocks.1.mlp.fc2.weight"])
    for name, p in model.named_parameters():
        assert torch.equal(p, before[name]), name
    # and a model with other weights is refused
    with pytest.raises(ValueError, match="train a locator for it"):
        method.edit(tiny_vit(seed=1), "blocks.1.mlp.fc2", EditInputs(exemplars))


def test_train_locator_command_checks_its_config_before_any_work(tmp_path) -> None:
    from typer.testing import CliRunner

    from flows.cli import app

    config = tmp_path / "locator.yaml"
    config.write_text(f"builds: [{tmp_path / 'missing'}]\nout: {tmp_path / 'out'}\n")
    result = CliRunner().invoke(app, ["train-locator", "-c", str(config)])
    assert result.exit_code == 2
    assert "builds:" in result.output and "is not a folder" in result.output
    config.write_text("builds: []\nout: x\nsteps: 0\n")
    result = CliRunner().invoke(app, ["train-locator", "-c", str(config)])
    assert result.exit_code == 2 and "steps" in result.output


# -- the controls as methods of their own, and the locator's identity in the run key ------------
def small_artifact(folder, model: nn.Module, seed: int = 0):
    """A briefly trained locator of ``model``'s last block, saved to ``folder``."""
    from pipeline.editing.covariance import weights_digest

    layout = parameter_groups(model, blocks=1)
    tail, bank = synthetic_bank(model, layout)
    settings = MetaSettings(steps=2, hidden=8, n_pseudo=4, n_locality=4, sparsity=0.9, seed=seed)
    locator, _ = meta_train(tail, layout, bank, settings, bank.pooled.shape[1])
    record = {"model_id": "tiny-vit", "weights_hash": weights_digest(model), "seed": seed}
    return save_locator(folder, locator, layout, record), layout


def test_controls_are_where_to_edit_with_their_own_mask_and_name(tmp_path, monkeypatch) -> None:
    from pipeline.editing.config import EditConfig
    from pipeline.editing.locate import exemplar_inputs

    # given a tiny ViT, a locator of it, named through an environment variable as in a config
    model = tiny_vit()
    _, layout = small_artifact(tmp_path / "loc", model)
    monkeypatch.setenv("LOCATORS_HERE", str(tmp_path))
    spec = "${LOCATORS_HERE}/loc"
    torch.manual_seed(2)
    exemplars = exemplars_for(torch.randn(3, 3, 32, 32), [0, 1, 2])
    inputs = EditInputs(exemplars, model_id="tiny-vit")
    expected = {
        "where-to-edit-random": random_mask(layout.size, 0.9, seed=4),
        "where-to-edit-gradient": top_mask(
            exemplar_inputs(model, layout, exemplars)[0].grad_score, 0.9
        ),
    }
    for name, mask in expected.items():
        # when the control edits with the locator's groups
        method = create_method(name, locator=spec, sparsity=0.9, steps=2, lr=0.5, seed=4)
        result = method.edit(model, "blocks.1.mlp.fc2", inputs)
        # then its mask is the control's, its name its own, and only masked groups change
        assert result.metadata["method"] == name
        assert json.loads(result.metadata["mask"]) == mask.nonzero().flatten().tolist()
        assert touched_groups(layout, result.deltas) <= set(mask.nonzero().flatten().tolist())
        assert touched_groups(layout, result.deltas)
    # the locator's own mask differs from the random control's at the same sparsity
    located = create_method("where-to-edit", locator=spec, sparsity=0.9, steps=2, lr=0.5)
    own = json.loads(located.edit(model, "blocks.1.mlp.fc2", inputs).metadata["mask"])
    assert len(own) == active_count(layout.size, 0.9)
    assert own != expected["where-to-edit-random"].nonzero().flatten().tolist()
    with pytest.raises(ValueError, match="'random' mask"):
        create_method("where-to-edit-random", mask="locator")
    # and one config lists all three
    config = EditConfig.model_validate(
        {
            "methods": [
                {"name": n, "settings": {"locator": spec}}
                for n in ("where-to-edit", "where-to-edit-gradient", "where-to-edit-random")
            ]
        }
    )
    assert config.method_names[1:] == ["where-to-edit-gradient", "where-to-edit-random"]


def test_a_retrained_locator_changes_the_methods_settings(tmp_path) -> None:
    model = tiny_vit()
    folder, _ = small_artifact(tmp_path / "loc", model, seed=0)
    method = create_method("where-to-edit", locator=str(folder))
    first = method.settings()
    assert (
        first["locator_sha256"]
        == json.loads((folder / "locator.json").read_text())["weights_sha256"]
    )
    small_artifact(tmp_path / "loc", model, seed=1)  # trained again, in place
    assert method.settings()["locator_sha256"] != first["locator_sha256"]
    assert "locator_sha256" not in create_method("where-to-edit-random").settings()


# -- specificity of a trained locator's masks on held-out exemplars ------------------------------
PAIRS = [("background", "sand"), ("background", "rust")]
TEST_PAIR = ("background", "snow")
FILLS = {"sand/0": (220, 190, 120), "rust/0": (150, 60, 20), "snow/0": (245, 245, 250)}


@pytest.fixture
def textured_build(tmp_path):
    """18 photos, each with its left half re-textured by three flat colours (three pairs), and
    a stub classifier around a tiny ViT at 32 px."""
    from test_editing_eval import StubClassifier, write_build
    from torchvision import transforms as T

    rng = np.random.default_rng(0)
    mask = np.zeros((32, 32), bool)
    mask[:, :16] = True
    photos = []
    for index in range(18):
        clean = rng.integers(0, 255, (32, 32, 3)).astype(np.uint8)
        cfs = {}
        for style, fill in FILLS.items():
            pixels = clean.copy()
            pixels[mask] = fill
            cfs[style] = pixels
        photos.append(
            {"name": f"p{index}", "label": index % 4, "clean": clean, "mask": mask, "cfs": cfs}
        )
    store = write_build(tmp_path / "build", photos)
    classifier = StubClassifier(tiny_vit(), T.Compose([T.ToTensor()]), "tiny-vit")
    return store.root, classifier


def test_specificity_draws_held_out_sets_and_measures_each_mask_kind(
    tmp_path, textured_build
) -> None:
    from pipeline.editing.build_images import BuildImages, cf
    from pipeline.editing.locate.specificity import (
        draw_exemplar_sets,
        locator_specificity,
        trained_images,
    )

    build, classifier = textured_build
    # given a locator trained on two pairs of the build (at most 6 photos each), snow held out
    config = LocatorConfig(
        builds=[str(build)],
        out=str(tmp_path / "locator"),
        pairs=[list(p) for p in PAIRS],
        test_pairs=[list(TEST_PAIR)],
        blocks=1,
        n_exemplars=2,
        n_pseudo=2,
        n_locality=4,
        max_per_pair=6,
        max_locality=8,
        steps=2,
        hidden=8,
        sparsity=0.9,
    )
    folder = train_locator(config, classifier=classifier)
    record = json.loads((folder / "locator.json").read_text())
    # then its record lists, per pair, the photos its episodes drew from
    assert sorted(record["pair_images"]) == ["background/rust", "background/sand"]
    trained = trained_images(record, build)
    assert set(trained) == set(PAIRS) and all(1 <= len(ids) <= 6 for ids in trained.values())
    assert trained_images(record, tmp_path) == {}  # a build it was not trained on
    assert trained_images({"builds": record["builds"]}, build) is None  # cannot be held out

    # when its masks are measured on sets of two exemplars, three sets per pair
    report = locator_specificity(
        folder, [build], [*PAIRS, TEST_PAIR], classifier=classifier, sparsity=0.9, n_sets=3
    )
    # then no set uses a photo the pair was trained on, nor a photo twice within a pair
    data = BuildImages(build)
    assert report.sets_per_pair() == {pair: 3 for pair in [*PAIRS, TEST_PAIR]}
    for pair in [*PAIRS, TEST_PAIR]:
        photos = [
            data.clean_of(cf(cf_id)).id
            for s in report.sets
            if s.pair == pair
            for _, cf_id in s.items
        ]
        assert len(photos) == len(set(photos)) == 6
        assert not set(photos) & trained.get(pair, set())
    # every mask has the declared sparsity
    groups = parameter_groups(classifier.model, blocks=1).size
    for kind in ("locator", "gradient", "random"):
        assert [int(m.sum()) for m in report.masks[kind]] == [active_count(groups, 0.9)] * 9
    # random masks agree by chance only: no gap; within-pair means are over 3 pairs x 3 sets
    chance = report.specificity("random")
    assert (chance.n_same, chance.n_different) == (9, 27)
    assert abs(chance.gap) < 0.1 and chance.same < 0.2
    # restricting to pairs keeps only their sets
    assert report.specificity("random", PAIRS).n_same == 6
    # the draw is seeded, and too few photos for two sets is an error naming the pair
    again = draw_exemplar_sets([build], PAIRS, n_sets=3, n_exemplars=2, seed=0)
    assert again == draw_exemplar_sets([build], PAIRS, n_sets=3, n_exemplars=2, seed=0)
    assert again != draw_exemplar_sets([build], PAIRS, n_sets=3, n_exemplars=2, seed=1)
    with pytest.raises(ValueError, match=r"'sand'.*too few for two sets of 10"):
        draw_exemplar_sets([build], PAIRS, n_sets=3, n_exemplars=10)


def test_specificity_of_known_masks_per_pair_subset() -> None:
    from pipeline.editing.locate.specificity import ExemplarSet, SpecificityReport

    a, b = ("road", "sand"), ("road", "snow")
    masks = [
        torch.tensor([1, 1, 0, 0], dtype=torch.bool),
        torch.tensor([1, 1, 0, 0], dtype=torch.bool),
        torch.tensor([0, 1, 1, 0], dtype=torch.bool),
        torch.tensor([0, 0, 1, 1], dtype=torch.bool),
    ]
    sets = [ExemplarSet(p, ()) for p in (a, a, b, b)]
    report = SpecificityReport(0.5, sets, {"locator": masks})
    everything = report.specificity()
    # within: IoU 1 (a, a) and 1/3 (b, b); across: 1/3, 0, 1/3, 0
    assert everything.same == pytest.approx((1 + 1 / 3) / 2)
    assert everything.different == pytest.approx((1 / 3 + 0 + 1 / 3 + 0) / 4)
    assert everything.gap == pytest.approx(2 / 3 - 1 / 6)
    only_a = report.specificity("locator", [a])
    assert (only_a.same, only_a.n_different) == (1.0, 0)


def test_the_camvid_configs_agree(monkeypatch) -> None:
    from pathlib import Path

    from pipeline.editing.config import EditConfig
    from pipeline.stylize.library import load_texture_library

    monkeypatch.setenv("BUILDS", "/b")
    configs = Path(__file__).resolve().parents[1] / "configs"
    where = EditConfig.from_yaml(configs / "edit-camvid-where.yaml")
    base = EditConfig.from_yaml(configs / "edit-camvid.yaml")
    locator = LocatorConfig.from_yaml(configs / "locator-camvid.yaml")
    # the where-to-edit experiment is the rewrite experiment's, plus the locator and its controls
    for field in ("model", "layer", "plan", "budget_pp", "covariance", "locality"):
        assert getattr(where, field) == getattr(base, field), field
    assert where.method_names == [
        "rewrite-closed",
        "finetune-local",
        "finetune-global",
        "where-to-edit",
        "where-to-edit-gradient",
        "where-to-edit-random",
        "finetune-l1",
        "finetune-l2",
    ]
    assert {m.settings["locator"] for m in where.methods[3:]} == {"${BUILDS}/locators/camvid"}
    assert locator.out == "/b/locators/camvid"
    # the cases' pair is the locator's test pair; its training textures exist and are others
    assert locator.test_pairs == [(c, t) for c in base.plan.concepts for t in base.plan.textures]
    textures = {t for _, t in locator.pairs}
    assert textures <= set(load_texture_library().names()) and len(textures) == 7
    assert not textures & set(base.plan.textures)
    # road pairs from CamVid `val`, the others (grass, sky, tree) from COCO
    assert {c for c, _ in locator.pairs} == {"road", "grass", "sky", "tree"}
    assert locator.builds == ["/b/camvid-locator", "/b/coco-locator"]


def test_penalised_fine_tuning_edits_every_group_and_its_penalty_shrinks_the_change() -> None:
    """FT-L1 / FT-L2 fine-tune all of where-to-edit's groups (none masked) and nothing else;
    at the same learning rate and steps, a heavier penalty gives a smaller change; their grids
    run from a negligible step (lr 1e-7) to 50 steps at lr 1e-2."""
    model = tiny_vit(depth=3)
    layout = parameter_groups(model, blocks=2)
    torch.manual_seed(5)
    inputs = EditInputs(exemplars_for(torch.randn(3, 3, 32, 32), [0, 1, 2]))
    # measured sums of |delta|: L1 18.3 at 1e-2 against 45.0 at 1e-6; L2 33.1 at 1 against 45.0
    for name, penalty, heavy_weight in (("finetune-l1", "l1", 1e-2), ("finetune-l2", "l2", 1.0)):
        method = create_method(name, lr=0.05, steps=5)
        assert method.penalty == penalty and method.penalty_weight > 0
        result = method.edit(model, "blocks.1.mlp.fc1", inputs)
        assert set(result.deltas) == set(layout.param_names)
        assert len(touched_groups(layout, result.deltas)) > 0.9 * layout.size
        light, heavy = (
            sum(
                float(d.abs().sum())
                for d in create_method(name, lr=0.05, steps=5, penalty_weight=weight)
                .edit(model, "blocks.1.mlp.fc1", inputs)
                .deltas.values()
            )
            for weight in (1e-6, heavy_weight)
        )
        assert heavy < 0.8 * light
        lrs = sorted({c.params["lr"] for c in type(method).grid})
        assert lrs[0] == 1e-7 and lrs[-1] == 1e-2
