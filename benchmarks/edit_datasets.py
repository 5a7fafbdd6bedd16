"""Build configs of the label-free editing benchmarks (CamVid, COCO panoptic sample).

Split out of `benchmarks/edit_real.py` so the runner stays short. Every config reads the
shared datasets in place (`../shared/datasets`, outside the repository) and builds into a
temporary folder: the licences of these photos allow measurement only, never redistribution.

Key statistics `C` must come from images that no case split uses, so each benchmark builds
two data sets: CamVid's `test` frames (cases) and `val` frames (`C`); for COCO, whose sample
has 100 photos and no split, every third photo by file name goes to the `C` build and the
other two thirds to the case build (`pipeline.cases.splits.covariance_split`), a deterministic
split independent of content or predictions.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"
CAMVID = DATASETS / "camvid"
COCO = DATASETS / "coco-panoptic-sample"
COCO_CONCEPTS = ["grass", "sky", "road", "snow", "tree"]


def coco_segment(concepts: list[str]) -> dict:
    """The `segment` section: the sample's ground-truth panoptic masks of `concepts`."""
    options = {
        "panoptic_json": str(COCO / "annotations" / "panoptic_train2017.json"),
        "image_root": str(COCO / "images"),
    }
    return {"backend": "annotations", "concepts": concepts, "options": options}


def camvid_segment(split: str, concepts: list[str]) -> dict:
    """The `segment` section: the masks of `concepts` in the label PNGs of a CamVid split."""
    options = {
        "label_maps": str(CAMVID / f"{split}annot"),
        "label_names": "camvid",
        "image_root": str(CAMVID / split),
    }
    return {"backend": "annotations", "concepts": concepts, "options": options}


def link(paths: list[Path], folder: Path) -> None:
    """Symlink ``paths`` into ``folder`` (replacing earlier links): photos are never copied."""
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.iterdir():
        if old.is_symlink():
            old.unlink()
    for path in paths:
        (folder / path.name).symlink_to(path)


def camvid_config(split: str, textures: tuple[str, ...] = ("snow",)) -> dict:
    """CamVid frames of one split, ground-truth road masks from the label PNGs, label-free;
    the first three styles of each texture (snow/0-2, as in the earlier runs)."""
    return {
        "name": f"camvid-{split}",
        "seed": 0,
        "shard_size": 25,
        "source": {"kind": "folder", "path": str(CAMVID / split)},
        "segment": camvid_segment(split, ["road"]),
        "stylize": {"textures": list(textures), "styles_per_texture": 3},
        "filter": {"require_clean_correct": False},
    }


# how the library's photographs are rendered: one style image across the concept's height
# (the road's, not the frame's) and patches matched across seams (docs/stylize.md)
PHOTO_STYLIZE = {"units_per_height": 1.0, "candidates": 4}


def camvid_styles_config() -> dict:
    """`camvid-test-styles`: the `test` frames with every snow style of the texture library
    (its declared training and held-out styles), for the style-transfer matrix; the texture
    sized by each frame's road and seam-matched (`PHOTO_STYLIZE`)."""
    config = camvid_config("test")
    stylize = {"textures": ["snow"], "options": PHOTO_STYLIZE}
    return {**config, "name": "camvid-test-styles", "stylize": stylize}


def camvid_locator_config(textures: Sequence[str]) -> dict:
    """`camvid-locator`: the `val` frames (disjoint from the `test` frames of the cases) with
    their road re-textured by the locator's training textures, for its meta-training
    episodes; the same segmentation and styles per texture as the other CamVid builds."""
    return {**camvid_config("val", tuple(textures)), "name": "camvid-locator"}


def coco_locator_config(concepts: Sequence[str], textures: Sequence[str]) -> dict:
    """`coco-locator`: the whole COCO panoptic sample with ``concepts`` re-textured by the
    locator's COCO training textures, for its meta-training episodes (never the CamVid frames
    of the edit cases, nor road -> snow)."""
    return coco_config("coco-locator", COCO / "images", list(concepts), list(textures))


def coco_config(name: str, folder: Path, concepts: list[str], textures: list[str]) -> dict:
    """The photos linked in ``folder``, ground-truth panoptic masks of ``concepts`` (COCO
    stuff such as `sky-other-merged` → `sky` through the vocabulary), label-free."""
    return {
        "name": name,
        "seed": 0,
        "shard_size": 25,
        "source": {"kind": "folder", "path": str(folder)},
        "segment": coco_segment(concepts),
        "stylize": {"textures": textures, "styles_per_texture": 3},
        "filter": {"require_clean_correct": False},
    }


def coco_configs(root: Path, every: int = 3) -> dict[str, dict]:
    """`coco-cases` and `coco-covariance`: every ``every``-th photo by file name for `C`."""
    from pipeline.cases.splits import covariance_split, list_photos

    case_photos, cov_photos = covariance_split(list_photos(COCO / "images"), every)
    configs = {}
    for role, photos in (("cases", case_photos), ("covariance", cov_photos)):
        folder = root / f"coco-photos-{role}"
        link(photos, folder)
        configs[f"coco-{role}"] = coco_config(
            f"coco-{role}", folder, COCO_CONCEPTS, ["snow", "wood"]
        )
    return configs


def imagenet_configs(samples: Path, root: Path, every: int = 3) -> dict[str, dict]:
    """`imagenet-cases` and `imagenet-covariance` (every ``every``-th photo by file name):
    `cam` background masks from a classifier other than the edited one, at 224 px."""
    from pipeline.cases.splits import covariance_split, list_photos

    case_photos, cov_photos = covariance_split(list_photos(samples), every)
    configs = {}
    for role, photos in (("cases", case_photos), ("covariance", cov_photos)):
        folder = root / f"imagenet-photos-{role}"
        link(photos, folder)
        configs[f"imagenet-{role}"] = {
            "name": f"imagenet-{role}",
            "source": {"kind": "folder", "path": str(folder)},
            "image": {"max_side": 224},
            "segment": {"backend": "cam", "concepts": ["background"]},
            "stylize": {"textures": ["snow", "wood"], "styles_per_texture": 2},
        }
    return configs
