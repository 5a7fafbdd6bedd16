"""Key statistics from image folders and from several image sets mixed with equal weights."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from test_editing_eval import edit_config
from test_editing_labelfree import label_free_build, snowy_road_photos  # noqa: F401

from pipeline.editing.build_images import BuildImages, image
from pipeline.editing.covariance import KeyStatistics
from pipeline.editing.key_sources import (
    case_image_ids,
    folder_source,
    image_views,
    images_source,
    key_sources,
    mixed_covariance,
    mixed_name,
    parse_hf_spec,
)
from pipeline.hashing import pixels_id


def _save(folder, name, rgb):
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(folder / name)


def _stack(images):
    return torch.stack([torch.from_numpy(np.array(i)).float() for i in images])


def test_a_folder_source_finds_the_cases_images_and_skips_unreadable_files(tmp_path, caplog):
    folder = tmp_path / "photos"
    used = np.full((8, 8, 3), 3, np.uint8)
    _save(folder, "same.png", used)  # an image a case uses, found by its pixels
    _save(folder, "new.png", np.full((8, 8, 3), 7, np.uint8))
    (folder / "broken.png").write_bytes(b"not a png")
    with caplog.at_level(logging.WARNING):
        source = folder_source(folder, {pixels_id(used)})
    assert source.images == 2 and source.overlap == 1
    assert source.name.startswith("folder-photos-2img-")
    assert "broken.png" in caplog.text
    batches = list(source.read(_stack, 1))
    assert [b.shape[0] for b in batches] == [1, 1]
    # the image set id depends on the pixels, not on the file names
    (folder / "new.png").rename(folder / "renamed.png")
    assert folder_source(folder, set()).name == source.name
    # images reach the classifier downscaled like the cases' build's own
    _save(tmp_path / "big", "b.png", np.zeros((40, 20, 3), np.uint8))
    (big,) = folder_source(tmp_path / "big", set()).read(_stack, 4)
    assert big.shape[1:3] == (40, 20)
    (small,) = folder_source(tmp_path / "big", set(), max_side=10).read(_stack, 4)
    assert small.shape[1:3] == (10, 5)


def test_a_list_of_folders_is_a_mix_and_a_build_is_recognised(
    tmp_path,
    label_free_build,  # noqa: F811
):
    store, case = label_free_build
    data = BuildImages(store.root)
    _save(tmp_path / "a", "x.png", np.full((8, 8, 3), 9, np.uint8))
    sources = key_sources(data, [tmp_path / "a", store.root], [case])
    assert [s.images for s in sources] == [1, len(data.images)]
    assert sources[1].name.startswith("build-build-") and sources[1].overlap > 0
    assert mixed_name(sources) == f"{sources[0].name}+{sources[1].name}"
    assert mixed_name(sources[:1]) == sources[0].name  # one source keeps its own id
    with pytest.raises(ValueError, match="twice"):
        key_sources(data, [tmp_path / "a", tmp_path / "a"], [case])
    with pytest.raises(FileNotFoundError, match="not a folder"):
        key_sources(data, tmp_path / "missing", [case])


def test_mixed_covariance_weighs_every_image_set_equally():
    small, large = KeyStatistics(2), KeyStatistics(2)
    small.update(torch.tensor([[2.0, 0.0]], dtype=torch.float64))  # C = diag(4, 0)
    large.update(torch.tensor([[0.0, 1.0]] * 99, dtype=torch.float64))  # C = diag(0, 1)
    mixed = mixed_covariance([small, large])
    torch.testing.assert_close(mixed, torch.diag(torch.tensor([2.0, 0.5], dtype=torch.float64)))
    pooled = (small.second_moment_sum + large.second_moment_sum) / (small.count + large.count)
    assert not torch.allclose(mixed, pooled)  # not position-weighted: 1 key counts like 99
    with pytest.raises(ValueError, match="dimensions"):
        mixed_covariance([small, KeyStatistics(3)])


def test_run_edits_records_the_mixed_image_set_and_its_overlap(tmp_path):
    from test_editing_eval import photo, tiny_classifier
    from test_editing_eval import write_build as write_photo_build

    from pipeline.editing import runner
    from pipeline.editing.methods import Candidate

    rng = np.random.default_rng(1)
    photos = snowy_road_photos(rng)
    store = write_photo_build(tmp_path / "build", photos)
    for index in range(3):
        _save(tmp_path / "generic", f"g{index}.png", photo(rng, index + 1))
    _save(tmp_path / "domain", "d.png", photo(rng, 2))
    logs: list[str] = []
    config = edit_config(
        ["rewrite-closed"],
        {"rewrite-closed": [Candidate({"rank": 1})]},
        layer="mid",
        plan="errors",
        covariance={"images": [str(tmp_path / "domain"), str(tmp_path / "generic")]},
    )
    out = runner.run_edits(store.root, config, classifier=tiny_classifier(), log=logs.append)
    results = pd.read_parquet(out / "results.parquet")
    sets = set(results["covariance_set"])
    assert len(sets) == 1 and "+" in next(iter(sets))
    assert next(iter(sets)).startswith("folder-domain-1img-")
    assert (results["covariance_overlap"] == 0).all()
    assert any("mean of the 2 image sets" in line for line in logs)


def test_windows_add_the_two_end_squares_of_a_non_square_image(tmp_path):
    wide = np.arange(4 * 10 * 3, dtype=np.uint8).reshape(4, 10, 3)
    full, left, right = image_views(wide, "windows")
    assert full is wide and left.shape == right.shape == (4, 4, 3)
    assert np.array_equal(left, wide[:, :4]) and np.array_equal(right, wide[:, 6:])
    tall = wide.transpose(1, 0, 2)
    _, top, bottom = image_views(tall, "windows")
    assert np.array_equal(top, tall[:4]) and np.array_equal(bottom, tall[6:])
    assert len(image_views(np.zeros((5, 5, 3), np.uint8), "windows")) == 1
    (only,) = image_views(wide)
    assert only is wide
    with pytest.raises(ValueError, match="views"):
        image_views(wide, "flips")
    _save(tmp_path / "f", "w.png", np.zeros((40, 100, 3), np.uint8))
    plain, windows = (folder_source(tmp_path / "f", set(), views=v) for v in ("center", "windows"))
    assert windows.name == plain.name + "-windows"  # its own cache entry and run key
    (batch,) = windows.read(lambda views: [v.shape[:2] for v in views], 8)
    assert batch == [(40, 100), (40, 40), (40, 40)]


def _png(rgb):
    import io

    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    return buffer.getvalue()


def test_a_hugging_face_dataset_is_an_image_set_for_c(
    tmp_path,
    caplog,
    label_free_build,  # noqa: F811
):
    import datasets

    store, case = label_free_build
    data = BuildImages(store.root)
    used = data.rgb(image(sorted(case_image_ids(data, [case]))[0]))
    new = np.full((12, 20, 3), 5, np.uint8)
    features = datasets.Features({"picture": datasets.Image()})
    rows = {
        "picture": [
            {"bytes": _png(used), "path": None},
            {"bytes": _png(new), "path": None},
            {"bytes": b"garbage bytes", "path": None},
            None,
        ]
    }
    datasets.Dataset.from_dict(rows, features=features).save_to_disk(str(tmp_path / "ds"))
    with caplog.at_level(logging.WARNING):
        (source,) = key_sources(data, f"hf:{tmp_path / 'ds'}@train#picture", [case])
    assert source.images == 2 and source.name.startswith("hf-ds-train-2img-")
    assert "skipped an image" in caplog.text
    # the overlap with the cases' images is found by pixels, whatever the file or row
    spec = parse_hf_spec(f"hf:{tmp_path / 'ds'}#picture")
    assert images_source(spec, "ds", {pixels_id(used)}).overlap == 1
    shapes = [tuple(v.shape[:2]) for b in source.read(lambda views: views, 8) for v in b]
    assert (12, 20) in shapes and len(shapes) == 2
    # mixed with a folder, and the spec's parts are checked
    _save(tmp_path / "a", "x.png", np.full((8, 8, 3), 9, np.uint8))
    both = key_sources(data, [str(tmp_path / "a"), f"hf:{tmp_path / 'ds'}#picture"], [case])
    assert [s.images for s in both] == [1, 2]
    with pytest.raises(KeyError, match="no column 'image'"):
        key_sources(data, f"hf:{tmp_path / 'ds'}", [case])
    with pytest.raises(ValueError, match="no dataset"):
        key_sources(data, "hf:", [case])
