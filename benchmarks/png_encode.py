"""PNG encoding cost and size per setting, on 384 px photos and a photo-texture composite.

    .venv/bin/python benchmarks/png_encode.py [--repeats 8]

Why: a build writes every working image, stylized image and counterfactual as a PNG (1,776
RGB files for 48 photos), so the encoder's CPU time competes with the models on a small
machine. Compares Pillow at the level the build used before (3) with OpenCV's zlib levels,
strategies and filters, and the setting `pipeline.imageio.encode_png` uses now; every setting
is lossless (checked: the decoded pixels equal the input). Prints ms per image and KB per
image, with the load average.
"""

from __future__ import annotations

import argparse
import io
import os
import time

import cv2
import numpy as np
import skimage.data
from PIL import Image

from pipeline.imageio import encode_png


def photos() -> list[np.ndarray]:
    size = (384, 384)
    rgb = [
        np.asarray(Image.fromarray(image).resize(size))
        for image in (skimage.data.astronaut(), skimage.data.coffee(), skimage.data.chelsea())
    ]
    gravel = np.asarray(Image.fromarray(skimage.data.gravel()).convert("RGB").resize(size))
    left = np.arange(size[0])[None, :, None] < 200
    rgb.append(np.where(left, rgb[0], gravel).astype(np.uint8))  # a counterfactual-like image
    return rgb


def timed(encode, images: list[np.ndarray], repeats: int) -> tuple[float, float]:
    for image in images:  # lossless, and warm
        decoded = np.asarray(Image.open(io.BytesIO(encode(image))).convert("RGB"))
        assert np.array_equal(decoded, image)
    start, size = time.perf_counter(), 0
    for _ in range(repeats):
        for image in images:
            size += len(encode(image))
    count = repeats * len(images)
    return (time.perf_counter() - start) / count * 1000, size / count / 1024


def pillow(level: int):
    def encode(image: np.ndarray) -> bytes:
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="PNG", compress_level=level)
        return buffer.getvalue()

    return encode


def opencv(level: int, strategy: str, flt: str | None):
    params = [cv2.IMWRITE_PNG_COMPRESSION, level]
    params += [cv2.IMWRITE_PNG_STRATEGY, getattr(cv2, f"IMWRITE_PNG_STRATEGY_{strategy}")]
    if flt is not None:
        params += [cv2.IMWRITE_PNG_FILTER, getattr(cv2, f"IMWRITE_PNG_FILTER_{flt}")]

    def encode(image: np.ndarray) -> bytes:
        ok, data = cv2.imencode(".png", np.ascontiguousarray(image[..., ::-1]), params)
        assert ok
        return data.tobytes()

    return encode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=8)
    args = parser.parse_args()
    images = photos()
    print(f"{len(images)} images of 384 x 384; load average {os.getloadavg()[0]:.2f}")
    settings = {"Pillow level 3 (before)": pillow(3), "encode_png (now)": encode_png}
    for level in (1, 3):
        for strategy in ("DEFAULT", "RLE"):
            for flt in (None, "PAETH", "AVG", "SUB"):
                name = f"OpenCV level {level} {strategy} {flt or 'adaptive'}"
                settings[name] = opencv(level, strategy, flt)
    for name, encode in settings.items():
        ms, kb = timed(encode, images, args.repeats)
        print(f"  {name:<34} {ms:6.1f} ms/image {kb:6.0f} KB/image")
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
