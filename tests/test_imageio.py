"""Decoding untrusted files: every bad input fails with a specific reason."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from pipeline.hashing import pixels_id
from pipeline.imageio import ImageDecodeError, decode_image, encode_png, load_png, resize_max_side


def jpeg_bytes(array: np.ndarray, mode: str = "RGB", **save: object) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).convert(mode).save(buffer, format="JPEG", **save)
    return buffer.getvalue()


@pytest.fixture
def photo(rng: np.random.Generator) -> np.ndarray:
    gradient = np.linspace(0, 255, 64, dtype=np.float32)
    base = np.stack([np.add.outer(gradient, gradient) / 2] * 3, axis=-1)
    return np.clip(base + rng.normal(0, 4, base.shape), 0, 255).astype(np.uint8)


def test_good_jpeg_decodes_to_rgb(photo: np.ndarray) -> None:
    decoded = decode_image(jpeg_bytes(photo, quality=95), "ok.jpg")
    assert decoded.rgb.shape == (64, 64, 3) and decoded.rgb.dtype == np.uint8
    assert np.abs(decoded.rgb.astype(int) - photo).mean() < 4
    assert decoded.meta["format"] == "JPEG"


def test_truncated_jpeg_is_refused_with_reason(photo: np.ndarray) -> None:
    data = jpeg_bytes(photo)
    with pytest.raises(ImageDecodeError, match="truncated") as caught:
        decode_image(data[: len(data) // 2], "half.jpg")
    assert "half.jpg" in str(caught.value)


def test_text_named_jpg_is_not_an_image() -> None:
    with pytest.raises(ImageDecodeError, match="not an image file"):
        decode_image(b"hello, I am plain text\n" * 10, "notes.jpg")


def test_empty_file_is_refused() -> None:
    with pytest.raises(ImageDecodeError, match="empty file"):
        decode_image(b"", "empty.png")


def test_cmyk_jpeg_becomes_rgb(photo: np.ndarray) -> None:
    decoded = decode_image(jpeg_bytes(photo, mode="CMYK", quality=95), "cmyk.jpg")
    assert decoded.meta["mode"] == "CMYK"
    assert decoded.rgb.shape == (64, 64, 3)
    assert np.abs(decoded.rgb.astype(int) - photo).mean() < 12


def test_sixteen_bit_png_is_scaled_not_clipped() -> None:
    ramp = np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.uint16)
    buffer = io.BytesIO()
    Image.fromarray(ramp).save(buffer, format="PNG")
    decoded = decode_image(buffer.getvalue(), "deep.png")
    assert decoded.rgb[..., 0].min() == 0 and decoded.rgb[..., 0].max() == 255


def test_declared_huge_size_is_refused_before_decoding(photo: np.ndarray) -> None:
    buffer = io.BytesIO()
    Image.fromarray(photo).save(buffer, format="PNG")
    with pytest.raises(ImageDecodeError, match="decompression bomb"):
        decode_image(buffer.getvalue(), "bomb.png", max_pixels=1000)


def test_exif_orientation_is_applied(photo: np.ndarray) -> None:
    wide = photo[:32]  # 32 x 64
    image = Image.fromarray(wide)
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", exif=exif.tobytes(), quality=95)
    assert decode_image(buffer.getvalue(), "rotated.jpg").rgb.shape == (64, 32, 3)


def test_png_round_trip_and_mask_is_one_bit(tmp_path, photo: np.ndarray) -> None:
    (tmp_path / "a.png").write_bytes(encode_png(photo))
    assert np.array_equal(load_png(tmp_path / "a.png"), photo)
    mask = photo[..., 0] > 128
    (tmp_path / "m.png").write_bytes(encode_png(mask))
    assert Image.open(tmp_path / "m.png").mode == "1"
    assert np.array_equal(load_png(tmp_path / "m.png", mask=True), mask)


def test_image_id_depends_on_pixels_only(photo: np.ndarray) -> None:
    assert pixels_id(photo) == pixels_id(photo.copy())
    changed = photo.copy()
    changed[0, 0, 0] ^= 1
    assert pixels_id(changed) != pixels_id(photo)


def test_resize_keeps_aspect_and_never_upscales(photo: np.ndarray) -> None:
    assert resize_max_side(photo, 128).shape == photo.shape
    assert resize_max_side(photo[:32], 32).shape == (16, 32, 3)
