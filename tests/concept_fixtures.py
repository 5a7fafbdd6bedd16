"""A tiny build and classifier for the concept-score tests: two classes, two concepts."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from pipeline.records import ConceptMask, SourceImage
from pipeline.store import BuildStore
from pipeline.store.manifest import records_to_table, write_table


class TinyClassifier:
    """The Classifier protocol around a small conv net; class 0 likes red, class 1 blue."""

    def __init__(self) -> None:
        torch.manual_seed(0)
        self.model = torch.nn.Sequential(
            torch.nn.Conv2d(3, 8, 3, padding=1),
            torch.nn.ReLU(),
            torch.nn.Conv2d(8, 8, 3, padding=1, stride=2),
            torch.nn.ReLU(),
            torch.nn.AdaptiveAvgPool2d(1),
            torch.nn.Flatten(),
            torch.nn.Linear(8, 2),
        ).eval()
        self.id = "tiny:net@0000"
        self.class_names = ["reddish", "bluish"]
        self.device = torch.device("cpu")
        self.data_config = {"input_size": (3, 32, 32), "mean": (0.5,) * 3, "std": (0.5,) * 3}

    def preprocess(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        batch = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255
        return torch.nn.functional.interpolate(batch, size=32) * 2 - 1

    def predict_proba(self, images: Sequence[np.ndarray]) -> np.ndarray:
        with torch.no_grad():
            return torch.softmax(self.model(self.preprocess(images)), 1).numpy()


def make_build(root: Path, n_images: int = 12, seed: int = 0) -> Path:
    """Images 48 x 64 of noise with a red square ("red") and a blue disc ("blue"); even images
    are labelled 0, odd ones unlabelled."""
    rng = np.random.default_rng(seed)
    store = BuildStore(root)
    images, masks = [], []
    for index in range(n_images):
        pixels = rng.integers(60, 160, (48, 64, 3)).astype(np.uint8)
        red = np.zeros((48, 64), bool)
        x, y = rng.integers(0, 40), rng.integers(0, 24)
        red[y : y + 20, x : x + 20] = True
        pixels[red] = (220, 30, 30)
        yy, xx = np.mgrid[0:48, 0:64]
        cx, cy = rng.integers(10, 54), rng.integers(10, 38)
        blue = ((xx - cx) ** 2 + (yy - cy) ** 2 <= 81) & ~red
        pixels[blue] = (30, 30, 220)
        image_id = hashlib.sha256(pixels.tobytes()).hexdigest()
        path = store.save_png(store.relpath("images", image_id), pixels)
        images.append(
            SourceImage(image_id, f"/photos/img{index:02d}.png", 64, 48,
                        0 if index % 2 == 0 else None, None, path)
        )  # fmt: skip
        for concept, mask in (("red", red), ("blue", blue)):
            mask_id = hashlib.sha256(f"{image_id}:{concept}".encode()).hexdigest()
            mask_path = store.save_png(store.relpath("masks", mask_id), mask)
            masks.append(
                ConceptMask(mask_id, image_id, concept, 1.0, float(mask.mean()), "gt", mask_path)
            )
    write_table(store.manifest_path("images"), records_to_table("images", images))
    write_table(store.manifest_path("masks"), records_to_table("masks", masks))
    return store.root
