"""Edit evaluation, selection and the runner on tiny synthetic builds (no weights, no network)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.cases import TEST_GROUPS, EditCase
from pipeline.editing import runner
from pipeline.editing import select as select_module
from pipeline.editing.build_images import BuildImages, case_items
from pipeline.editing.delta import EditResult
from pipeline.editing.evaluate import case_exemplars, evaluate_case
from pipeline.editing.masks import mask_transform
from pipeline.editing.methods import Candidate, EditingMethod, EditInputs, RewriteClosed
from pipeline.editing.predict import Predictor
from pipeline.editing.select import select_edit
from pipeline.editing.split import SplitModel
from pipeline.hashing import stable_key
from pipeline.records import ConceptMask, Counterfactual, SourceImage
from pipeline.report.edits import comparison_html, write_comparison
from pipeline.store import BuildStore
from pipeline.store.manifest import records_to_table, write_table


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Exact counts on toy models: one thread here, restored after (other tests compare
    numbers with child processes that use torch's default)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


K = 10  # classes of the toy models


def _hex(*parts: object) -> str:
    return stable_key(*parts, length=32)


def write_build(
    root: Path,
    photos: list[dict],
) -> BuildStore:
    """A build from photo specs: {name, label, clean (H, W, 3 uint8), mask (H, W bool),
    cfs: {style: (H, W, 3 uint8)}, clean_pred, cf_preds: {style: int}}."""
    store = BuildStore(root)
    images, masks, cfs = [], [], []
    for photo in photos:
        image_id = _hex("image", photo["name"])
        mask_id = _hex("mask", photo["name"])
        height, width = photo["clean"].shape[:2]
        path = store.save_png(store.relpath("images", image_id), photo["clean"])
        images.append(
            SourceImage(image_id, photo["name"], width, height, photo["label"], None, path)
        )
        mask_path = store.save_png(store.relpath("masks", mask_id), photo["mask"])
        masks.append(ConceptMask(mask_id, image_id, "background", 1.0, 0.5, "test", mask_path))
        for style, pixels in photo["cfs"].items():
            cf_id = _hex("cf", photo["name"], style)
            cf_path = store.save_png(store.relpath("counterfactuals", cf_id), pixels)
            cfs.append(
                Counterfactual(
                    cf_id=cf_id,
                    image_id=image_id,
                    mask_id=mask_id,
                    stylized_id=_hex("stylized", photo["name"], style),
                    concept="background",
                    texture=style.split("/")[0],
                    style_image=style,
                    blend=1.0,
                    area_frac=0.5,
                    label=photo["label"],
                    path=cf_path,
                    clean_pred=photo.get("clean_pred", photo["label"]),
                    cf_pred=photo.get("cf_preds", {}).get(style, 0),
                    kept=True,
                )
            )
    write_table(store.manifest_path("images"), records_to_table("images", images))
    write_table(store.manifest_path("masks"), records_to_table("masks", masks))
    write_table(store.manifest_path("counterfactuals"), records_to_table("counterfactuals", cfs))
    return store


class StubClassifier:
    """What the runner needs of a classifier, around any model and torchvision transform."""

    def __init__(self, model: nn.Module, transform, name: str = "stub") -> None:
        self.model = model.eval()
        self.transform = transform
        self.id = f"test:{name}"
        self.class_names = [f"class{i}" for i in range(K)]
        self.device = torch.device("cpu")

    def preprocess(self, images):
        from PIL import Image

        return torch.stack([self.transform(Image.fromarray(i)) for i in images])


# -- masks follow the image's geometry ---------------------------------------------------------
def test_mask_stays_on_the_square_it_marks():
    from timm.data import create_transform

    height, width = 45, 70  # landscape: the resize and the centre crop both matter
    rgb = np.full((height, width, 3), 40, np.uint8)
    mask = np.zeros((height, width), bool)
    mask[10:30, 38:60] = True  # right of centre, partly cut by the crop
    rgb[mask] = (230, 20, 20)
    transform = create_transform(
        input_size=(3, 32, 32), crop_pct=0.875, interpolation="bicubic", is_training=False
    )
    classifier = StubClassifier(nn.Identity(), transform)
    image_t = classifier.preprocess([rgb])[0]
    mask_t = mask_transform(classifier)(mask)
    assert mask_t.shape == (1, 32, 32) and set(mask_t.unique().tolist()) == {0.0, 1.0}
    red = (image_t[0] - image_t[1]) > 1.0  # strongly red after normalisation
    inside = mask_t[0] > 0.5
    # identical geometry: the masks agree except on a one-pixel resampling border
    assert (red ^ inside).sum() <= 0.1 * inside.sum()
    eroded = -F.max_pool2d(-inside.float()[None, None], 3, 1, 1)[0, 0] > 0.5
    assert red[eroded].all()
    assert not red[~inside].any() or (red & ~inside).sum() <= inside.sum() * 0.1
    # a mask pushed through the wrong geometry (a plain resize to 32x32) would not match
    naive = F.interpolate(torch.from_numpy(mask).float()[None, None], (32, 32))[0, 0] > 0.5
    assert (red ^ naive).sum() > 3 * (red ^ inside).sum()

    class NoTransform:  # the fallback through `preprocess` itself
        def preprocess(self, images):
            return classifier.preprocess(images)

    fallback = mask_transform(NoTransform())(mask)[0] > 0.5
    assert (fallback ^ inside).sum() <= 0.1 * inside.sum()


# -- exact counts with a stub model ------------------------------------------------------------
class CodeModel(nn.Module):
    """Predicts the class written in the red channel of pixel (0, 0) (value = 20·class),
    through a class→class table; an edit of ``table`` remaps predictions exactly."""

    def __init__(self) -> None:
        super().__init__()
        self.table = nn.Parameter(torch.eye(K))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        code = (x[:, 0, 0, 0] * 255 / 20).round().long().clamp(0, K - 1)
        return F.one_hot(code, K).float() @ self.table


def coded(cls: int, size: int = 8) -> np.ndarray:
    pixels = np.full((size, size, 3), 100, np.uint8)
    pixels[..., 0] = 20 * cls
    return pixels


def _to_tensor():
    from torchvision import transforms as T

    return T.ToTensor()


@pytest.fixture
def coded_build(tmp_path):
    """Photos whose clean / counterfactual images encode the class the stub predicts."""
    square = np.zeros((8, 8), bool)
    square[4:, :] = True
    specs = {
        # name: (label, clean code, counterfactual code)
        "t1": (1, 1, 5),
        "t2": (1, 1, 5),
        "a": (1, 1, 5),  # error fixed by the edit (5 -> 1)
        "b": (1, 1, 6),  # error the edit does not fix
        "c": (1, 1, 1),  # right before and after
        "d": (1, 2, 5),  # clean image wrong: not counted in E
        "e": (1, 1, 7),  # held-out style, not fixed
        "g": (5, 5, 5),  # other class, right before, broken by the edit
        "h": (3, 3, 4),  # other class, wrong before and after
        "i": (3, 3, 3),
        "v1": (4, 4, 4),
        "v2": (4, 4, 4),
        "k1": (5, 5, 5),
        "k2": (3, 3, 3),
        "k3": (3, 3, 3),
        "k4": (2, 0, 0),
    }
    photos = []
    for name, (label, clean_code, cf_code) in specs.items():
        style = "snow/1" if name in {"e", "i"} else "snow/0"
        photos.append(
            {
                "name": name,
                "label": label,
                "clean": coded(clean_code),
                "mask": square,
                "cfs": {style: coded(cf_code)},
            }
        )
    store = write_build(tmp_path / "build", photos)
    ids = {name: (_hex("cf", name, "snow/1" if name in {"e", "i"} else "snow/0")) for name in specs}
    img = {name: _hex("image", name) for name in specs}
    case = EditCase(
        case_id="background-snow-1-test",
        concept="background",
        texture="snow",
        target_class=1,
        train_style="snow/0",
        train=[ids["t1"], ids["t2"]],
        test_groups={
            "target_train_style": [ids[n] for n in ("a", "b", "c", "d")],
            "target_heldout_style": [ids["e"]],
            "other_train_style": [ids["g"], ids["h"]],
            "other_heldout_style": [ids["i"]],
        },
        validation=[img["v1"], img["v2"]],
        heldout=[img[n] for n in ("k1", "k2", "k3", "k4")],
        seed=0,
    )
    return store, case


def remap_5_to_1() -> EditResult:
    delta = torch.zeros(K, K)
    delta[5, 5], delta[5, 1] = -1.0, 1.0
    return EditResult({"table": delta}, {"method": "test"})


def test_evaluate_case_counts_exactly(coded_build):
    store, case = coded_build
    model = CodeModel()
    predictor = Predictor(
        model, StubClassifier(model, _to_tensor()).preprocess, BuildImages(store.root), batch_size=3
    )
    evaluation = evaluate_case(predictor, case, remap_5_to_1())
    rows = {row["group"]: row for row in evaluation.rows}
    assert [r["group"] for r in evaluation.rows] == ["exemplars", *TEST_GROUPS, "clean"]
    target = rows["target_train_style"]
    assert (target["n"], target["n_clean_correct"]) == (4, 3)
    assert (target["e_pre"], target["e_post"]) == (2, 1)
    assert target["errors_corrected"] == pytest.approx(50.0)
    assert target["gr"] == pytest.approx(50.0) and target["new_errors"] == 0
    assert target["acc_pre"] == pytest.approx(25.0) and target["acc_post"] == pytest.approx(75.0)
    held = rows["target_heldout_style"]
    assert (held["e_pre"], held["e_post"], held["errors_corrected"]) == (1, 1, 0.0)
    other = rows["other_train_style"]
    assert (other["e_pre"], other["e_post"], other["new_errors"]) == (1, 2, 1)
    assert other["errors_corrected"] == pytest.approx(-100.0)
    assert math.isnan(rows["other_heldout_style"]["errors_corrected"])  # nothing to correct
    exemplars = rows["exemplars"]
    assert exemplars["sr"] == pytest.approx(100.0) and exemplars["sr_n"] == 2
    clean = rows["clean"]
    assert clean["acc_pre"] == pytest.approx(75.0) and clean["acc_post"] == pytest.approx(50.0)
    assert clean["clean_drop_pp"] == pytest.approx(25.0)
    assert clean["lr"] == pytest.approx(75.0) and clean["lr_n"] == 4
    # the model is exactly as before, and no edit means nothing corrected, nothing lost
    assert torch.equal(model.table, torch.eye(K))
    same = {r["group"]: r for r in evaluate_case(predictor, case, None, pre=evaluation.pre).rows}
    assert same["target_train_style"]["errors_corrected"] == 0.0
    assert same["clean"]["clean_drop_pp"] == 0.0


def test_per_item_outcomes_pool_by_style_to_the_group_counts(coded_build):
    from pipeline.edit_styles import pool_by_style

    store, case = coded_build
    model = CodeModel()
    predictor = Predictor(
        model, StubClassifier(model, _to_tensor()).preprocess, BuildImages(store.root), batch_size=3
    )
    evaluation = evaluate_case(predictor, case, remap_5_to_1())
    outcomes = evaluation.outcomes
    assert len(outcomes) == sum(len(ids) for ids in case.test_groups.values())
    pooled = pool_by_style(outcomes).set_index(["group", "style_image"])
    # the same predictions as the rows: d's clean image is wrong, so it is not counted
    assert list(pooled.index) == [
        ("target_heldout_style", "snow/1"),
        ("target_train_style", "snow/0"),
    ]
    trained = pooled.loc[("target_train_style", "snow/0")]
    held = pooled.loc[("target_heldout_style", "snow/1")]
    assert (trained["n"], trained["e_pre"], trained["e_post"]) == (4, 2, 1)
    assert trained["errors_corrected"] == pytest.approx(50.0)
    assert (held["n"], held["e_pre"], held["e_post"]) == (1, 1, 1)


def test_exemplars_are_the_train_split(coded_build):
    store, case = coded_build
    data = BuildImages(store.root)
    classifier = StubClassifier(CodeModel(), _to_tensor())
    exemplars = case_exemplars(case, data, classifier.preprocess, mask_transform(classifier))
    assert len(exemplars) == 2 and exemplars.labels.tolist() == [1, 1]
    assert torch.allclose(exemplars.transformed[:, 0, 0, 0] * 255, torch.tensor([100.0, 100.0]))
    assert torch.allclose(exemplars.original[:, 0, 0, 0] * 255, torch.tensor([20.0, 20.0]))
    assert exemplars.masks[:, 0, 4:].eq(1).all() and exemplars.masks[:, 0, :4].eq(0).all()


# -- a tiny trainable network and a build for the runner ---------------------------------------
class TinyNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.act = nn.ReLU()
        self.mid = nn.Conv2d(8, 8, 1)
        self.head = nn.Linear(8, K)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.stem(x))
        x = self.act(self.mid(x)) + x
        return self.head(x.mean((2, 3)))


def tiny_classifier() -> StubClassifier:
    from torchvision import transforms as T

    torch.manual_seed(0)
    transform = T.Compose(
        [T.Resize(18), T.CenterCrop(16), T.ToTensor(), T.Normalize([0.5] * 3, [0.5] * 3)]
    )
    return StubClassifier(TinyNet().eval(), transform, "tiny")


def photo(rng: np.random.Generator, cls: int, height: int = 14, width: int = 20) -> np.ndarray:
    base = rng.integers(0, 60, (height, width, 3))
    base[..., cls % 3] += 120 + 10 * cls
    return np.clip(base, 0, 255).astype(np.uint8)


def write_tiny_build(root: Path) -> BuildStore:
    """Classes 1 and 2 with 5 photos, class 3 with 3; two style images. The manifest says every
    clean photo is classified correctly (the random tiny model decides what it really does)."""
    rng = np.random.default_rng(0)
    mask = np.zeros((14, 20), bool)
    mask[:, :9] = True
    photos = []
    for cls, count in ((1, 5), (2, 5), (3, 3)):
        for index in range(count):
            clean = photo(rng, cls)
            cfs = {}
            for style in ("snow/0", "snow/1"):
                pixels = clean.copy()
                pixels[mask] = (235, 235, 245) if style == "snow/0" else (200, 210, 255)
                cfs[style] = pixels
            photos.append(
                {"name": f"{cls}-{index}", "label": cls, "clean": clean, "mask": mask, "cfs": cfs}
            )
    return write_build(root, photos)


@pytest.fixture
def tiny_build(tmp_path):
    """:func:`write_tiny_build` and the tiny classifier."""
    return write_tiny_build(tmp_path / "build"), tiny_classifier()


def test_split_model_matches_the_model_and_caches_rows():
    classifier = tiny_classifier()
    x = torch.randn(4, 3, 16, 16)
    split = SplitModel.create(classifier.model, "mid", probe=x[:2])
    assert split is not None
    with torch.no_grad():
        expected = classifier.model(x)
        assert torch.allclose(split(x), expected, atol=1e-6)
        assert torch.allclose(split(x), expected, atol=1e-6)
    assert split.misses == 4 and split.hits == 4
    assert {n for n, _ in split.named_parameters()} == {
        n for n, _ in classifier.model.named_parameters()
    }
    # an in-place change of a prefix parameter invalidates the cache; of the layer, it must not
    with torch.no_grad():
        classifier.model.stem.bias.add_(1.0)
        assert torch.allclose(split(x), classifier.model(x), atol=1e-6)
        classifier.model.mid.bias.add_(1.0)
        assert torch.allclose(split(x), classifier.model(x), atol=1e-6)
    assert split.misses == 8


def test_selection_reads_only_exemplars_and_validation(tiny_build):
    store, classifier = tiny_build
    cases = runner.resolve_cases(store.root)
    assert cases, "the tiny build must yield cases"
    case = cases[0]
    data = BuildImages(store.root)
    requested, loaded = [], []

    class Recording(Predictor):
        def logits(self, items):
            requested.extend(items)
            return super().logits(items)

    original_rgb = data.rgb
    data.rgb = lambda item: (loaded.append(item), original_rgb(item))[1]  # type: ignore
    predictor = Recording(classifier.model, classifier.preprocess, data, batch_size=4)
    items = case_items(case, data)
    exemplars = case_exemplars(case, data, classifier.preprocess, mask_transform(classifier))
    loaded.clear()
    chosen = select_edit(
        classifier.model,
        "mid",
        RewriteClosed(),
        EditInputs(exemplars),
        predictor=predictor,
        train=items.train,
        validation=items.validation,
        validation_refs={i: data.reference(i) for i in items.validation},
        budget_pp=1.0,
    )
    allowed = set(items.train) | set(items.validation)
    tested = {i for group in items.groups.values() for i in group} | set(items.heldout)
    tested |= {items.clean[i] for group in items.groups.values() for i in group}
    assert requested and set(requested) <= allowed and not set(requested) & tested
    assert set(loaded) <= allowed
    assert len(chosen.trials) == len(RewriteClosed.grid) and chosen.candidate.params == {"rank": 1}
    # every distinct solve is kept for the curve: the closed form is one solve at many scales
    assert len(chosen.solves) == 1 and {t.solve for t in chosen.trials} == {0}
    assert json.loads(chosen.result.metadata["selection"])["budget_pp"] == 1.0


def test_choose_respects_the_budget():
    trials = [
        select_module.Trial(Candidate({"a": 1}), 0.0, 50.0, -2.0, 0.1),
        select_module.Trial(Candidate({"a": 2}), 0.5, 100.0, -1.0, 0.1),
        select_module.Trial(Candidate({"a": 3}), 3.0, 100.0, -0.1, 0.1),
    ]
    best, within = select_module.choose(trials, 1.0)
    assert within and best.candidate.params == {"a": 2}
    best, within = select_module.choose(trials, 0.0)
    assert within and best.candidate.params == {"a": 1}
    best, within = select_module.choose(trials[2:], 1.0)
    assert not within and best.candidate.params == {"a": 3}


GRIDS = {"finetune-local": [Candidate({"lr": 1e-2, "steps": 3})]}


def edit_config(methods, grids=None, **fields):
    """An :class:`EditConfig` of ``methods`` with ``grids`` (method → candidates) as the
    config's grids (test shorthand)."""
    from pipeline.editing.config import EditConfig

    grids = grids or {}
    return EditConfig(
        methods=[
            {
                "name": name,
                **({"grid": [c.to_dict() for c in grids[name]]} if name in grids else {}),
            }
            for name in methods
        ],
        **fields,
    )


def test_run_edits_writes_results_and_reuses_deltas(tiny_build, monkeypatch):
    store, classifier = tiny_build
    methods = ["rewrite-closed", "finetune-local"]
    seen: dict[str, list[object]] = {}  # case id -> items classified during its selection
    real_select = select_module.select_edit

    def spy(*args, **kwargs):
        predictor = kwargs["predictor"]
        original = predictor.logits
        record = seen.setdefault(args[3].case_id, [])
        predictor.logits = lambda items: (record.extend(items), original(items))[1]
        try:
            return real_select(*args, **kwargs)
        finally:
            del predictor.logits

    monkeypatch.setattr(select_module, "select_edit", spy)
    loads: list[object] = []  # items read from disk and run through the network before "mid"
    real_load = Predictor.load
    monkeypatch.setattr(
        Predictor, "load", lambda self, items: (loads.extend(items), real_load(self, items))[1]
    )
    read_by_evaluation: dict[str, list[int]] = {}  # case id -> images read per evaluation
    real_evaluate = runner.evaluate_case

    def evaluate_spy(predictor, case, *args, **kwargs):
        before = len(loads)
        try:
            return real_evaluate(predictor, case, *args, **kwargs)
        finally:
            read_by_evaluation.setdefault(case.case_id, []).append(len(loads) - before)

    monkeypatch.setattr(runner, "evaluate_case", evaluate_spy)
    out = runner.run_edits(
        store.root, edit_config(methods, GRIDS, layer="mid"), classifier=classifier
    )
    # every candidate is evaluated; after a case's first evaluation every candidate runs on
    # the cached layer inputs: nothing is read or run before the layer again
    for reads in read_by_evaluation.values():
        assert len(reads) == len(RewriteClosed.grid) + 1 and not any(reads[1:])
    write_comparison(store.root)
    cases = runner.load_cases(store.root)
    assert len(cases) == 2  # planned by plan_cases: targets 1 and 2
    results = pd.read_parquet(out / "results.parquet")
    # every candidate of every grid is evaluated: one row per case x method x candidate x part
    n_candidates = len(RewriteClosed.grid) + len(GRIDS["finetune-local"])
    assert len(results) == len(cases) * n_candidates * 6
    assert set(results["group"]) == {"exemplars", *TEST_GROUPS, "clean"}
    per_case = results.groupby(["case_id", "method"])
    assert (per_case["selected"].sum() == 6).all()  # one selected candidate, six parts
    assert (per_case["candidate_index"].nunique() == per_case["candidate"].nunique()).all()
    # the tiny build's validation split cannot resolve a 1 pp budget: said, not "within"
    assert (~results["budget_resolved"]).all() and results["within_budget"].isna().all()
    assert np.allclose(results["pp_per_image"], 100.0 / results["n_validation"])
    clean = results[results["group"] == "clean"]
    assert (clean["same_bits"].str.len() == clean["lr_n"]).all()
    for case in cases:
        items = case_items(case, BuildImages(store.root))
        tested = {i for group in items.groups.values() for i in group} | set(items.heldout)
        assert seen[case.case_id] and not tested & set(seen[case.case_id])
        for method in methods:
            assert (out / method / f"{case.case_id}.safetensors").is_file()
    for name in (
        "comparison.parquet",
        "comparison.md",
        "comparison.png",
        "curves.parquet",
        "curve_points.parquet",
        "curves.png",
    ):
        assert (out / name).is_file()
    curves = pd.read_parquet(out / "curves.parquet")
    assert set(curves["method"]) == set(methods) and (curves["cases"] == 2).all()
    assert set(curves["part"]) == {"test", *TEST_GROUPS}
    points = pd.read_parquet(out / "curve_points.parquet")
    grid = points[(points["kind"] == "candidate") & (points["part"] == "test")]
    assert len(grid) == len(RewriteClosed.grid) + len(GRIDS["finetune-local"])
    assert grid["locality"].between(0.0, 1.0).all()
    assert not grid.loc[grid["errors_corrected"].isna(), "on_front"].any()
    assert (points["kind"] == "selected").sum() == len(methods) * 5
    comparison = pd.read_parquet(out / "comparison.parquet")
    assert set(comparison["method"]) == set(methods)
    assert (comparison["n_cases"] == 2).all()
    fragment = comparison_html(store.root)
    assert "<table>" in fragment and 'src="../edits/comparison.png"' in fragment
    assert 'src="../edits/curves.png"' in fragment and "LR ≥ 99 %" in fragment
    assert "unresolved" in (out / "comparison.md").read_text()
    page = (store.root / "report" / "edits.html").read_text()
    assert fragment in page and "rewrite-closed" in page
    assert "rewrite-closed" in (out / "comparison.md").read_text()
    # the budget point of every case and method: predicted vs measured clean change
    budget = pd.read_parquet(out / "budget.parquet")
    assert len(budget) == len(cases) * len(methods)
    assert np.allclose(budget["gap_pp"], (budget["clean_drop_pp"] - budget["val_drop_pp"]).abs())
    assert "Budget point" in (out / "comparison.md").read_text()
    # cached key statistics
    assert list((out / "cache").rglob("*.safetensors"))

    # second run: nothing is edited again, neither with the results present nor without them
    def no_edit(*_args, **_kwargs):
        raise AssertionError("an edit method ran although its delta was saved")

    monkeypatch.setattr(EditingMethod, "edit", no_edit)
    runner.run_edits(store.root, edit_config(methods, GRIDS, layer="mid"), classifier=classifier)
    (out / "results.parquet").unlink()
    runner.run_edits(store.root, edit_config(methods, GRIDS, layer="mid"), classifier=classifier)
    again = pd.read_parquet(out / "results.parquet")
    assert again["reused_delta"].all()
    columns = [
        "case_id",
        "method",
        "candidate_index",
        "selected",
        "group",
        "e_pre",
        "e_post",
        "clean_drop_pp",
        "sr",
    ]
    pd.testing.assert_frame_equal(
        again[columns].reset_index(drop=True), results[columns].reset_index(drop=True)
    )
    # one experiment's comparison: only its cases and methods, and it says what it left out
    first = cases[0].case_id
    write_comparison(store.root, cases=[first], methods=["rewrite-closed"])
    scoped = pd.read_parquet(out / "comparison.parquet")
    assert set(scoped["method"]) == {"rewrite-closed"} and (scoped["n_cases"] == 1).all()
    assert len(pd.read_parquet(out / "budget.parquet")) == 1
    assert "hold 1 other case (" in (out / "comparison.md").read_text()


def test_group_cases_target_a_class_group():
    from pipeline.cases import GroupPlan, class_group, plan_group_cases

    dogs = class_group("dog")
    assert dogs[0] == 151 and 268 in dogs and len(dogs) == 130
    rows, images = [], []
    labels = [*dogs[:6], 7, 8, 9, 10, 11, 12]  # one photo per class
    for label in labels:
        image_id = _hex("photo", label)
        images.append(image_id)
        for style in ("snow/0", "snow/1"):
            rows.append(
                Counterfactual(
                    cf_id=_hex("cf", label, style),
                    image_id=image_id,
                    mask_id=_hex("mask", label),
                    stylized_id=_hex("st", label, style),
                    concept="background",
                    texture="snow",
                    style_image=style,
                    blend=0.8,
                    area_frac=0.5,
                    label=label,
                    path="counterfactuals/00/00.png",
                    clean_pred=label,
                    cf_pred=0,
                    kept=True,
                ).to_row()
            )
    plan = GroupPlan(groups={"dog": dogs}, n_train=3)
    cases = plan_group_cases(pd.DataFrame(rows), sorted(images), plan)
    assert len(cases) == 1
    case = cases[0]
    assert case.case_id.startswith("background-snow-dog-") and case.target_class == -1
    assert case.params["target_group"] == "dog" and case.params["target_classes"] == dogs
    frame = pd.DataFrame(rows).set_index("cf_id")
    train_labels = frame.loc[case.train, "label"]
    assert len(set(train_labels)) == 3 and set(train_labels) <= set(dogs)
    target = [*case.test_groups["target_train_style"], *case.test_groups["target_heldout_style"]]
    assert set(frame.loc[target, "label"]) <= set(dogs) and len(target) == 6
    others = [*case.test_groups["other_train_style"], *case.test_groups["other_heldout_style"]]
    assert not set(frame.loc[others, "label"]) & set(dogs)


def test_a_grid_that_never_keeps_locality_is_flagged_and_the_budget_unresolved(tiny_build):
    store, classifier = tiny_build
    strong = Candidate({"rank": 1}, 500.0)  # far past the closed form: most top-1s change
    grids = {"rewrite-closed": [strong, Candidate({"rank": 1}, 1000.0)]}
    out = runner.run_edits(
        store.root, edit_config(["rewrite-closed"], grids, layer="mid"), classifier=classifier
    )
    results = pd.read_parquet(out / "results.parquet")
    clean = results[results["group"] == "clean"]
    assert (clean["lr"] < 99.0).all() and results["grid_defect"].all()
    # the same case with a candidate that changes nothing: the grid reaches "no change"
    grids = {"rewrite-closed": [Candidate({"rank": 1}, 1e-9), strong]}
    runner.run_edits(
        store.root, edit_config(["rewrite-closed"], grids, layer="mid"), classifier=classifier
    )
    results = pd.read_parquet(out / "results.parquet")
    weakest = results[results["candidate"].str.contains("1e-09")]
    again = results[results["run_key"].isin(weakest["run_key"])]  # the second grid's rows
    assert len(again) == len(runner.load_cases(store.root)) * 2 * 6
    assert (weakest["lr"] == 100.0).all() and not again["grid_defect"].any()
    # 13 photos: every case's validation split is far below 200 images
    assert (~results["budget_resolved"]).all() and results["within_budget"].isna().all()


def test_without_curves_only_the_selected_candidate_is_evaluated_with_the_same_figures(
    tiny_build,
):
    store, classifier = tiny_build
    grids = {"rewrite-closed": [Candidate({"rank": 1}, s) for s in (1e-9, 0.5, 1.0, 500.0)]}
    config = edit_config(["rewrite-closed"], grids, layer="mid")
    out = runner.run_edits(store.root, config, classifier=classifier)
    curves = pd.read_parquet(out / "results.parquet")
    single = config.overridden(curves=False)
    runner.run_edits(store.root, single, classifier=classifier)
    results = pd.read_parquet(out / "results.parquet")
    # a single-point run is recorded beside the curve run (its own run key), not over it
    points = results[~results["run_key"].isin(curves["run_key"])]
    assert len(results) == len(curves) + len(points)
    n_cases = curves["case_id"].nunique()
    assert points.drop_duplicates(["case_id", "candidate_index"]).shape[0] == n_cases
    assert points["selected"].all() and not points["grid_defect"].any()
    # and it is the selected point of the curve, figure for figure
    key = ["case_id", "candidate_index", "group"]
    chosen = curves[curves["selected"]].set_index(key).sort_index()
    again = points.set_index(key).sort_index()
    assert chosen.index.equals(again.index)
    for column in ("errors_corrected", "lr", "clean_drop_pp"):
        np.testing.assert_array_equal(chosen[column].to_numpy(), again[column].to_numpy())


def test_the_comparison_reads_each_case_and_methods_last_run(tiny_build):
    from pipeline.report.edits import budget_points, compare
    from pipeline.store.edit_results import latest_runs, read_results

    store, classifier = tiny_build
    grids = {"rewrite-closed": [Candidate({"rank": 1}, s) for s in (1e-9, 1.0)]}
    config = edit_config(["rewrite-closed"], grids, layer="mid")
    for run in (config, config.overridden(curves=False), config):  # A, then B, then A again
        out = runner.run_edits(store.root, run, classifier=classifier)
    results = read_results(out / "results.parquet")
    assert results["run_key"].nunique() == 2 * results["case_id"].nunique()
    latest = latest_runs(results)
    # the third run reused A's rows and made them the last: the report shows A, once per case
    assert not latest["run_key"].str.endswith("-single").any()
    assert set(latest["candidate_index"]) == {0, 1}
    n_cases = results["case_id"].nunique()
    assert len(budget_points(latest)) == n_cases
    assert set(compare(latest)["n_cases"]) == {n_cases}
