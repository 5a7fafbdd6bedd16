"""`conceptswap audit --concept-scores`: the report shows each model's TCAV scores beside its
counterfactual effects, with the agreement of the two; without the option it does not."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from concept_fixtures import TinyClassifier, make_build
from typer.testing import CliRunner

from flows.cli import app
from pipeline.classify import classifiers
from pipeline.concepts import agreement, load_concept_scores
from pipeline.hashing import stable_key
from pipeline.records import Counterfactual, StyleImage, Stylized
from pipeline.report.concept_section import concept_section
from pipeline.report.groups import summarize
from pipeline.report.sensitivity import audit, load_predictions
from pipeline.store import BuildStore
from pipeline.transform import composite

runner = CliRunner()
MODEL = "test-tiny:net"
STYLES = {"blue/0": (30, 30, 220), "red/0": (220, 30, 30)}  # repaint a concept in the other
HEADING = "Concept scores (TCAV) beside counterfactual sensitivity"


def add_counterfactuals(root: Path) -> Path:
    """The concept fixtures' build (12 images, `red` and `blue` masks) with a solid-colour
    counterfactual per (mask, style): 48 counterfactuals."""
    store = BuildStore(root)
    images, masks = store.read("images"), store.read("masks")
    styles, stylized, counterfactuals = [], [], []
    for style_id, colour in STYLES.items():
        texture, index = style_id.split("/")
        styles.append(StyleImage(style_id, texture, int(index), "0" * 64, "/none", "CC0", "test"))
        for image in images:
            stylized_id = stable_key(image.image_id, style_id)
            pixels = np.full((image.height, image.width, 3), colour, np.uint8)
            stylized.append(
                Stylized(
                    stylized_id, image.image_id, style_id, "solid",
                    store.save_png(store.relpath("stylized", stylized_id), pixels),
                )
            )  # fmt: skip
    by_image = {image.image_id: image for image in images}
    for mask in masks:
        image = by_image[mask.image_id]
        for record in (s for s in stylized if s.image_id == mask.image_id):
            cf_id = stable_key(mask.mask_id, record.stylized_id)
            pixels = composite(
                store.load_image(image.path),
                store.load_image(record.path),
                store.load_mask(mask.path),
                blend=0.9,
            )
            counterfactuals.append(
                Counterfactual(
                    cf_id=cf_id,
                    image_id=image.image_id,
                    mask_id=mask.mask_id,
                    stylized_id=record.stylized_id,
                    concept=mask.concept,
                    texture=record.style_id.split("/")[0],
                    style_image=record.style_id,
                    blend=0.9,
                    area_frac=mask.area_frac,
                    label=image.label,
                    path=store.save_png(store.relpath("counterfactuals", cf_id), pixels),
                    kept=True,
                )
            )
    for kind, records in (
        ("styles", styles),
        ("stylized", stylized),
        ("counterfactuals", counterfactuals),
    ):
        store.write_part(kind, "test", records)
        store.consolidate(kind, ["test"])
    return store.root


class RedOrBlue(TinyClassifier):
    """The fixtures' classifier with set weights: class 0 (`reddish`) when the image's mean
    red-minus-blue (through ReLUs) exceeds `threshold`, else class 1 (`bluish`), so repainting
    the red square blue or the blue disc red flips some images, and not others."""

    def __init__(self, threshold: float = 0.0) -> None:
        super().__init__()
        first = torch.nn.Conv2d(3, 4, 3, padding=1)
        second = torch.nn.Conv2d(4, 4, 3, padding=1, stride=2)
        head = torch.nn.Linear(4, 2)
        with torch.no_grad():
            for layer in (first, second):
                layer.weight.zero_()
                layer.bias.zero_()
            for channel, rgb in enumerate([(1, 0, -1), (-1, 0, 1), (1, 0, 0), (0, 0, 1)]):
                first.weight[channel, :, 1, 1] = torch.tensor(rgb, dtype=torch.float32)
                second.weight[channel, channel, 1, 1] = 1.0  # layer "2" keeps layer "0"'s maps
            head.weight.copy_(torch.tensor([[1.0, -1.0, 0, 0], [-1.0, 1.0, 0, 0]]))
            head.bias.copy_(torch.tensor([0.0, threshold]))
        self.model = torch.nn.Sequential(
            first, torch.nn.ReLU(), second, torch.nn.ReLU(),
            torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), head,
        ).eval()  # fmt: skip


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return add_counterfactuals(make_build(tmp_path_factory.mktemp("audit-concepts")))


@pytest.fixture(scope="module", autouse=True)
def registered(build: Path):  # type: ignore[no-untyped-def]
    """`test-tiny:net` loads `RedOrBlue` at the median of the build's clean logit gaps, so the
    unlabelled images' reference classes are both classes."""
    store = BuildStore(build)
    with torch.no_grad():
        probe = RedOrBlue()
        logits = probe.model(
            probe.preprocess([store.load_image(i.path) for i in store.read("images")])
        )
    threshold = float(np.median((logits[:, 0] - logits[:, 1]).numpy()))  # 6 of 12 below
    classifiers.register("test-tiny")(lambda model, **options: RedOrBlue(threshold))
    yield threshold
    classifiers.unregister("test-tiny")


def section_of(html: str) -> str:
    start = html.index('id="concept-scores"')
    return html[start : html.index('id="mask-quality"', start)]


@pytest.mark.usefixtures("prefect_harness")
def test_the_report_shows_concept_scores_only_when_asked(build: Path) -> None:
    # given a build with masks and counterfactuals, audited with concept scores at two layers
    result = runner.invoke(
        app,
        ["audit", str(build), "--model", MODEL, "--device", "cpu", "--concept-scores",
         "--concept-layers", "0", "--concept-layers", "2", "--concept-classes", "2"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    html = (build / "report" / "index.html").read_text(encoding="utf-8")
    # then the page has the section, with the numbers of the stored scores at the last layer
    assert HEADING in html
    section = section_of(html)
    scores = load_concept_scores(build, TinyClassifier().id)
    assert set(scores["layer"]) == {"0", "2"}
    last = scores[scores["layer"] == "2"]
    assert len(last) >= 3  # (class, concept) pairs
    assert section.count("<tr") == len(last) + 1  # a row per pair under the header
    for row in last.itertuples():
        assert f"{row.score:.2f}" in section
        assert f"p = {row.p_adjusted:.3g}" in section
        assert f"{100 * row.cav_accuracy:.0f}%" in section
        assert f"whole {row.iou_whole:.2f} · ellipse {row.iou_ellipse:.2f}" in section
    # and the agreement with the texture effects over the same pairs
    predictions = load_predictions(build, TinyClassifier().id)
    effects = summarize(predictions, ("class", "concept"))
    agree = agreement(scores, effects, layer="2")
    assert agree["n_pairs"] == len(last) and not np.isnan(agree["rho"])
    assert f"Spearman ρ = {agree['rho']:+.2f} (95% bootstrap over pairs: " in section
    assert f"{agree['low']:+.2f} to {agree['high']:+.2f}), n = {agree['n_pairs']} pairs" in section
    # the pair's texture effect (cf − neutral flip rate, pooled over textures) beside its score
    for pair in agree["pairs"].itertuples():
        assert f"{100 * pair.sens_texture_flip:+.1f} pp" in section
    assert "Strongest disagreements" in section
    assert "0 vs 2: ρ" in section  # the cross-layer consistency of the two layers

    # when the same build is audited without --concept-scores (the scores are still on disk)
    plain = runner.invoke(app, ["audit", str(build), "--model", MODEL, "--device", "cpu"])
    # then the page has no concept section
    assert plain.exit_code == 0, plain.output
    html = (build / "report" / "index.html").read_text(encoding="utf-8")
    assert HEADING not in html and 'id="concept-scores"' not in html
    assert "Concept × texture, both controls" in html


@pytest.mark.usefixtures("prefect_harness")
def test_classes_with_fewer_images_than_the_minimum_are_not_scored(build: Path) -> None:
    args = ["audit", str(build), "--model", MODEL, "--device", "cpu", "--concept-scores",
            "--concept-layers", "2", "--concept-min-images"]  # fmt: skip
    # given the build's classes and their image counts (every class scored at a minimum of 1)
    assert runner.invoke(app, [*args, "1"]).exit_code == 0
    every = load_concept_scores(build, TinyClassifier().id)
    counts = every.drop_duplicates("class_index").set_index("class_index")["n_inputs"]
    assert len(counts) >= 2 and counts.nunique() >= 2, counts  # classes of different sizes
    # when the minimum is the largest class's count, only the classes that large are scored
    largest = int(counts.max())
    assert runner.invoke(app, [*args, str(largest)]).exit_code == 0
    scored = load_concept_scores(build, TinyClassifier().id)
    assert set(scored["class_index"]) == set(counts[counts >= largest].index)
    # and above it none is, and the page says why
    result = runner.invoke(app, [*args, str(largest + 1)])
    assert result.exit_code == 0, result.output
    assert load_concept_scores(build, TinyClassifier().id).empty
    section = section_of((build / "report" / "index.html").read_text(encoding="utf-8"))
    assert "no class has enough images (--concept-min-images, default 3)" in section


def test_concept_options_need_concept_scores(build: Path) -> None:
    result = runner.invoke(app, ["audit", str(build), "--concept-layers", "blocks.5"])
    assert result.exit_code == 2
    assert result.output.strip() == "error: --concept-layers: needs --concept-scores"
    result = runner.invoke(app, ["audit", str(build), "--concept-min-images", "1"])
    assert result.exit_code == 2
    assert result.output.strip() == "error: --concept-min-images: needs --concept-scores"


def test_significant_pairs_that_move_between_seeds_are_flagged(
    build: Path, registered: float
) -> None:
    # given four (class, concept) pairs: significant and stable, significant and unstable, not
    # significant and unstable, and scored with one seed only (no std)
    base = {
        "classifier_id": "m", "layer": "L", "cav_method": "linear", "random_score": 0.5,
        "p_value": 0.001, "cav_accuracy": 0.9, "cav_accuracy_std": 0.02, "n_random": 10,
        "n_inputs": 4, "n_examples": 30, "iou": 0.4, "iou_whole": 0.2, "iou_ellipse": 0.25,
    }  # fmt: skip
    pairs = [
        (0, "blue", 0.01, True, 5),
        (0, "red", 0.08, True, 5),
        (1, "blue", 0.08, False, 5),
        (1, "red", None, True, 1),
    ]
    scores = pd.DataFrame(
        [
            {
                **base,
                "class_index": c,
                "class_name": f"c{c}",
                "concept": concept,
                "score": 0.6 + 0.1 * i,
                "score_std_seeds": std,
                "significant": significant,
                "p_adjusted": 0.01 if significant else 0.4,
                "n_seeds": seeds,
            }
            for i, (c, concept, std, significant, seeds) in enumerate(pairs)
        ]
    )
    predictions = audit(build, RedOrBlue(registered))
    # when the section is made
    section = concept_section(scores, predictions, "L")
    # then only the significant pair whose std over seeds is above 0.05 is flagged
    assert [r["unstable"] for r in section["rows"]] == [False, True, False, False]
    assert section["n_unstable"] == 1 and section["n_significant"] == 3
    assert section["rows"][3]["score"] == ("0.90", "1 seed: no std")
    assert section["rows"][1]["score"] == ("0.70", "± 0.080 over 5 seeds")
