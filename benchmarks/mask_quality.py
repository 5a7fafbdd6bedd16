"""Mask quality of a segmenter against ground truth: `object` / `background` on COCO panoptic and
CamVid, with the trivial baselines beside it.

    nice -n 10 .venv/bin/python benchmarks/mask_quality.py --dataset coco --half test \
        --configs cam:gradcam cam:layercam annotations

`cam:layercam@320` runs LayerCAM at the listed longer sides only (`layercam_sizes`, `-`-separated).

Ground truth: `object` = the union of the things (COCO `isthing`; CamVid Car, Pedestrian,
Bicyclist), `background` = the other labelled pixels (stuff). Unlabelled pixels (COCO id 0,
CamVid `Unlabelled`) are left out of every count. Per concept: IoU, precision and recall (means
over images, an image without a detection counts as an empty mask) with 95 % bootstrap intervals
over images (seeded), the detection rate and the segmenter's time per image (wall clock, this
process, one image per call). Baselines: a centred ellipse (80 % of width and height) for
`object`, the whole image for `background`, and each concept's mean ground-truth mask over the
evaluated images (thresholded at 0.5; optimistic: it has seen the answers).

Halves: the COCO sample sorted by file name; `tune` = even positions, `test` = odd positions
(the `cam` thresholds were tuned on `tune`). CamVid uses `val` sorted, `--limit` first frames.
The shared data is measurement only: nothing derived from it is written anywhere.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from pipeline.classify import create_classifier
from pipeline.segment import create_segmenter
from pipeline.segment.label_maps import concept_of, load_label_names, read_label_map
from pipeline.segment.panoptic import load_panoptic, read_segment_ids
from pipeline.segment.refine import resize_mask
from pipeline.segment.vocabulary import canonical

DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"
COCO = DATASETS / "coco-panoptic-sample"
CAMVID = DATASETS / "camvid"
CAMVID_THINGS = ("Car", "Pedestrian", "Bicyclist")
CAMVID_VOID = 11
CONCEPTS = ("object", "background")

# one sample: (name, rgb, thing mask, stuff mask, labelled mask)
Sample = tuple[str, np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def coco_samples(half: str) -> Iterator[Sample]:
    entries = sorted(
        load_panoptic(COCO / "annotations" / "panoptic_train2017.json"), key=lambda e: e.file_name
    )
    for position, entry in enumerate(entries):
        if half != "all" and (position % 2 == 0) != (half == "tune"):
            continue
        assert entry.png_name is not None
        ids = read_segment_ids(
            COCO / "annotations" / "panoptic_train2017" / entry.png_name, entry.height, entry.width
        )
        things = [s.segment_id for s in entry.segments if s.isthing]
        rgb = np.asarray(Image.open(COCO / "images" / entry.file_name).convert("RGB"))
        labelled = ids > 0
        thing = np.isin(ids, things)
        yield entry.file_name, rgb, thing, labelled & ~thing, labelled


def camvid_samples(limit: int) -> Iterator[Sample]:
    names = load_label_names("camvid")
    things = [i for i, n in names.items() if n in CAMVID_THINGS]
    for path in sorted((CAMVID / "val").glob("*.png"))[:limit]:
        labels = read_label_map(CAMVID / "valannot" / path.name)
        rgb = np.asarray(Image.open(path).convert("RGB"))
        labelled = labels != CAMVID_VOID
        thing = np.isin(labels, things)
        yield path.name, rgb, thing, labelled & ~thing, labelled


def thing_concepts(dataset: str) -> tuple[set[str], set[str]]:
    """(thing concepts, stuff concepts) as the `annotations` backend names them."""
    if dataset == "camvid":
        names = [n for n in load_label_names("camvid").values() if n]
        thing = {concept_of(n) for n in names if n in CAMVID_THINGS}
        return {c for c in thing if c}, {c for n in names if (c := concept_of(n))} - thing
    import json

    path = COCO / "annotations" / "panoptic_train2017.json"
    document = json.loads(path.read_text())
    used = {s["category_id"] for a in document["annotations"] for s in a["segments_info"]}
    categories = [c for c in document["categories"] if c["id"] in used]
    things = {canonical(c["name"], strict=False) for c in categories if c.get("isthing", 1)}
    stuff = {canonical(c["name"], strict=False) for c in categories if not c.get("isthing", 1)}
    return things, stuff


def make_segmenter(
    config: str, dataset: str, mask_model: str, engine: str = "auto"
) -> Callable[..., dict]:
    """A function rgb → {concept: mask}, through the library's registries."""
    if config == "annotations":
        if dataset == "coco":
            options = {
                "panoptic_json": str(COCO / "annotations" / "panoptic_train2017.json"),
                "image_root": str(COCO / "images"),
            }
        else:
            options = {
                "label_maps": str(CAMVID / "valannot"),
                "label_names": "camvid",
                "image_root": str(CAMVID / "val"),
                "label_ignore": [CAMVID_VOID],
            }
        things, stuff = thing_concepts(dataset)
        segmenter = create_segmenter(
            "annotations", concepts=sorted(things | stuff), max_side=4096, **options
        )

        def run_annotations(rgb: np.ndarray) -> dict:
            found = segmenter.segment([rgb], [None])[0]
            out = {}
            for concept, names in (("object", things), ("background", stuff)):
                masks = [d.mask for d in found if d.concept in names]
                if masks:
                    out[concept] = np.logical_or.reduce(
                        [resize_mask(m, rgb.shape[:2]) for m in masks]
                    )
            return out

        return run_annotations
    backend, _, method = config.partition(":")
    method, _, sizes = method.partition("@")  # cam:layercam@320 → layercam_sizes [320]
    options = {"layercam_sizes": [int(s) for s in sizes.split("-")]} if sizes else {}
    classifier = create_classifier(mask_model, device="cpu")
    segmenter = create_segmenter(
        backend,
        concepts=list(CONCEPTS),
        classifier=classifier,
        object_method=method or "gradcam",
        engine=engine,
        **options,
    )
    print(f"{config}: id {segmenter.id}")

    def run_cam(rgb: np.ndarray) -> dict:
        return {d.concept: d.mask for d in segmenter.segment([rgb], [None])[0]}

    return run_cam


def scores(pred: np.ndarray | None, truth: np.ndarray, labelled: np.ndarray) -> tuple:
    """(IoU, precision, recall) on the labelled pixels; empty prediction and truth → 1, 1, 1."""
    pred = np.zeros_like(truth) if pred is None else (pred & labelled)
    inter = float((pred & truth).sum())
    union, npred, ntrue = float((pred | truth).sum()), float(pred.sum()), float(truth.sum())
    return (
        inter / union if union else 1.0,
        inter / npred if npred else float(ntrue == 0),
        inter / ntrue if ntrue else float(npred == 0),
    )


def ellipse(shape: tuple[int, int], frac: float = 0.8) -> np.ndarray:
    h, w = shape
    yy, xx = np.mgrid[:h, :w]
    return ((xx - (w - 1) / 2) / (frac * w / 2)) ** 2 + (
        (yy - (h - 1) / 2) / (frac * h / 2)
    ) ** 2 <= 1


def bootstrap(values: np.ndarray, rounds: int = 1000, seed: int = 0) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), (rounds, len(values)))].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def row(name: str, concept: str, table: np.ndarray, found: list[bool], seconds: list[float]) -> str:
    cells = []
    for column in range(3):
        low, high = bootstrap(table[:, column])
        cells.append(f"{table[:, column].mean():.3f} [{low:.2f}, {high:.2f}]")
    rate = f"{np.mean(found):.2f}" if found else "-"
    per = f"{np.mean(seconds):.2f}" if seconds else "-"
    return f"| {name} | {concept} | {' | '.join(cells)} | {rate} | {per} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", choices=("coco", "camvid"), default="coco")
    parser.add_argument("--half", choices=("tune", "test", "all"), default="test")
    parser.add_argument("--limit", type=int, default=100, help="at most this many images")
    parser.add_argument("--configs", nargs="+", default=["cam:gradcam", "cam:layercam"])
    parser.add_argument("--mask-model", default="timm:tf_efficientnet_lite2")
    parser.add_argument(
        "--cam-engine", default="auto", choices=["auto", "torch"], help="cam's no-grad passes"
    )
    args = parser.parse_args()
    if not (COCO if args.dataset == "coco" else CAMVID).is_dir():
        raise SystemExit(f"no shared data under {DATASETS}")
    samples = coco_samples(args.half) if args.dataset == "coco" else camvid_samples(args.limit)
    samples = list(samples)[: args.limit]
    runners = {
        c: make_segmenter(c, args.dataset, args.mask_model, args.cam_engine) for c in args.configs
    }
    results = {(c, k): [] for c in args.configs for k in CONCEPTS}
    found = {(c, k): [] for c in args.configs for k in CONCEPTS}
    seconds: dict[str, list[float]] = {c: [] for c in args.configs}
    for name, rgb, thing, stuff, labelled in samples:
        for config, run in runners.items():  # side by side on the same image
            start = time.perf_counter()
            masks = run(rgb)
            seconds[config].append(time.perf_counter() - start)
            for concept, truth in (("object", thing), ("background", stuff)):
                results[config, concept].append(scores(masks.get(concept), truth, labelled))
                found[config, concept].append(concept in masks)
        print(f"  {name}: " + ", ".join(f"{c} {seconds[c][-1]:.2f}s" for c in runners), flush=True)
    grid = (128, 128)
    mean_thing = np.mean([resize_mask(s[2], grid) for s in samples], axis=0) >= 0.5
    mean_stuff = np.mean([resize_mask(s[3], grid) for s in samples], axis=0) >= 0.5
    baselines = {
        ("ellipse 80 %", "object"): lambda s: ellipse(s[1].shape[:2]),
        ("whole image", "background"): lambda s: np.ones(s[1].shape[:2], bool),
        ("GT mean mask", "object"): lambda s: resize_mask(mean_thing, s[1].shape[:2]),
        ("GT mean mask", "background"): lambda s: resize_mask(mean_stuff, s[1].shape[:2]),
    }
    print(
        f"\n{args.dataset} ({args.half if args.dataset == 'coco' else 'val'}), "
        f"{len(samples)} images, mask model {args.mask_model}"
    )
    print("| masks | concept | IoU [95 % CI] | precision | recall | detected | s/image |")
    print("|---|---|---|---|---|---|---|")
    for config in args.configs:
        for concept in CONCEPTS:
            table = np.array(results[config, concept])
            print(row(config, concept, table, found[config, concept], seconds[config]))
    for (name, concept), make in baselines.items():
        truth_index = 2 if concept == "object" else 3
        table = np.array([scores(make(s), s[truth_index], s[4]) for s in samples])
        print(row(name, concept, table, [], []))


if __name__ == "__main__":
    main()
