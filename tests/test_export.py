"""`export_build` / `conceptswap export` in every format, read back the way users read them.

Given the tiny build (3 source images, one unlabelled; 12 counterfactual rows), each format
holds exactly 12 counterfactual rows and 3 images (stored once), the Hugging Face export loads
with both `load_from_disk` and `load_dataset`, and the card's and docs' code blocks run.
"""

from __future__ import annotations

import io
import json
import re
import tarfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from PIL import Image
from tiny_export_build import CONCEPTS, IMAGES, STYLES, session_build

ROWS = IMAGES * CONCEPTS * STYLES  # 12
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return session_build(tmp_path_factory.getbasetemp())


def python_blocks(markdown: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", markdown, re.S)


def test_hf_export_loads_with_load_from_disk_and_load_dataset(build: Path, tmp_path: Path) -> None:
    from datasets import load_dataset, load_from_disk

    from pipeline.publish import UNLABELLED, export_build

    out = tmp_path / "hf"
    result = export_build(build, out, format="hf", allow_unknown_license=True)
    assert result.rows == {"counterfactuals": ROWS, "images": IMAGES}

    disk = load_from_disk(str(out))
    assert sorted(disk) == ["counterfactuals", "images"]
    cfs, images = disk["counterfactuals"], disk["images"]
    assert (cfs.num_rows, images.num_rows) == (ROWS, IMAGES)
    assert "image" not in cfs.column_names  # stored once, in `images`
    assert set(cfs["image_id"]) == set(images["image_id"])
    unlabelled = [r for r in cfs if r["label"] == UNLABELLED]
    assert len(unlabelled) == CONCEPTS * STYLES  # the rocket's rows
    assert cfs.features["label"].int2str(unlabelled[0]["label"]) == "unlabelled"
    assert cfs.features["label"].int2str(cfs.features["label"].str2int("espresso")) == "espresso"

    loaded = load_dataset(str(out), "counterfactuals", split="train", cache_dir=str(tmp_path / "c"))
    assert loaded.num_rows == ROWS and loaded["cf_id"] == cfs["cf_id"]
    assert type(loaded.features["counterfactual"]).__name__ == "Image"
    assert loaded.features["label"].num_classes == 1001
    first = loaded[0]
    assert first["counterfactual"].size == first["mask"].size

    inline = export_build(
        build, tmp_path / "hf-inline", format="hf", inline_images=True, allow_unknown_license=True
    )
    with_images = load_from_disk(str(inline.root))["counterfactuals"]
    assert with_images[0]["image"].size == with_images[0]["counterfactual"].size


def test_source_images_are_stored_once(build: Path, tmp_path: Path) -> None:
    """The counterfactual table without inline images is smaller by about (rows - images)
    copies of a source PNG than the inline one."""
    from pipeline.publish import export_build

    by_ref = export_build(build, tmp_path / "ref", format="parquet", allow_unknown_license=True)
    inline = export_build(
        build, tmp_path / "inl", format="parquet", inline_images=True, allow_unknown_license=True
    )
    images = pq.read_table(by_ref.root / "images.parquet")
    png_bytes = sum(len(b) for b in images.column("image").to_pylist())
    ref_size = pq.read_table(by_ref.root / "counterfactuals.parquet").nbytes
    inline_size = pq.read_table(inline.root / "counterfactuals.parquet").nbytes
    assert inline_size - ref_size == pytest.approx(png_bytes * ROWS / IMAGES, rel=0.01)


def test_parquet_export_is_plain(build: Path, tmp_path: Path) -> None:
    from pipeline.publish import UNLABELLED, export_build

    result = export_build(build, tmp_path / "pq", format="parquet", allow_unknown_license=True)
    assert sorted(result.files) == ["README.md", "counterfactuals.parquet", "images.parquet"]
    cfs = pq.read_table(result.root / "counterfactuals.parquet")
    assert cfs.num_rows == ROWS and cfs.schema.metadata is None  # no `datasets` metadata
    row = cfs.slice(0, 1).to_pylist()[0]
    assert Image.open(io.BytesIO(row["counterfactual"])).format == "PNG"
    images = pq.read_table(result.root / "images.parquet").to_pylist()
    assert len(images) == IMAGES
    assert sorted(i["label"] for i in images).count(UNLABELLED) == 1


def test_webdataset_shards_hold_one_sample_per_row(build: Path, tmp_path: Path) -> None:
    from pipeline.publish import export_build

    result = export_build(
        build, tmp_path / "wds", format="webdataset", max_shard_size="10kB",
        inline_images=True, allow_unknown_license=True,
    )  # fmt: skip
    shards = sorted(f for f in result.files if f.startswith("counterfactuals-"))
    assert len(shards) > 1  # 10 kB shards
    names: list[str] = []
    for shard in shards:
        with tarfile.open(result.root / shard) as tar:
            members = tar.getmembers()
            names += [m.name for m in members]
            assert all(m.mtime == 0 and m.uid == 0 for m in members)
            meta = json.load(tar.extractfile(next(m for m in members if m.name.endswith(".json"))))
            assert {"cf_id", "label", "concept", "texture", "kept"} <= set(meta)
    assert len(names) == ROWS * 4  # image, mask, counterfactual, json
    keys = {n.split(".")[0] for n in names}
    assert len(keys) == ROWS
    assert {n.split(".", 1)[1] for n in names} == {
        "image.png", "mask.png", "counterfactual.png", "json",
    }  # fmt: skip
    image_names = []
    for shard in (f for f in result.files if f.startswith("images-")):
        with tarfile.open(result.root / shard) as tar:
            image_names += tar.getnames()
    assert sum(n.endswith(".image.png") for n in image_names) == IMAGES
    again = export_build(
        build, tmp_path / "wds2", format="webdataset", max_shard_size="10kB",
        inline_images=True, allow_unknown_license=True,
    )  # fmt: skip
    assert (again.root / shards[0]).read_bytes() == (result.root / shards[0]).read_bytes()


@pytest.mark.parametrize("format", ["hub", "hf", "parquet", "webdataset"])
def test_the_cards_code_runs_against_its_export(build: Path, tmp_path: Path, format: str) -> None:
    from pipeline.publish import export_build

    out = tmp_path / format
    export_build(build, out, format=format, allow_unknown_license=True)
    card = (out / "README.md").read_text()
    if format == "hub":  # no repo id: the card names a placeholder repo
        card = card.replace("<namespace>/<name>", str(out))
    blocks = python_blocks(card)
    assert blocks and ("int2str" in blocks[0]) == (format in ("hub", "hf"))
    for block in blocks:
        exec(compile(block, f"{format}/README.md", "exec"), {})


def test_the_docs_examples_run(build: Path, tmp_path: Path, capsys) -> None:
    """docs/export.md: the load example against an `hf` export, the training loop (DataLoader
    with 2 workers) against the build."""
    from pipeline.publish import export_build

    out = tmp_path / "hf"
    export_build(build, out, format="hf", allow_unknown_license=True)
    text = (ROOT / "docs" / "export.md").read_text()
    text = text.replace("data/exports/demo-hf", str(out)).replace("data/builds/demo", str(build))
    blocks = python_blocks(text)
    assert len(blocks) == 2
    for block in blocks:
        exec(compile(block, "docs/export.md", "exec"), {"__name__": "__docs__"})
    printed = capsys.readouterr().out
    assert "epoch 1: loss" in printed


def test_export_command(build: Path, tmp_path: Path) -> None:
    import typer
    from typer.testing import CliRunner

    from flows.cli_data import register

    app = typer.Typer()
    register(app)
    cli = CliRunner()
    out = tmp_path / "cli"
    result = cli.invoke(app, ["export", str(build), "--format", "parquet", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert pq.read_metadata(out / "counterfactuals.parquet").num_rows == ROWS
    bad = cli.invoke(app, ["export", str(build), "--format", "csv", "--out", str(out)])
    assert bad.exit_code == 2 and "--format 'csv'" in bad.output
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    taken = cli.invoke(app, ["export", str(build), "--out", str(tmp_path / "taken")])
    assert taken.exit_code == 2 and "not a conceptswap export" in taken.output
    assert (tmp_path / "taken" / "notes.txt").read_text() == "mine"


def test_concept_scores_are_exported_with_the_dataset(build: Path, tmp_path: Path) -> None:
    import shutil

    import pandas as pd
    import pyarrow as pa
    from datasets import load_from_disk

    from pipeline.concepts.records import ConceptScore
    from pipeline.publish import export_build
    from pipeline.store.manifest import write_table

    # given a copy of the build with two classifiers' stored concept scores
    copy = Path(shutil.copytree(build, tmp_path / "build"))
    base = {
        "class_name": "espresso", "cav_method": "linear", "score_std_runs": 0.1,
        "score_std_seeds": None, "random_score": 0.5, "random_score_std": 0.1, "magnitude": 0.2,
        "p_value": 0.01, "p_adjusted": 0.02, "significant": True, "cav_accuracy": 0.9,
        "cav_accuracy_std": 0.05, "n_random": 10, "n_seeds": 1, "n_inputs": 4,
        "n_examples": 30, "n_located": 2, "iou": 0.4, "pointing": None, "iou_whole": 0.2,
        "iou_ellipse": 0.1, "pointing_centre": 0.0,
    }  # fmt: skip
    for slug, model in (("a", "m:a@1"), ("b", "m:b@2")):
        records = [
            ConceptScore(
                **base, classifier_id=model, class_index=967, concept=c, layer=layer, score=0.1 * i
            )
            for i, (c, layer) in enumerate([("road", "L2"), ("sky", "L1"), ("road", "L1")])
        ]
        path = copy / "concepts" / slug / "concept_scores.parquet"
        path.parent.mkdir(parents=True)
        rows = [r.to_row() for r in records]
        write_table(path, pa.Table.from_pylist(rows, schema=ConceptScore.arrow_schema()))
    # when it is exported, then a `concept_scores` config holds every row, typed, keyed, sorted
    result = export_build(copy, tmp_path / "pq", format="parquet", allow_unknown_license=True)
    assert result.rows["concept_scores"] == 6
    table = pd.read_parquet(result.root / "concept_scores.parquet")
    assert list(table["classifier_id"]) == ["m:a@1"] * 3 + ["m:b@2"] * 3
    assert list(table["layer"][:3]) == ["L1", "L2", "L1"]  # by class, concept, then layer
    assert table["score_id"].is_unique and table["score_id"][0] == "m:a@1|967|road|L1"
    assert table.loc[0, "score"] == pytest.approx(0.2) and pd.isna(table.loc[0, "pointing"])
    card = (result.root / "README.md").read_text(encoding="utf-8")
    assert "config `concept_scores`" in card
    hf = export_build(copy, tmp_path / "hf", format="hf", allow_unknown_license=True)
    scores = load_from_disk(str(hf.root))["concept_scores"]
    assert scores.num_rows == 6 and scores["significant"] == [True] * 6
    # and a build without scores has no such config
    plain = export_build(build, tmp_path / "plain", format="parquet", allow_unknown_license=True)
    assert "concept_scores" not in plain.rows
