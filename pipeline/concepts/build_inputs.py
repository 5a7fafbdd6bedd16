"""What a build gives the concept scores: images with their reference class, concept crops,
random crops, and masks at the model's input size.

The reference class of an image is its label, or the classifier's clean prediction when it has
none (label-free builds), as in the sensitivity report, so the two are compared on the same
(class, concept) pairs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.classify import Classifier
from pipeline.concepts.crops import masked_crop, random_boxes, resize
from pipeline.store import BuildStore
from pipeline.store.manifest import write_table


@dataclass
class BuildImages:
    """A build's images with their reference class (`class_index`, `class_name`)."""

    store: BuildStore
    images: pd.DataFrame  # image_id, path, uri, width, height, class_index, class_name
    masks: pd.DataFrame  # mask_id, image_id, concept, area_frac, path


def seeded(*parts: object) -> np.random.Generator:
    digest = hashlib.sha256(":".join(map(str, parts)).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def load_build(
    build_dir: str,
    classifier: Classifier,
    batch_size: int = 32,
    min_area: float = 0.0,
    references: Path | None = None,
) -> BuildImages:
    """The build's images and masks; images without a label get the clean prediction, kept in
    `references` (a Parquet file of image_id → class) so a later run does not predict again."""
    store = BuildStore(build_dir)
    if not store.has_manifest("images"):
        raise FileNotFoundError(f"{store.root} has no images manifest; build it first")
    images = store.frame("images", ["image_id", "uri", "width", "height", "label", "path"])
    images = images.sort_values("image_id", kind="stable").reset_index(drop=True)
    labels = images["label"].astype("Int64")
    known = _read_references(references)
    reference = labels.copy()
    for index in images.index[labels.isna()]:
        if images.at[index, "image_id"] in known:
            reference.at[index] = known[images.at[index, "image_id"]]
    unlabelled = images.index[reference.isna()]
    for start in range(0, len(unlabelled), batch_size):
        chunk = unlabelled[start : start + batch_size]
        probs = classifier.predict_proba([store.load_image(p) for p in images.loc[chunk, "path"]])
        reference.loc[chunk] = np.argmax(probs, axis=1)
    images["class_index"] = reference.astype("int64")
    if references is not None and len(unlabelled):
        predicted = images.loc[labels.isna(), ["image_id", "class_index"]]
        write_table(references, pa.Table.from_pandas(predicted, preserve_index=False))
    names = list(classifier.class_names)
    images["class_name"] = [names[i] if i < len(names) else str(i) for i in images["class_index"]]
    masks = store.frame("masks", ["mask_id", "image_id", "concept", "area_frac", "path"])
    masks = masks[masks["area_frac"] >= min_area]
    masks = masks.sort_values("mask_id", kind="stable").reset_index(drop=True)
    return BuildImages(store, images, masks)


def _read_references(path: Path | None) -> dict[str, int]:
    if path is None or not path.is_file():
        return {}
    table = pq.read_table(path).to_pydict()
    return dict(zip(table["image_id"], table["class_index"], strict=True))


def classes_by_count(images: pd.DataFrame, count: int | None, min_images: int) -> list[int]:
    """The `count` most frequent reference classes with at least `min_images` images."""
    counts = images["class_index"].value_counts()
    counts = counts[counts >= min_images]
    order = sorted(counts.index, key=lambda c: (-counts[c], c))
    return [int(c) for c in order[:count]] if count else [int(c) for c in order]


def concept_crops(
    build: BuildImages, concept: str, limit: int, size: int, fill: np.ndarray, margin: float
) -> tuple[list[np.ndarray], list[str]]:
    """Up to `limit` masked crops of `concept` (masks drawn by a hash of their id, so the
    choice does not depend on the build's order), with their mask ids."""
    rows = build.masks[build.masks["concept"] == concept]
    order = sorted(
        rows.itertuples(index=False), key=lambda r: hashlib.sha256(r.mask_id.encode()).hexdigest()
    )
    crops, ids = [], []
    paths = dict(zip(build.images["image_id"], build.images["path"], strict=True))
    for row in order:
        if len(crops) >= limit:
            break
        if row.image_id not in paths:
            continue
        image = build.store.load_image(paths[row.image_id])
        mask = build.store.load_mask(row.path).astype(bool)
        example = masked_crop(image, mask, size, fill, margin)
        if example is not None:
            crops.append(example)
            ids.append(row.mask_id)
    return crops, ids


def random_crops(
    build: BuildImages,
    count: int,
    size: int,
    seed: int = 0,
    scale: tuple[float, float] = (0.2, 0.6),
) -> tuple[list[np.ndarray], list[str]]:
    """`count` random square windows of the build's images (each image in turn, seeded)."""
    rng = seeded("random-pool", seed)
    image_ids = build.images["image_id"].tolist()
    paths = build.images["path"].tolist()
    picks = rng.integers(0, len(image_ids), count)
    crops, sources = [], []
    for index in sorted(set(picks.tolist())):
        image = build.store.load_image(paths[index])
        n = int((picks == index).sum())
        for x0, y0, x1, y1 in random_boxes(*image.shape[:2], n, rng, scale):
            crops.append(resize(image[y0:y1, x0:x1], size))
            sources.append(image_ids[index])
    return crops, sources


def class_images(
    build: BuildImages, classes: Sequence[int], limit: int, size: int
) -> dict[int, pd.DataFrame]:
    """Per class, up to `limit` of its images (by id), with their pixels at the input size."""
    chosen: dict[int, pd.DataFrame] = {}
    for class_index in classes:
        rows = build.images[build.images["class_index"] == class_index].head(limit).copy()
        rows["pixels"] = [resize(build.store.load_image(p), size) for p in rows["path"]]
        chosen[int(class_index)] = rows
    return chosen
