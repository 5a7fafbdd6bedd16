"""Builds from ground-truth masks: counterfactuals of `road`, `sky`, `grass` whose masks are the
annotations, pixel for pixel, and whose pixels change inside the mask only.

    nice -n 10 .venv/bin/python benchmarks/annotated_builds.py [--datasets coco camvid]
        [--limit N] [--out-root /tmp/cs-annotated] [--textures snow wood]

For each shared dataset present (`../shared/datasets/coco-panoptic-sample`: COCO panoptic JSON
+ segment-id PNGs; `../shared/datasets/camvid`: `val` frames with `valannot` label maps), one
build with the `annotations` segmenter, concepts road / sky / grass, at the photos' own size
(`image.max_side` 1024 > every photo, so no mask is resampled). Then every stored mask is
compared with the ground truth decoded here straight from the raw files (numpy, not the
project's readers): COCO `id = R + 256·G + 256²·B`, the segments whose category's panoptic name
is the concept's (`road`, `sky-other-merged`, `grass-merged`); CamVid label index 3 = Road,
0 = Sky (CamVid has no grass class). And every counterfactual is checked against its inputs:
equal to the clean image outside the mask and to the stylized image inside it (hard masks,
`transform.blend` 1). Prints per dataset and concept: images with the concept in the ground
truth, masks stored, masks equal to the ground truth, masks kept by the quality rules
(`segment.min_area` 0.02 rejects smaller ones), counterfactuals (of the kept masks),
counterfactuals composited exactly.
Builds go outside the repository (`--out-root`); nothing derived from the shared data is kept
in it. Exits 0 with "skipped: ..." for a dataset that is absent.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from edit_datasets import CAMVID, COCO, camvid_segment, coco_segment
from PIL import Image

CONCEPTS = ["road", "sky", "grass"]
COCO_NAMES = {"road": {"road"}, "sky": {"sky-other-merged"}, "grass": {"grass-merged"}}
CAMVID_INDEX = {"road": 3, "sky": 0}


def coco_config(limit: int | None, textures: list[str]) -> dict:
    return {
        "name": "annotated-coco",
        "source": {"kind": "folder", "path": str(COCO / "images"), "limit": limit},
        "image": {"max_side": 1024},
        "segment": coco_segment(CONCEPTS),
        "stylize": {"textures": textures, "styles_per_texture": 1},
        "transform": {"blend": 1.0},
    }


def camvid_config(limit: int | None, textures: list[str]) -> dict:
    return {
        "name": "annotated-camvid",
        "source": {"kind": "folder", "path": str(CAMVID / "val"), "limit": limit},
        "image": {"max_side": 1024},
        "segment": camvid_segment("val", list(CAMVID_INDEX)),  # CamVid has no grass class
        "stylize": {"textures": textures, "styles_per_texture": 1},
        "transform": {"blend": 1.0},
    }


def coco_truth() -> dict[str, dict[str, np.ndarray]]:
    """file stem → concept → ground-truth mask, decoded from the panoptic PNGs."""
    data = json.loads((COCO / "annotations" / "panoptic_train2017.json").read_text())
    names = {c["id"]: c["name"] for c in data["categories"]}
    files = {image["id"]: Path(image["file_name"]).stem for image in data["images"]}
    truth: dict[str, dict[str, np.ndarray]] = {}
    for annotation in data["annotations"]:
        png = COCO / "annotations" / "panoptic_train2017" / annotation["file_name"]
        rgb = np.asarray(Image.open(png).convert("RGB")).astype(np.int64)
        ids = rgb[..., 0] + 256 * rgb[..., 1] + 256 * 256 * rgb[..., 2]
        masks = {}
        for concept, wanted in COCO_NAMES.items():
            segments = [
                s["id"] for s in annotation["segments_info"] if names[s["category_id"]] in wanted
            ]
            if segments:
                masks[concept] = np.isin(ids, segments)
        truth[files[annotation["image_id"]]] = masks
    return truth


def camvid_truth() -> dict[str, dict[str, np.ndarray]]:
    truth = {}
    for png in sorted((CAMVID / "valannot").glob("*.png")):
        labels = np.asarray(Image.open(png))
        truth[png.stem] = {
            concept: labels == index
            for concept, index in CAMVID_INDEX.items()
            if (labels == index).any()
        }
    return truth


def check(build: Path, truth: dict[str, dict[str, np.ndarray]]) -> dict[str, dict[str, int]]:
    """Per concept: ground-truth images, masks stored, masks equal to the truth, counterfactuals,
    counterfactuals equal to the clean image outside the mask and to the stylized one inside."""
    from pipeline.store import BuildStore

    store = BuildStore(build)
    images = store.frame("images").set_index("image_id")
    masks = store.frame("masks").set_index("mask_id")
    stylized = store.frame("stylized").set_index("stylized_id")
    counterfactuals = store.frame("counterfactuals")
    stems = {image_id: Path(row.uri).stem for image_id, row in images.iterrows()}
    built = set(stems.values())
    rows: dict[str, dict[str, int]] = {}
    for concept in CONCEPTS:
        keys = ("truth", "masks", "exact", "kept", "cf", "composed")
        row = rows.setdefault(concept, dict.fromkeys(keys, 0))
        row["truth"] = sum(concept in truth.get(stem, {}) for stem in built)
    for mask in masks.itertuples():  # every stored mask, kept or rejected by a quality rule
        stem = stems[mask.image_id]
        stored = np.asarray(Image.open(build / mask.path)).astype(bool)
        expected = truth.get(stem, {}).get(mask.concept)
        rows[mask.concept]["masks"] += 1
        rows[mask.concept]["kept"] += int(mask.kept)
        rows[mask.concept]["exact"] += int(
            expected is not None and np.array_equal(stored, expected)
        )
    for cf in counterfactuals.itertuples():
        mask = np.asarray(Image.open(build / masks.loc[cf.mask_id].path)).astype(bool)
        clean = np.asarray(Image.open(build / images.loc[cf.image_id].path).convert("RGB"))
        styled = np.asarray(Image.open(build / stylized.loc[cf.stylized_id].path).convert("RGB"))
        made = np.asarray(Image.open(build / cf.path).convert("RGB"))
        exact = np.array_equal(made[~mask], clean[~mask]) and np.array_equal(
            made[mask], styled[mask]
        )
        rows[cf.concept]["cf"] += 1
        rows[cf.concept]["composed"] += int(exact)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["coco", "camvid"])
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--out-root", type=Path, default=Path("/tmp/cs-annotated"))
    parser.add_argument("--textures", nargs="+", default=["snow", "wood"])
    args = parser.parse_args()
    from flows.build import build_dataset

    setups = {
        "coco": (COCO / "annotations" / "panoptic_train2017.json", coco_config, coco_truth),
        "camvid": (CAMVID / "valannot", camvid_config, camvid_truth),
    }
    print(
        f"{'dataset':<8} {'concept':<7} {'GT images':>9} {'masks':>6} {'= GT':>6} "
        f"{'kept':>5} {'cf':>5} {'exact cf':>8}"
    )
    for name in args.datasets:
        needed, make_config, make_truth = setups[name]
        if not needed.exists():
            print(f"skipped {name}: {needed} not found")
            continue
        config = make_config(args.limit, args.textures)
        out = args.out_root / config["name"]
        start = time.perf_counter()
        build_dataset(config=config, out=str(out))
        built = time.perf_counter() - start
        rows = check(out, make_truth())
        for concept in config["segment"]["concepts"]:
            row = rows[concept]
            print(
                f"{name:<8} {concept:<7} {row['truth']:>9} {row['masks']:>6} {row['exact']:>6} "
                f"{row['kept']:>5} {row['cf']:>5} {row['composed']:>8}"
            )
        print(f"{name}: build {built:.1f} s  [{out}]")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
