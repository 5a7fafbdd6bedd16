"""End to end: the build_dataset flow on small sample photos, re-runs, repairs, bad inputs."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import skimage.data
import yaml
from PIL import Image

pytestmark = pytest.mark.usefixtures("prefect_harness")

CONFIG = {
    "name": "e2e",
    "source": {"kind": "samples", "names": ["coffee", "chelsea", "astronaut"]},
    "image": {"max_side": 160},
    "stylize": {"textures": ["snow", "wood"], "styles_per_texture": 1},
    "filter": {"require_clean_correct": False},
}

FILE_DIRS = ("images", "masks", "stylized", "counterfactuals", "manifests")


def snapshot(root: Path) -> dict[str, int]:
    """mtime of every build file: a re-run that redoes nothing leaves all of them untouched."""
    return {
        str(p.relative_to(root)): p.stat().st_mtime_ns
        for d in FILE_DIRS
        for p in (root / d).rglob("*")
        if p.is_file()
    }


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, prefect_harness) -> Path:
    from flows.build import build_dataset

    out = tmp_path_factory.mktemp("build")
    build_dataset(config=CONFIG, out=str(out))
    return out


def test_build_writes_manifest_files_and_provenance(built: Path) -> None:
    rows = pq.read_table(built / "manifest.parquet").to_pylist()
    images = pq.read_table(built / "manifests" / "images.parquet").to_pylist()
    masks = pq.read_table(built / "manifests" / "masks.parquet").to_pylist()
    assert len(images) == 3
    kept_masks = [m for m in masks if m["kept"]]
    assert kept_masks, "the segmenter found no usable concept in three photos"
    # one row per (kept mask, style image): 2 textures x 1 style image each
    assert len(rows) == 2 * len(kept_masks)
    assert len({r["cf_id"] for r in rows}) == len(rows)
    for row in rows:
        assert (built / row["path"]).is_file()
        assert set(row) >= {"clean_topk", "cf_topk", "verdicts", "kept"}
    for mask in kept_masks:
        assert (built / mask["path"]).is_file()
    build = yaml.safe_load((built / "build.yaml").read_text())
    assert build["seed"] == 0
    assert build["resolved"]["classifier"].startswith("timm:tf_efficientnet_lite0@")
    assert {s["style_id"] for s in build["resolved"]["styles"]} == {"snow/0", "wood/0"}
    assert (built / "quarantine.jsonl").read_text() == ""
    stats = {row["concept"]: row for row in json.loads((built / "concept_stats.json").read_text())}
    assert sum(row["kept"] for row in stats.values()) == len(kept_masks)
    overview = (built / "report" / "build.html").read_text()
    panels = list((built / "report" / "build").glob("*.png"))
    assert len(panels) == len({(r["concept"], r["texture"]) for r in rows})
    assert all(f"build/{p.name}" in overview for p in panels)


def test_counterfactual_differs_from_the_original_inside_the_mask_only(built: Path) -> None:
    row = pq.read_table(built / "manifest.parquet").to_pylist()[0]
    masks = {
        m["mask_id"]: m for m in pq.read_table(built / "manifests" / "masks.parquet").to_pylist()
    }
    images = {
        i["image_id"]: i for i in pq.read_table(built / "manifests" / "images.parquet").to_pylist()
    }
    original = np.asarray(Image.open(built / images[row["image_id"]]["path"]))
    counterfactual = np.asarray(Image.open(built / row["path"]))
    mask = np.asarray(Image.open(built / masks[row["mask_id"]]["path"]).convert("L")) > 127
    changed = np.any(original != counterfactual, axis=-1)
    assert not changed[~mask].any()
    assert changed[mask].mean() > 0.5


def test_rerun_redoes_nothing_and_repairs_one_deleted_file(built: Path, monkeypatch) -> None:
    import dataclasses

    import flows.build as build_module
    from pipeline.config import BuildConfig
    from pipeline.stages import Backends

    loads: list[str] = []
    backends = Backends.of(BuildConfig.model_validate(CONFIG))  # the flow's, cached per process
    for role in ("segmenter", "stylizer", "classifier"):
        stage_backend = getattr(backends, role)

        def counted(_role=role, _load=stage_backend.load):  # type: ignore[no-untyped-def]
            loads.append(_role)
            return _load()

        monkeypatch.setattr(backends, role, dataclasses.replace(stage_backend, load=counted))
    before = snapshot(built)
    digest = (built / "manifest.parquet").read_bytes()
    build_module.build_dataset(config=CONFIG, out=str(built))
    assert loads == []
    assert snapshot(built) == before
    victim = pq.read_table(built / "manifest.parquet").to_pylist()[0]["path"]
    expected = (built / victim).read_bytes()
    (built / victim).unlink()
    build_module.build_dataset(config=CONFIG, out=str(built))
    after = snapshot(built)
    assert (built / victim).read_bytes() == expected
    assert {k for k in after if after[k] != before.get(k)} == {victim}
    assert (built / "manifest.parquet").read_bytes() == digest
    assert loads == []


def test_bad_files_are_quarantined_and_good_ones_built(tmp_path: Path) -> None:
    from flows.build import build_dataset

    photos = tmp_path / "photos"
    photos.mkdir()
    buffer = io.BytesIO()
    Image.fromarray(skimage.data.coffee()).save(buffer, format="JPEG", quality=90)
    good = buffer.getvalue()
    (photos / "good.jpg").write_bytes(good)
    (photos / "truncated.jpg").write_bytes(good[: len(good) // 3])
    (photos / "text.jpg").write_text("this is not a photo\n")
    cmyk = io.BytesIO()
    Image.fromarray(skimage.data.chelsea()).convert("CMYK").save(cmyk, format="JPEG")
    (photos / "cmyk.jpg").write_bytes(cmyk.getvalue())
    config = {
        **CONFIG,
        "source": {"kind": "folder", "path": str(photos)},
        "stylize": {"textures": ["snow"], "styles_per_texture": 1},
    }
    build_dataset(config=config, out=str(tmp_path / "build"))
    quarantine = [
        yaml.safe_load(line)
        for line in (tmp_path / "build" / "quarantine.jsonl").read_text().splitlines()
    ]
    reasons = {Path(q["uri"]).name: q["reason"] for q in quarantine}
    assert set(reasons) == {"truncated.jpg", "text.jpg"}
    assert "truncated" in reasons["truncated.jpg"]
    assert "not an image file" in reasons["text.jpg"]
    images = pq.read_table(tmp_path / "build" / "manifests" / "images.parquet").to_pylist()
    assert sorted(Path(i["uri"]).name for i in images) == ["cmyk.jpg", "good.jpg"]
    assert pq.read_table(tmp_path / "build" / "manifest.parquet").num_rows > 0


def test_same_config_and_seed_give_the_same_manifest(built: Path, tmp_path: Path) -> None:
    from flows.build import build_dataset
    from pipeline.store.manifest import table_digest

    build_dataset(config=CONFIG, out=str(tmp_path / "again"))
    assert table_digest(tmp_path / "again" / "manifest.parquet") == table_digest(
        built / "manifest.parquet"
    )


def test_an_up_to_date_build_starts_nothing_and_a_change_runs_the_flow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`conceptswap build` on a finished, unchanged build says so without starting the flow;
    a missing file, a changed source file or a build stopped half-way runs it again."""
    from typer.testing import CliRunner

    import flows.build
    from flows.cli import app
    from pipeline.store.stamp import STAMP_FILE

    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(skimage.data.coffee()).save(photos / "coffee.png")
    config = {**CONFIG, "name": "stamp", "source": {"kind": "folder", "path": str(photos)}}
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump(config))
    out = tmp_path / "build"
    args = ["build", "--config", str(config_file), "--out", str(out)]
    calls: list[str] = []
    real_flow = flows.build.build_dataset

    def counting_flow(**kwargs):  # type: ignore[no-untyped-def]
        calls.append(kwargs["out"])
        return real_flow(**kwargs)

    monkeypatch.setattr(flows.build, "build_dataset", counting_flow)
    cli = CliRunner()
    assert cli.invoke(app, args).exit_code == 0 and len(calls) == 1
    assert (out / STAMP_FILE).is_file()

    again = cli.invoke(app, args)
    assert again.exit_code == 0 and "up to date" in again.output and len(calls) == 1
    assert cli.invoke(app, [*args, "--force"]).exit_code == 0 and len(calls) == 2

    row = pq.read_table(out / "manifest.parquet").to_pylist()[0]
    (out / row["path"]).unlink()  # a missing file: the flow runs and repairs it
    assert cli.invoke(app, args).exit_code == 0 and len(calls) == 3
    assert (out / row["path"]).is_file()
    assert "up to date" in cli.invoke(app, args).output and len(calls) == 3

    Image.fromarray(skimage.data.chelsea()).save(photos / "chelsea.png")  # a new source file
    assert cli.invoke(app, args).exit_code == 0 and len(calls) == 4
    assert len(pq.read_table(out / "manifests" / "images.parquet")) == 2

    (out / STAMP_FILE).unlink()  # as after a build that stopped before its end
    assert cli.invoke(app, args).exit_code == 0 and len(calls) == 5
