"""The audit and the HTML report on a tiny synthetic build with toy mean-colour classifiers."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch
import yaml

from pipeline.hashing import pixels_id, stable_key
from pipeline.records import ConceptMask, Counterfactual, SourceImage, StyleImage, Stylized
from pipeline.report import run_audit, summary_markdown
from pipeline.report.html import write_report
from pipeline.report.sensitivity import (
    PREDICTION_COLUMNS,
    PREDICTIONS_VERSION,
    audit,
    model_dir,
)
from pipeline.store import BuildStore
from pipeline.transform import composite

REPO = Path(__file__).resolve().parents[1]
COLOURS = {  # class name -> prototype RGB
    "red": (200, 40, 40),
    "green": (40, 180, 60),
    "blue": (40, 60, 200),
    "white": (235, 235, 235),
    "brown": (120, 80, 40),
}
NAMES = list(COLOURS)
STYLES = {"snow/0": (240, 240, 240), "snow/1": (210, 225, 245), "wood/0": (125, 80, 40)}


class MeanColourClassifier:
    """Classifier protocol over mean colours: softmax of −distance to each class prototype."""

    def __init__(self, temperature: float = 20.0, name: str = "toy:mean-colour") -> None:
        self.id = f"{name}@t{temperature:g}"
        self.class_names = NAMES
        self.model = torch.nn.Identity()
        self.device = torch.device("cpu")
        self.temperature = temperature
        self.calls = 0
        self.images = 0
        self.prototypes = np.array(list(COLOURS.values()), np.float32)

    def preprocess(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        return torch.tensor(np.stack([i.reshape(-1, 3).mean(0) for i in images]))

    def predict_proba(self, images: Sequence[np.ndarray]) -> np.ndarray:
        self.calls += 1
        self.images += len(images)
        means = self.preprocess(images).numpy()
        distance = np.linalg.norm(means[:, None] - self.prototypes[None], axis=2)
        logits = -distance / self.temperature
        probs = np.exp(logits - logits.max(1, keepdims=True))
        return (probs / probs.sum(1, keepdims=True)).astype(np.float32)


def make_build(root: Path) -> BuildStore:
    """4 images (3 labelled, 1 not), concepts object/background, 3 style images, 24 cfs."""
    store = BuildStore(root)
    rng = np.random.default_rng(0)
    images, masks, styles, stylized, counterfactuals = [], [], [], [], []
    for index, (name, label) in enumerate(
        [("red", 0), ("green", 1), ("blue", 2), ("redish", None)]
    ):
        base = COLOURS.get(name, (190, 60, 50))
        pixels = np.clip(rng.normal(base, 12, (24, 32, 3)), 0, 255).astype(np.uint8)
        image_id = pixels_id(pixels)
        image = SourceImage(
            image_id, f"synthetic://{name}", 32, 24, label, name if label is not None else None,
            store.save_png(store.relpath("images", image_id), pixels),
        )  # fmt: skip
        images.append(image)
        obj = np.zeros((24, 32), bool)
        obj[6 : 18 - index, 8:24] = True
        for concept, mask in (("object", obj), ("background", ~obj)):
            mask_id = stable_key(image_id, concept)
            masks.append(
                ConceptMask(
                    mask_id, image_id, concept, 0.9, float(mask.mean()), "synthetic",
                    store.save_png(store.relpath("masks", mask_id), mask),
                )
            )  # fmt: skip
    for style_id, colour in STYLES.items():
        texture, index = style_id.split("/")
        styles.append(StyleImage(style_id, texture, int(index), "0" * 64, "/none", "CC0", "test"))
        for image in images:
            pixels = np.full((24, 32, 3), colour, np.uint8)
            stylized_id = stable_key(image.image_id, style_id)
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
                blend=0.8,
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
                    blend=0.8,
                    area_frac=mask.area_frac,
                    label=image.label,
                    path=store.save_png(store.relpath("counterfactuals", cf_id), pixels),
                    kept=mask.concept == "background",
                )
            )
    for kind, records in (
        ("images", images),
        ("masks", masks),
        ("styles", styles),
        ("stylized", stylized),
        ("counterfactuals", counterfactuals),
    ):
        store.write_part(kind, "test", records)
        store.consolidate(kind, ["test"])
    return store


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> BuildStore:
    return make_build(tmp_path_factory.mktemp("synthetic-build"))


def test_audit_predicts_every_counterfactual_and_caches(build: BuildStore):
    classifier = MeanColourClassifier()
    predictions = audit(build.root, classifier, batch_size=5)
    manifest = build.frame("counterfactuals")
    assert list(predictions.columns) == PREDICTION_COLUMNS
    assert sorted(predictions["cf_id"]) == sorted(manifest["cf_id"]) and len(predictions) == 24
    # the reference is the label, or the clean prediction for the unlabelled image
    unlabelled = predictions[predictions["label"].isna()]
    assert (unlabelled["reference"] == unlabelled["clean_pred"]).all()
    labelled = predictions[predictions["label"].notna()]
    assert (labelled["reference"] == labelled["label"]).all()
    # the counterfactual PNG is what was classified: white snow over a red object turns red→white
    assert 0.0 < predictions["control_overlap"].max() <= 1.0
    calls = classifier.calls
    again = audit(build.root, classifier, batch_size=5)
    assert classifier.calls == calls  # second audit: from the cache, no classification
    pd.testing.assert_frame_equal(again, predictions)
    assert (model_dir(build.root, classifier.id) / "predictions.parquet").is_file()
    # another seed gives other controls, so the cache is not reused
    audit(build.root, classifier, seed=1, batch_size=5)
    assert classifier.calls > calls


def test_cached_rows_follow_the_manifest_verdicts(tmp_path: Path):
    store = make_build(tmp_path / "build")
    classifier = MeanColourClassifier()
    first = audit(store.root, classifier)
    flipped = [  # e.g. a re-run with other filter settings
        dataclasses.replace(cf, kept=not cf.kept) for cf in store.read("counterfactuals")
    ]
    store.write_part("counterfactuals", "flipped", flipped)
    store.consolidate("counterfactuals", ["flipped"])
    calls = classifier.calls
    again = audit(store.root, classifier)
    assert classifier.calls == calls
    assert (again["kept"] == ~first["kept"]).all()
    assert audit(store.root, classifier)["kept"].equals(again["kept"])


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_report_shows_two_models_side_by_side(build: BuildStore):
    models = [MeanColourClassifier(20.0), MeanColourClassifier(60.0, name="toy:soft")]
    predictions = [audit(build.root, model, batch_size=8) for model in models]
    html_path = write_report(build.root, predictions, n_examples=4)
    assert html_path == build.root / "report" / "index.html"
    html = html_path.read_text(encoding="utf-8")
    # self-contained: one inline script (the gallery filters), no external resources
    assert html.count("<script") == 1 and "<script src" not in html
    assert "http://" not in html and "https://" not in html
    sources = re.findall(r'<img src="([^"]+)"', html)
    figures = [s for s in sources if not s.startswith("gallery/")]
    assert len(figures) == 3 * len(models)
    assert all((build.root / "report" / s).is_file() for s in sources)
    for model in models:
        folder = model_dir(build.root, model.id)
        for name in ("heatmap.png", "top_sensitivities.png", "examples.png"):
            assert f"{folder.name}/{name}" in figures
            width, height = png_size(folder / name)
            assert width > 200 and height > 80
        for table in ("sensitivity", "by_concept", "by_class", "by_texture", "flip_targets"):
            assert not pd.read_parquet(folder / f"{table}.parquet").empty
        assert model.id in html
    assert "Models compared on the same counterfactuals" in html
    assert "Class × concept heatmap" in html
    # the main tables have a row per model under each (concept, texture)
    assert html.count("<td>toy:mean-colour</td>") >= 2 and html.count("<td>toy:soft</td>") >= 2
    for heading in ("both controls", "Top flip targets", "Per texture", "Gallery of failures"):
        assert heading in html
    # the gallery: one card per counterfactual that some model flips
    flipped = set().union(
        *(set(p.loc[p["cf_pred"] != p["clean_pred"], "cf_id"]) for p in predictions)
    )
    assert 0 < len(flipped) == html.count('<div class="card"')
    assert "masks: segmenter" in html  # no resolved.mask_model in this build: the fingerprint
    # the example grid has one row per example: 4 rows of 6 images
    width, height = png_size(model_dir(build.root, models[0].id) / "examples.png")
    assert height > 3 * width / 6
    summary = summary_markdown(build.root)
    assert summary.count("| `toy:") == 2 and "texture effect" in summary
    assert json.loads((build.root / "report" / "index.json").read_text())["slugs"] == [
        model_dir(build.root, m.id).name for m in models
    ]


def test_report_can_embed_images_and_restrict_to_kept_rows(build: BuildStore):
    predictions = audit(build.root, MeanColourClassifier(), batch_size=8)
    html = write_report(build.root, [predictions], kept_only=True, embed_images=True).read_text()
    assert html.count('src="data:image/png;base64,') == 3
    cards = html.count('<div class="card"')
    assert cards > 0 and html.count('src="data:image/jpeg;base64,') == cards
    assert "kept counterfactuals only" in html
    assert "Models compared" not in html  # one model: no comparison section


def test_run_audit_loads_classifiers_by_name(build: BuildStore, monkeypatch: pytest.MonkeyPatch):
    import pipeline.report as report

    loaded: list[str] = []

    def fake_create(name: str, **options: object) -> MeanColourClassifier:
        loaded.append(name)
        return MeanColourClassifier(name=name)

    monkeypatch.setattr(report, "create_classifier", fake_create)
    path = run_audit(build.root, ["toy:a", "toy:b", "toy:a"])
    assert loaded == ["toy:a", "toy:b"]  # each model once
    assert path.is_file() and "toy:b@t20" in path.read_text()


def test_controls_neutral_keeps_the_mean_colour_and_random_lies_outside(build: BuildStore):
    # given a classifier that sees only the image's mean colour
    classifier = MeanColourClassifier(name="toy:counting")
    predictions = audit(build.root, classifier, batch_size=8)
    # 4 clean images, 24 counterfactuals, 24 random-region controls, one neutral per mask (8)
    assert classifier.images == 4 + 24 + 24 + 8
    # then the neutral control (the concept's own mean colour) changes nothing it can see...
    assert (predictions["neutral_pred"] == predictions["clean_pred"]).all()
    assert predictions["neutral_ref_prob"].to_numpy() == pytest.approx(
        predictions["clean_ref_prob"].to_numpy(), abs=0.01
    )
    # ...while the textures do: every flip is a texture effect
    assert (predictions["cf_pred"] != predictions["clean_pred"]).any()
    assert set(predictions["neutral"]) == {"mean"} and set(predictions["placement"]) == {
        "elsewhere"
    }
    # the random region lies outside the concept wherever the concept leaves room
    small = predictions[predictions["area_frac"] < 0.5]
    assert len(small) and (small["control_overlap"] == 0.0).all()


def test_stale_prediction_caches_are_recomputed(tmp_path: Path):
    store = make_build(tmp_path / "build")
    classifier = MeanColourClassifier()
    audit(store.root, classifier)
    path = model_dir(store.root, classifier.id) / "predictions.parquet"
    table = pq.read_table(path)
    meta = json.loads(table.schema.metadata[b"conceptswap.audit"])
    assert meta["version"] == PREDICTIONS_VERSION
    old = {**meta, "version": "audit-v1"}
    stale = {**table.schema.metadata, b"conceptswap.audit": json.dumps(old).encode()}
    pq.write_table(table.replace_schema_metadata(stale), path)
    calls = classifier.calls
    audit(store.root, classifier)
    assert classifier.calls > calls


def test_report_names_the_mask_model_and_warns_when_it_is_audited(tmp_path: Path):
    store = make_build(tmp_path / "build")
    mask_model = {
        "backend": "cam",
        "classifier": "toy:mean-colour@t20",
        "finder": "offline finder",
        "iou": 0.41,
    }
    store.build_yaml.write_text(
        yaml.safe_dump({"name": "b", "resolved": {"mask_model": mask_model}})
    )
    predictions = audit(store.root, MeanColourClassifier(), batch_size=8)
    html = write_report(store.root, [predictions]).read_text()
    assert "masks: cam with toy:mean-colour (offline finder, measured mask IoU 0.41" in html
    assert 'id="mask-warning"' in html and "also audited here" in html
    other = audit(store.root, MeanColourClassifier(name="toy:other"), batch_size=8)
    assert 'id="mask-warning"' not in write_report(store.root, [other]).read_text()
    # the per-concept mask quality: both concepts, 4 masks each
    assert re.search(r"<td>object</td><td>4</td>", html)


CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="no chromium (apt-get install chromium)")
def test_gallery_filters_run_in_headless_chromium(build: BuildStore):
    predictions = audit(build.root, MeanColourClassifier(), batch_size=8)
    html = write_report(build.root, [predictions])
    flips = predictions[predictions["cf_pred"] != predictions["clean_pred"]]
    expected = int((flips["texture"] == "wood").sum())
    assert 0 < expected < len(flips)  # the filter has something to hide
    with tempfile.TemporaryDirectory() as profile:
        dom = subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={profile}",
             "--dump-dom", html.as_uri() + "#texture=wood"],
            capture_output=True, text=True, timeout=120,
        ).stdout  # fmt: skip
    assert f'<span id="shown">{expected} shown</span>' in dom
    assert dom.count('<div class="card"') == len(flips)
    assert len(re.findall(r'<div class="card"[^>]*hidden', dom)) == len(flips) - expected


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="no chromium (apt-get install chromium)")
def test_report_renders_in_headless_chromium(build: BuildStore, tmp_path: Path):
    predictions = audit(build.root, MeanColourClassifier(), batch_size=8)
    html = write_report(build.root, [predictions])
    out = tmp_path / "report.png"
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "screenshot_report.py"), str(html), str(out)],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr
    width, height = png_size(out)
    assert (width, height) == (1400, 3000)
