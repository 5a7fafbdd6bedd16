"""Image sources: built-in samples, folders (recursive, labels inferred), Hugging Face datasets."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest
from PIL import Image

from pipeline.classify.imagenet import class_index
from pipeline.config import SourceConfig
from pipeline.imageio import ImageDecodeError, decode_image
from pipeline.sources import create_source
from pipeline.sources.samples import SAMPLES


def png(color: tuple[int, int, int], size: int = 16) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), color).save(buffer, format="PNG")
    return buffer.getvalue()


def test_samples_have_honest_labels() -> None:
    source = create_source(SourceConfig(kind="samples"))
    refs = {ref.uri: ref for ref in source.refs()}
    assert refs["samples://coffee"].label == class_index("espresso")
    assert refs["samples://chelsea"].label == class_index("tabby")
    assert refs["samples://astronaut"].label is None
    image = decode_image(source.read(refs["samples://camera"]), "camera").rgb
    assert image.shape == (512, 512, 3)  # grayscale photo arrives as RGB


def test_unknown_sample_is_named() -> None:
    with pytest.raises(KeyError, match="nope"):
        create_source(SourceConfig(kind="samples", names=["nope"]))


def test_folder_is_recursive_sorted_and_infers_labels(tmp_path) -> None:
    (tmp_path / "sports_car").mkdir()
    (tmp_path / "sports_car" / "b.png").write_bytes(png((255, 0, 0)))
    (tmp_path / "misc" / "deep").mkdir(parents=True)
    (tmp_path / "misc" / "deep" / "n02974003_car_wheel.JPEG").write_bytes(png((0, 255, 0)))
    (tmp_path / "misc" / "notes.txt").write_text("not listed")
    os.symlink(tmp_path, tmp_path / "misc" / "loop")  # a symlink loop must not hang the walk
    source = create_source(SourceConfig(kind="folder", path=str(tmp_path)))
    refs = list(source.refs())
    assert [r.meta["relpath"] for r in refs] == [
        "misc/deep/n02974003_car_wheel.JPEG",
        "sports_car/b.png",
    ]
    assert [r.label for r in refs] == [class_index("car_wheel"), class_index("sports_car")]


def test_missing_folder_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="image folder not found"):
        create_source(SourceConfig(kind="folder", path=str(tmp_path / "absent")))


def test_huggingface_local_dataset_with_a_missing_image(tmp_path) -> None:
    import datasets

    features = datasets.Features(
        {"image": datasets.Image(), "label": datasets.ClassLabel(names=["red", "blue"])}
    )
    rows = {
        "image": [{"bytes": png((255, 0, 0)), "path": None}, None, {"bytes": png((0, 0, 255))}],
        "label": [0, 1, 1],
    }
    datasets.Dataset.from_dict(rows, features=features).save_to_disk(str(tmp_path / "ds"))
    source = create_source(
        SourceConfig(
            kind="huggingface",
            path=str(tmp_path / "ds"),
            label_column="label",
            label_names="dataset",
        )
    )
    refs = list(source.refs())
    assert [(r.label, r.label_name) for r in refs] == [(0, "red"), (1, "blue"), (1, "blue")]
    first = decode_image(source.read(refs[0]), refs[0].uri).rgb
    assert np.array_equal(first[0, 0], [255, 0, 0])
    with pytest.raises(ImageDecodeError, match="no image"):
        source.read(refs[1])


def test_limit_is_honoured_by_every_source_kind(tmp_path) -> None:
    """`source.limit: N` keeps the first N images in the source's sorted order, for every kind
    (it used to be silently ignored by folders and samples: a `limit: 60` build took all 200)."""
    import datasets

    for index in range(7):
        (tmp_path / "photos" / f"d{index % 2}").mkdir(parents=True, exist_ok=True)
        (tmp_path / "photos" / f"d{index % 2}" / f"{index}.png").write_bytes(png((index, 0, 0)))
    folder = create_source(SourceConfig(kind="folder", path=str(tmp_path / "photos"), limit=3))
    assert [r.meta["relpath"] for r in folder.refs()] == ["d0/0.png", "d0/2.png", "d0/4.png"]
    everything = create_source(SourceConfig(kind="folder", path=str(tmp_path / "photos")))
    assert len(list(everything.refs())) == 7

    samples = create_source(SourceConfig(kind="samples", limit=2))
    assert [r.uri for r in samples.refs()] == ["samples://coffee", "samples://chelsea"]
    named = create_source(SourceConfig(kind="samples", names=["rocket", "coffee"], limit=1))
    assert [r.uri for r in named.refs()] == ["samples://rocket"]
    assert create_source(SourceConfig(kind="samples", limit=50)).names == list(SAMPLES)

    rows = {"image": [{"bytes": png((i, 9, 9)), "path": None} for i in range(5)]}
    features = datasets.Features({"image": datasets.Image()})
    datasets.Dataset.from_dict(rows, features=features).save_to_disk(str(tmp_path / "ds"))
    hub = create_source(SourceConfig(kind="huggingface", path=str(tmp_path / "ds"), limit=4))
    assert len(list(hub.refs())) == 4
