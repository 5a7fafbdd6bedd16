"""Bad inputs: each one is refused (or quarantined) with its own reason; odd but valid ones work.

The corpus is generated here, no binary fixtures: empty, truncated and header-cut files, text
named `.jpg`, a 1×1 image, PNGs whose IHDR declares a huge size (valid CRC, no pixel data), a
dangling symlink, a symlink loop, a directory named `x.jpg`, and the valid-but-unusual ones
(CMYK, 16-bit, palette with alpha, EXIF-rotated, grayscale, animated GIF, unicode and spaces in
the name). Unit tests check each reason; the Hugging Face and `annotations` cases are checked
at the stage level; one `build_dataset` run checks that the build quarantines the bad files and
processes the good ones.
"""

from __future__ import annotations

import io
import json
import os
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import skimage.data
from PIL import Image

from pipeline.config import BuildConfig
from pipeline.imageio import ImageDecodeError, decode_image, read_file_bytes
from pipeline.segment import create_segmenter
from pipeline.segment.annotation_formats import AnnotationError
from pipeline.sources.folder import FolderSource
from pipeline.stages import Backends
from pipeline.stages.ingest import ingest_shard
from pipeline.stages.segment import segment_shard
from pipeline.store import BuildStore

# -- the corpus ----------------------------------------------------------------------------------


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def photo(name: str, size: tuple[int, int] = (128, 96)) -> Image.Image:
    """A scikit-image photo (RGB or L) resized to `size` (width, height)."""
    return Image.fromarray(getattr(skimage.data, name)()).resize(size, Image.Resampling.LANCZOS)


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def png_declaring(width: int, height: int) -> bytes:
    """A well-formed PNG header (valid CRCs) declaring `width` x `height` RGB, with no pixels."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(b""))
        + png_chunk(b"IEND", b"")
    )


def palette_with_alpha() -> bytes:
    """A palette PNG with a tRNS chunk: index 15 fully transparent (a 16x16 corner uses it)."""
    image = photo("rocket").convert("P", palette=Image.Palette.ADAPTIVE, colors=15)
    pixels = np.asarray(image).copy()
    pixels[:16, :16] = 15
    paletted = Image.fromarray(pixels, "P")
    paletted.putpalette([*image.getpalette()[: 15 * 3], 0, 255, 0])
    return encode(paletted, "PNG", transparency=bytes([255] * 15 + [0]))


def exif_rotated() -> bytes:
    """A 128x80 JPEG whose EXIF orientation (6) says: rotate 90° clockwise to display."""
    image = photo("coffee", (128, 80))
    exif = image.getexif()
    exif[0x0112] = 6
    return encode(image, "JPEG", exif=exif.tobytes(), quality=95)


def animated_gif() -> bytes:
    base = np.asarray(photo("chelsea", (64, 48)))
    frames = [Image.fromarray(np.roll(base, 7 * i, axis=1)) for i in range(3)]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=40, loop=0)


def good_files() -> dict[str, bytes]:
    coffee_jpeg = encode(photo("coffee"), "JPEG", quality=90)
    sixteen = (np.asarray(photo("camera")).astype(np.uint16) * 257).astype(np.uint16)
    return {
        "coffee.jpg": coffee_jpeg,
        "astronaut.png": encode(photo("astronaut"), "PNG"),
        "cmyk.jpg": encode(photo("chelsea").convert("CMYK"), "JPEG", quality=95),
        "deep16.png": encode(Image.fromarray(sixteen), "PNG"),
        "palette_alpha.png": palette_with_alpha(),
        "exif_rotated.jpg": exif_rotated(),
        "grayscale.jpg": encode(photo("moon"), "JPEG", quality=90),
        "animated.gif": animated_gif(),
        "été photo ☀ 1.jpg": encode(photo("immunohistochemistry"), "JPEG", quality=90),
    }


def bad_files() -> dict[str, bytes]:
    jpeg = encode(photo("coffee", (120, 80)), "JPEG", quality=90)
    png = encode(photo("astronaut", (120, 80)), "PNG")
    return {
        "empty.jpg": b"",
        "truncated.jpg": jpeg[: len(jpeg) // 3],
        "truncated.png": png[: len(png) // 2],
        "header_cut.png": png[:30],
        "not_an_image.jpg": b"this is a text file, not a photo\n" * 4,
        "naïve notes ünïcode.jpg": b"plain text, named like a photo\n",
        "one_pixel.png": encode(Image.new("RGB", (1, 1), (200, 10, 10)), "PNG"),
        "bomb_declared.png": png_declaring(10_000, 10_000),
        "bomb_huge.png": png_declaring(100_000, 100_000),
    }


# the reason each bad file must be quarantined with (a substring of it)
BAD_REASONS = {
    "empty.jpg": "empty file (0 bytes)",
    "truncated.jpg": "truncated image data",
    "truncated.png": "truncated image data",
    "header_cut.png": "truncated or corrupt PNG header (30 bytes",
    "not_an_image.jpg": "not an image file (unrecognised format)",
    "naïve notes ünïcode.jpg": "not an image file (unrecognised format)",
    "one_pixel.png": "image is 1x1 pixels; at least 8x8",
    "bomb_declared.png": "declared size 10000x10000 exceeds the limit of 64000000 pixels",
    "bomb_huge.png": "decompression bomb refused: Image size (10000000000 pixels)",
    "dangling.jpg": "unreadable file (No such file or directory)",
    "loop.jpg": "unreadable file (Too many levels of symbolic links)",
}
GOOD_NAMES = sorted(good_files())


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    for name, data in {**good_files(), **bad_files()}.items():
        (root / name).write_bytes(data)
    os.symlink(root / "nowhere" / "gone.jpg", root / "dangling.jpg")  # an unreadable file
    os.symlink("loop.jpg", root / "loop.jpg")  # a symlink to itself
    (root / "folder.jpg").mkdir()  # a directory with an image suffix: walked, never read
    (root / "folder.jpg" / "notes.txt").write_text("not an image suffix: not listed")
    return root


def listed(corpus: Path) -> dict[str, object]:
    source = FolderSource(corpus)
    return {Path(ref.uri).name: ref for ref in source.refs()}


# -- unit level: each bad input, its reason ------------------------------------------------------


@pytest.mark.parametrize("name", sorted(BAD_REASONS))
def test_each_bad_file_is_refused_with_its_specific_reason(corpus: Path, name: str) -> None:
    source = FolderSource(corpus)
    ref = next(r for r in source.refs() if Path(r.uri).name == name)
    with pytest.raises(ImageDecodeError) as caught:
        decode_image(source.read(ref), ref.uri)
    assert BAD_REASONS[name] in caught.value.reason
    assert name in str(caught.value)  # the message names the file


def test_folder_lists_files_only_and_a_directory_named_jpg_is_unreadable(corpus: Path) -> None:
    names = listed(corpus)
    assert set(names) == set(BAD_REASONS) | set(GOOD_NAMES)  # symlinks too, never folder.jpg
    with pytest.raises(ImageDecodeError, match=r"unreadable file \(Is a directory\)"):
        read_file_bytes(corpus / "folder.jpg")


def test_a_raised_max_pixels_is_honoured_above_pillows_own_limit(corpus: Path) -> None:
    data = (corpus / "bomb_declared.png").read_bytes()  # 10^8 pixels: above Pillow's warning
    with pytest.raises(ImageDecodeError, match="declared size 10000x10000 exceeds") as caught:
        decode_image(data, "bomb.png")
    assert "raise image.max_pixels" in caught.value.reason
    with pytest.raises(ImageDecodeError) as caught:
        decode_image(data, "bomb.png", max_pixels=200_000_000)
    # allowed through the size guard, it fails for what it is: a header without pixel data
    assert caught.value.reason.startswith("truncated image data")
    with pytest.raises(ImageDecodeError, match="exceeds the limit of 1000 pixels"):
        decode_image((corpus / "coffee.jpg").read_bytes(), "coffee.jpg", max_pixels=1000)


# -- unit level: the unusual but valid ones ------------------------------------------------------


def decoded(corpus: Path, name: str) -> tuple[np.ndarray, dict]:
    result = decode_image((corpus / name).read_bytes(), name)
    assert result.rgb.dtype == np.uint8 and result.rgb.ndim == 3 and result.rgb.shape[2] == 3
    return result.rgb, result.meta


def test_cmyk_jpeg_becomes_rgb(corpus: Path) -> None:
    rgb, meta = decoded(corpus, "cmyk.jpg")
    assert meta["mode"] == "CMYK" and rgb.shape == (96, 128, 3)
    assert np.abs(rgb.astype(int) - np.asarray(photo("chelsea"), dtype=int)).mean() < 12


def test_sixteen_bit_png_is_scaled_to_eight_bits(corpus: Path) -> None:
    rgb, meta = decoded(corpus, "deep16.png")
    assert meta["mode"].startswith("I;16")
    assert np.array_equal(rgb[..., 0], np.asarray(photo("camera")))  # x257 then /257: exact
    assert np.array_equal(rgb[..., 0], rgb[..., 2])


def test_palette_png_with_alpha_is_composited_on_white(corpus: Path) -> None:
    rgb, meta = decoded(corpus, "palette_alpha.png")
    assert meta["mode"] == "P"
    assert (rgb[:16, :16] == 255).all()  # the transparent corner, not its green palette entry
    assert (rgb[16:, 16:] != 255).any()


def test_exif_orientation_is_applied(corpus: Path) -> None:
    rgb, _ = decoded(corpus, "exif_rotated.jpg")
    with Image.open(corpus / "exif_rotated.jpg") as image:
        stored = np.asarray(image.convert("RGB"))
    assert stored.shape == (80, 128, 3) and rgb.shape == (128, 80, 3)
    assert np.array_equal(rgb, np.rot90(stored, k=-1))  # orientation 6: 90° clockwise


def test_animated_gif_gives_its_first_frame(corpus: Path) -> None:
    rgb, meta = decoded(corpus, "animated.gif")
    assert meta["frames"] == 3
    with Image.open(corpus / "animated.gif") as image:
        first = np.asarray(image.convert("RGB"))
    assert np.array_equal(rgb, first)


def test_grayscale_and_unicode_named_files_decode(corpus: Path) -> None:
    rgb, meta = decoded(corpus, "grayscale.jpg")
    assert meta["mode"] == "L"
    assert np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1], rgb[..., 2])
    ref = listed(corpus)["été photo ☀ 1.jpg"]
    assert decode_image(FolderSource(corpus).read(ref), ref.uri).rgb.shape == (96, 128, 3)


# -- stage level: ingest quarantines, Hugging Face rows, annotations -----------------------------


def build_config(source: dict, **sections: dict) -> BuildConfig:
    return BuildConfig.model_validate({"source": source, "image": {"max_side": 96}, **sections})


def ingest_all(store: BuildStore, source: dict) -> list:
    """The ingest stage over every reference of a source, as one shard."""
    config = build_config(source)
    backends = Backends(config)
    return ingest_shard(store, list(backends.source.refs()), backends, config)[1]


def quarantine_reasons(store: BuildStore, stage: str) -> dict[str, str]:
    return {Path(e.uri).name: e.reason for e in store.quarantined() if e.stage == stage}


def test_ingest_quarantines_every_bad_file_and_keeps_every_good_one(
    corpus: Path, tmp_path: Path
) -> None:
    store = BuildStore(tmp_path / "build")
    images = ingest_all(store, {"kind": "folder", "path": str(corpus)})
    reasons = quarantine_reasons(store, "ingest")
    assert set(reasons) == set(BAD_REASONS)
    for name, reason in reasons.items():
        assert BAD_REASONS[name] in reason, name
    assert sorted(Path(i.uri).name for i in images) == GOOD_NAMES
    assert all(store.exists(i.path) and max(i.width, i.height) <= 96 for i in images)
    lines = store.quarantine_path.read_text(encoding="utf-8")
    assert "naïve notes ünïcode.jpg" in lines  # written as UTF-8, not escaped away


def test_hugging_face_row_without_an_image_is_quarantined(tmp_path: Path) -> None:
    import datasets

    good = encode(photo("coffee", (32, 24)), "PNG")
    features = datasets.Features({"image": datasets.Image(), "label": datasets.Value("int64")})
    rows = {
        "image": [{"bytes": good, "path": None}, None, {"bytes": b"garbage bytes", "path": None}],
        "label": [967, 967, 967],
    }
    datasets.Dataset.from_dict(rows, features=features).save_to_disk(str(tmp_path / "ds"))
    source = {"kind": "huggingface", "path": str(tmp_path / "ds"), "label_column": "label"}
    store = BuildStore(tmp_path / "build")
    images = ingest_all(store, source)
    reasons = {e.uri.rsplit("/", 1)[-1]: e.reason for e in store.quarantined()}
    assert reasons == {
        "1": "row has no image in column 'image'",
        "2": "not an image file (unrecognised format)",
    }
    assert [i.uri for i in images] == [f"hf://{tmp_path / 'ds'}/train/0"]


def coco_document() -> dict:
    return {
        "images": [{"id": 1, "file_name": "street.png", "height": 60, "width": 80}],
        "categories": [{"id": 7, "name": "road"}],
        "annotations": [
            {"id": 10, "image_id": 1, "category_id": 7, "segmentation": [[0, 40, 79, 40, 79, 59]]}
        ],
    }


COCO_CORRUPTIONS: dict[str, tuple[Callable[[str], str], str]] = {
    "truncated": (lambda text: text[:70], "not valid JSON: "),
    "list": (lambda text: "[" + text + "]", "expected a JSON object, found list"),
    "no-annotations": (
        lambda text: json.dumps({k: v for k, v in json.loads(text).items() if k != "annotations"}),
        "missing list 'annotations'",
    ),
    "dangling-image-id": (
        lambda text: text.replace('"image_id": 1', '"image_id": 99'),
        "annotation 10 refers to image_id 99, which is not in 'images'",
    ),
    "odd-polygon": (
        lambda text: text.replace("[[0, 40, 79, 40, 79, 59]]", "[[0, 40, 79, 40, 79]]"),
        "a polygon needs an even number (≥ 6) of coordinates, got 5",
    ),
}


@pytest.mark.parametrize("corruption", sorted(COCO_CORRUPTIONS))
def test_corrupt_coco_json_is_a_clear_error_naming_the_file(
    tmp_path: Path, corruption: str
) -> None:
    root = tmp_path / "images"
    root.mkdir()
    Image.new("RGB", (80, 60), (90, 90, 90)).save(root / "street.png")
    edit, message = COCO_CORRUPTIONS[corruption]
    path = tmp_path / "broken.json"
    path.write_text(edit(json.dumps(coco_document())))
    with pytest.raises(AnnotationError) as caught:
        create_segmenter("annotations", coco_json=str(path), image_root=str(root))
    assert f"annotations {path}: " in str(caught.value)
    assert message in str(caught.value)


def test_a_mask_of_the_wrong_size_quarantines_its_image_and_the_shard_goes_on(
    tmp_path: Path,
) -> None:
    rng = np.random.default_rng(0)
    root, masks = tmp_path / "images", tmp_path / "masks"
    root.mkdir()
    for stem in ("good", "wrong"):
        pixels = rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / f"{stem}.png")
        (masks / stem).mkdir(parents=True)
    road = np.zeros((60, 80), dtype=np.uint8)
    road[30:] = 255
    Image.fromarray(road).save(masks / "good" / "road.png")
    Image.fromarray(road[:50]).save(masks / "wrong" / "road.png")  # 80x50 for an 80x60 image
    options = {"mask_dir": str(masks), "image_root": str(root), "max_side": 96}
    segmenter = create_segmenter("annotations", concepts=["road"], **options)
    wrong = np.asarray(Image.open(root / "wrong.png").convert("RGB"))
    with pytest.raises(AnnotationError, match=r"road\.png: mask is 80x50 but image .*wrong\.png"):
        segmenter.segment([wrong], [None])

    store = BuildStore(tmp_path / "build")
    segment = {"backend": "annotations", "concepts": ["road"], "options": options}
    config = build_config({"kind": "folder", "path": str(root)}, segment=segment)
    backends = Backends(config)
    _, images = ingest_shard(store, list(backends.source.refs()), backends, config)
    _, found = segment_shard(store, images, backends, config)
    by_name = {Path(i.uri).name: i.image_id for i in images}
    assert [m.image_id for m in found] == [by_name["good.png"]] and found[0].kept
    reasons = quarantine_reasons(store, "segment")
    assert set(reasons) == {"wrong.png"}
    assert "mask is 80x50 but image" in reasons["wrong.png"]
    assert "wrong.png is 80x60" in reasons["wrong.png"]


# -- build level: one build over the whole file corpus -------------------------------------------


def test_the_build_quarantines_bad_files_and_processes_good_ones(
    corpus: Path, tmp_path: Path, prefect_harness: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    import flows.build as build_module
    import pipeline.stages as stages

    segmented: list[str] = []  # image ids the segment stage was given
    original = stages.segment_shard

    def recording(store, images, *args):  # type: ignore[no-untyped-def]
        segmented.extend(image.image_id for image in images)
        return original(store, images, *args)

    monkeypatch.setattr(stages, "segment_shard", recording)
    out = tmp_path / "build"
    config = {
        "name": "bad-inputs",
        "source": {"kind": "folder", "path": str(corpus)},
        "image": {"max_side": 96},
        "segment": {"concepts": ["background"]},
        "stylize": {"textures": ["snow"], "styles_per_texture": 1},
        "filter": {"require_clean_correct": False},
    }
    build_module.build_dataset(config=config, out=str(out))

    lines = (out / "quarantine.jsonl").read_text(encoding="utf-8").splitlines()
    entries = [json.loads(line) for line in lines]
    reasons = {Path(e["uri"]).name: e["reason"] for e in entries}
    assert len(reasons) == len(entries) and {e["stage"] for e in entries} == {"ingest"}
    assert set(reasons) == set(BAD_REASONS)
    for name, reason in reasons.items():
        assert BAD_REASONS[name] in reason, name

    images = pq.read_table(out / "manifests" / "images.parquet").to_pylist()
    by_name = {Path(i["uri"]).name: i for i in images}
    assert sorted(by_name) == GOOD_NAMES
    for image in images:
        with Image.open(out / image["path"]) as stored:
            assert stored.mode == "RGB" and max(stored.size) <= 96
    meta = {name: json.loads(image["source_meta"]) for name, image in by_name.items()}
    assert meta["cmyk.jpg"]["mode"] == "CMYK"
    assert meta["deep16.png"]["mode"].startswith("I;16")
    assert meta["palette_alpha.png"]["mode"] == "P"
    assert meta["grayscale.jpg"]["mode"] == "L"
    assert meta["animated.gif"]["frames"] == 3
    assert by_name["exif_rotated.jpg"]["height"] > by_name["exif_rotated.jpg"]["width"]
    assert meta["été photo ☀ 1.jpg"]["relpath"] == "été photo ☀ 1.jpg"

    # every good image went through segmentation; masks and counterfactuals come from them
    image_ids = {i["image_id"] for i in images}
    assert sorted(segmented) == sorted(image_ids)
    masks = pq.read_table(out / "manifests" / "masks.parquet").to_pylist()
    assert masks and {m["image_id"] for m in masks} <= image_ids
    rows = pq.read_table(out / "manifest.parquet").to_pylist()
    assert rows and {r["image_id"] for r in rows} <= image_ids
    for row in rows:
        with Image.open(out / row["path"]) as counterfactual:
            counterfactual.load()
