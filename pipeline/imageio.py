"""Decoding untrusted image files into clean RGB arrays, with errors that say what is wrong.

Every input goes through `decode_image`: it refuses truncated or non-image data and
decompression bombs, applies the EXIF orientation, takes the first frame of animations and turns
CMYK, 16-bit, grayscale and palette/alpha images into 8-bit RGB. Failures raise
`ImageDecodeError`, whose message is written to `quarantine.jsonl`.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

DEFAULT_MAX_PIXELS = 64_000_000
MIN_SIDE = 8
# leading bytes of the formats a truncated header is most often met in (for a precise reason)
_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)


class ImageDecodeError(ValueError):
    """An input that cannot be used as an image; the message names the input and the problem."""

    def __init__(self, uri: str, reason: str) -> None:
        super().__init__(f"cannot decode {uri}: {reason}")
        self.uri = uri
        self.reason = reason


@dataclass(frozen=True)
class DecodedImage:
    rgb: np.ndarray  # uint8 H x W x 3, EXIF-transposed
    meta: dict[str, Any]  # original format, mode, size, frames


def _to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB from any PIL mode; transparency is composited on white."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if array.max(initial=0) > 255 else 255.0
        gray = np.clip(array / peak * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(gray, "L").convert("RGB")
    if image.mode == "F":
        array = np.asarray(image, dtype=np.float64)
        low, high = float(array.min(initial=0)), float(array.max(initial=1))
        scaled = (array - low) / max(high - low, 1e-12) * 255.0
        return Image.fromarray(np.clip(scaled + 0.5, 0, 255).astype(np.uint8), "L").convert("RGB")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _signature_format(data: bytes | Image.Image) -> str | None:
    """The format whose signature `data` starts with, if any (WebP: RIFF....WEBP)."""
    if not isinstance(data, bytes | bytearray):
        return None
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return next((name for magic, name in _SIGNATURES if data.startswith(magic)), None)


def decode_image(
    data: bytes | Image.Image, uri: str, max_pixels: int = DEFAULT_MAX_PIXELS
) -> DecodedImage:
    """Decode bytes (or an already opened PIL image) into RGB, or raise ImageDecodeError."""
    if isinstance(data, bytes | bytearray) and len(data) == 0:
        raise ImageDecodeError(uri, "empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            # the size check below is the guard (it honours `max_pixels`); Pillow's warning at
            # its own default limit would refuse images that a raised `max_pixels` allows
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = data if isinstance(data, Image.Image) else Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > max_pixels:
                raise ImageDecodeError(
                    uri,
                    f"declared size {width}x{height} exceeds the limit of {max_pixels} pixels "
                    "(possible decompression bomb; raise image.max_pixels to allow it)",
                )
            meta = {
                "format": image.format or "",
                "mode": image.mode,
                "frames": int(getattr(image, "n_frames", 1)),
            }
            if meta["frames"] > 1:
                image.seek(0)
            image.load()
            image = ImageOps.exif_transpose(image) or image
            rgb = np.asarray(_to_rgb(image), dtype=np.uint8)
    except ImageDecodeError:
        raise
    except UnidentifiedImageError:
        kind = _signature_format(data)
        if kind and isinstance(data, bytes | bytearray):
            raise ImageDecodeError(
                uri,
                f"truncated or corrupt {kind} header ({len(data)} bytes; the file starts with "
                f"a {kind} signature but cannot be opened)",
            ) from None
        raise ImageDecodeError(uri, "not an image file (unrecognised format)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageDecodeError(uri, f"decompression bomb refused: {error}") from None
    except OSError as error:
        message = str(error)
        if "truncated" in message.lower():
            raise ImageDecodeError(uri, f"truncated image data ({message})") from None
        raise ImageDecodeError(uri, f"corrupt image data ({message})") from None
    except (ValueError, SyntaxError, TypeError, MemoryError) as error:
        raise ImageDecodeError(
            uri, f"corrupt image data ({type(error).__name__}: {error})"
        ) from None
    if rgb.shape[0] < MIN_SIDE or rgb.shape[1] < MIN_SIDE:
        raise ImageDecodeError(
            uri, f"image is {rgb.shape[1]}x{rgb.shape[0]} pixels; at least {MIN_SIDE}x{MIN_SIDE}"
        )
    meta["width"], meta["height"] = int(rgb.shape[1]), int(rgb.shape[0])
    return DecodedImage(rgb=np.ascontiguousarray(rgb), meta=meta)


def read_file_bytes(path: str | Path) -> bytes:
    """Read a file, turning OS errors into ImageDecodeError that names the file."""
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise ImageDecodeError(str(path), f"unreadable file ({error.strerror or error})") from None


def resize_max_side(rgb: np.ndarray, max_side: int) -> np.ndarray:
    """Downscale so the longer side is at most `max_side` (never upscales); Lanczos, stable."""
    height, width = rgb.shape[:2]
    scale = max_side / max(height, width)
    if scale >= 1.0:
        return rgb
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.LANCZOS))


# RGB PNGs: zlib level 1 with the RLE strategy after the Paeth filter, through OpenCV: half
# the CPU time of Pillow at level 3 for 2 % more bytes on 384 px photos and counterfactuals
# (benchmarks/png_encode.py), where encoding had been a third of a build's CPU time
_RGB_PNG_PARAMS = [
    cv2.IMWRITE_PNG_COMPRESSION,
    1,
    cv2.IMWRITE_PNG_STRATEGY,
    cv2.IMWRITE_PNG_STRATEGY_RLE,
    cv2.IMWRITE_PNG_FILTER,
    cv2.IMWRITE_PNG_FILTER_PAETH,
]


def encode_png(array: np.ndarray) -> bytes:
    """PNG bytes of an RGB uint8 image or a boolean mask (1-bit); lossless either way."""
    if array.dtype == np.uint8 and array.ndim == 3 and array.shape[2] == 3:
        ok, encoded = cv2.imencode(".png", np.ascontiguousarray(array[..., ::-1]), _RGB_PNG_PARAMS)
        if not ok:
            raise ValueError(f"OpenCV could not encode a {array.shape} image as PNG")
        return encoded.tobytes()
    if array.dtype == bool:
        image = Image.fromarray(array.astype(np.uint8) * 255, "L").convert("1")
    else:
        image = Image.fromarray(array)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False, compress_level=3)
    return buffer.getvalue()


def load_png(path: str | Path, mask: bool = False) -> np.ndarray:
    with Image.open(path) as image:
        if mask:
            return np.asarray(image.convert("L")) > 127
        return np.asarray(image.convert("RGB"))
