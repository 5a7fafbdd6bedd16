"""Edit a real classifier on real photos: rewrite vs fine-tuning (CamVid road, ImageNet groups).

    .venv/bin/python benchmarks/edit_real.py --dataset camvid [--out-root DIR] [--val-frac 0.12]
    .venv/bin/python benchmarks/edit_real.py [--limit 200] [--groups dog bird]
        [--textures snow wood] [--layer blocks.6.0.conv_pwl] [--methods ...] [--out DIR]
        [--max-side 224] [--budget-pp 1.0] [--threads 2] [--fresh]

Uses `../shared/datasets/imagenet-samples` (one photo per ImageNet class, `<wnid>_<name>.JPEG`,
outside the repository; the script exits 0 with "skipped: ..." where it is absent). The photos
are linked (never copied) into a temporary folder: up to `--limit` photos, first the photos of
each class group (`--groups`, WordNet groups from `pipeline.editing.groups.class_group`), the
rest spread evenly over the remaining classes. The build (cam `background` masks, `texture`
stylization with two style images per texture, EfficientNet-Lite0) goes to a temporary folder
by default, so no derived ImageNet pixels land in the repository.

One photo per class means no single-class case is possible (a case needs `n_train + 1` photos
of its target), so each case targets a class group: exemplars are three photos of three
classes of the group, target test groups the group's other photos, and a prediction is correct
when it equals the photo's own label. One case per (background, texture, group).

Prints the build time, the cases, and per method the % errors corrected per test group (mean
and 95% t interval over cases), the clean accuracy drop, SR / LR and the time per case.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"
SAMPLES = DATASETS / "imagenet-samples"
CAMVID = DATASETS / "camvid"
METHODS = ["rewrite", "rewrite-closed", "rewrite-multikey", "finetune-local", "finetune-global"]


def choose_photos(images: Path, groups: dict[str, list[int]], limit: int) -> list[Path]:
    """Group photos first (an even share of `limit` each, at most 40%), then other classes."""
    from pipeline.sources.folder import infer_label

    files = sorted(p for p in images.iterdir() if p.suffix.lower() in {".jpeg", ".jpg", ".png"})
    labels = {path: infer_label(path) for path in files}
    per_group = int(limit * 0.4) if len(groups) == 1 else int(limit * 0.65) // len(groups)
    chosen: list[Path] = []
    grouped = set()
    for classes in groups.values():
        members = [p for p in files if labels[p] in set(classes)]
        grouped |= set(members)
        step = max(1, len(members) // max(1, per_group))
        chosen += members[::step][:per_group]
    rest = [p for p in files if p not in grouped]
    need = max(0, limit - len(chosen))
    step = max(1, len(rest) // max(1, need))
    chosen += rest[::step][:need]
    return sorted(chosen)


def link(paths: list[Path], folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.iterdir():
        if old.is_symlink():
            old.unlink()
    for path in paths:
        (folder / path.name).symlink_to(path)


def camvid_config(split: str, textures: list[str]) -> dict:
    """CamVid frames of one split, ground-truth road masks from the label PNGs, label-free."""
    annot = f"{split}annot"
    return {
        "name": f"camvid-{split}",
        "seed": 0,
        "shard_size": 25,
        "source": {"kind": "folder", "path": str(CAMVID / split)},
        "segment": {
            "backend": "annotations",
            "concepts": ["road"],
            "options": {
                "label_maps": str(CAMVID / annot),
                "label_names": "camvid",
                "image_root": str(CAMVID / split),
            },
        },
        "stylize": {"textures": textures},
        "filter": {"require_clean_correct": False},
    }


def run_camvid(args: argparse.Namespace) -> int:
    """Label-free error cases on the CamVid test frames; C from the val frames (disjoint)."""
    if not (CAMVID / "test").is_dir() or not (CAMVID / "testannot").is_dir():
        print(f"skipped: CamVid not found at {CAMVID} (it lives outside the repo)")
        return 0
    import pandas as pd

    from flows.build import build_dataset
    from pipeline.editing.runner import run_edits
    from pipeline.error_cases import build_error_cases
    from pipeline.report.edits import write_comparison

    textures = args.textures if args.textures != ["snow", "wood"] else ["snow"]
    root = args.out_root or Path(tempfile.gettempdir()) / "cs-edit"
    builds = {}
    for split in ("test", "val"):
        start = time.perf_counter()
        builds[split] = root / f"camvid-{split}"
        build_dataset(config=camvid_config(split, textures), out=str(builds[split]))
        print(f"build {split}: {time.perf_counter() - start:.1f} s  [{builds[split]}]")
    cases = build_error_cases(
        builds["test"], n_train=args.n_train, val_frac=args.val_frac, concepts=["road"]
    )
    for case in cases:
        sizes = ", ".join(f"{k}={len(v)}" for k, v in case.test_groups.items())
        print(
            f"case {case.case_id}: train {len(case.train)} ({case.train_style}); {sizes}; "
            f"validation {len(case.validation)} clean + {len(case.validation_cf)} transformed, "
            f"heldout {len(case.heldout)}; induced errors {case.params['induced_errors']}"
        )
    start = time.perf_counter()
    folder = run_edits(
        builds["test"],
        args.model,
        args.layer,
        args.methods,
        cases=cases,
        budget_pp=args.budget_pp,
        device=args.device,
        covariance_images=builds["val"],
        log=print,
    )
    print(
        f"\nedits: {len(cases)} cases x {len(args.methods)} methods in "
        f"{time.perf_counter() - start:.1f} s\n"
    )
    write_comparison(builds["test"])
    print((folder / "comparison.md").read_text())
    results = pd.read_parquet(folder / "results.parquet")
    results = results[results["case_id"].isin([c.case_id for c in cases])]
    pd.set_option("display.width", 200)
    columns = [
        "method",
        "group",
        "n",
        "e_pre",
        "e_post",
        "errors_corrected",
        "dlogp",
        "clean_drop_pp",
        "sr",
        "lr",
        "lr_n",
        "select_s",
        "candidate",
    ]
    print(results[columns].round(2).to_string(index=False))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=["imagenet", "camvid"], default="imagenet")
    parser.add_argument("--out-root", type=Path, default=None, help="CamVid builds' folder")
    parser.add_argument("--val-frac", type=float, default=0.12, help="CamVid validation share")
    parser.add_argument("--limit", type=int, default=200, help="number of photos")
    parser.add_argument("--groups", nargs="+", default=["dog", "bird"])
    parser.add_argument("--textures", nargs="+", default=["snow", "wood"])
    parser.add_argument("--layer", default="blocks.6.0.conv_pwl")
    parser.add_argument("--methods", nargs="+", default=METHODS)
    parser.add_argument("--model", default="timm:tf_efficientnet_lite0")
    parser.add_argument("--out", type=Path, default=None, help="build directory")
    parser.add_argument("--max-side", type=int, default=224)
    parser.add_argument("--budget-pp", type=float, default=1.0)
    parser.add_argument("--n-train", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--fresh", action="store_true", help="delete earlier edit results")
    args = parser.parse_args()
    os.environ.setdefault("PREFECT_HOME", str(Path(tempfile.gettempdir()) / "prefect-edit-real"))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    if args.dataset == "camvid":
        import torch

        torch.set_num_threads(args.threads)
        return run_camvid(args)
    if not (SAMPLES / "images").is_dir():
        print(f"skipped: ImageNet samples not found at {SAMPLES} (they live outside the repo)")
        return 0
    os.environ.setdefault("PREFECT_HOME", str(Path(tempfile.gettempdir()) / "prefect-edit-real"))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

    import shutil

    import pandas as pd
    import torch

    from flows.build import build_dataset
    from pipeline.editing.groups import build_group_cases, class_group
    from pipeline.editing.runner import run_edits
    from pipeline.report.edits import write_comparison
    from pipeline.store.edits_layout import edits_dir

    torch.set_num_threads(args.threads)
    total = time.perf_counter()
    groups = {name: class_group(name) for name in args.groups}
    tmp = Path(tempfile.gettempdir())
    tag = f"{args.limit}-{'-'.join(args.groups)}-{args.max_side}"
    out = args.out or tmp / f"conceptswap-edit-real-{tag}"
    subset = tmp / f"imagenet-edit-subset-{tag}"
    photos = choose_photos(SAMPLES / "images", groups, args.limit)
    link(photos, subset)
    config = {
        "name": f"edit-real-{tag}",
        "source": {"kind": "folder", "path": str(subset)},
        "image": {"max_side": args.max_side},
        "segment": {"backend": "cam", "concepts": ["background"]},
        "stylize": {"backend": "texture", "textures": args.textures, "styles_per_texture": 2},
        "classifier": {"name": args.model, "device": args.device},
    }
    start = time.perf_counter()
    build_dataset(config=config, out=str(out))
    build_s = time.perf_counter() - start
    manifest = pd.read_parquet(out / "manifest.parquet")
    sizes = ", ".join(f"{name}: {len(classes)} classes" for name, classes in groups.items())
    print(
        f"build: {len(photos)} photos ({sizes})"
        f" -> {len(manifest)} counterfactuals ({int(manifest['kept'].sum())} kept) in "
        f"{build_s:.1f} s  [{out}]"
    )

    cases = build_group_cases(out, groups, n_train=args.n_train, concepts=["background"])
    for case in cases:
        sizes = ", ".join(f"{k}={len(v)}" for k, v in case.test_groups.items())
        print(
            f"case {case.case_id}: train {len(case.train)} ({case.train_style}); {sizes}; "
            f"validation {len(case.validation)}, heldout {len(case.heldout)}"
        )
    if not cases:
        print("no case could be planned (too few photos per group?)")
        return 1
    if args.fresh and edits_dir(out).exists():
        cache = edits_dir(out) / "cache"
        for path in edits_dir(out).iterdir():
            if path != cache:
                shutil.rmtree(path) if path.is_dir() else path.unlink()

    start = time.perf_counter()
    folder = run_edits(
        out,
        args.model,
        args.layer,
        args.methods,
        cases=cases,
        budget_pp=args.budget_pp,
        device=args.device,
        log=print,
    )
    edit_s = time.perf_counter() - start
    write_comparison(out)
    results = pd.read_parquet(folder / "results.parquet")
    results = results[results["case_id"].isin([c.case_id for c in cases])]
    print(f"\nedits: {len(cases)} cases x {len(args.methods)} methods in {edit_s:.1f} s\n")
    print((folder / "comparison.md").read_text())

    pd.set_option("display.width", 200)
    per_case = results[results["group"] == "clean"][
        [
            "case_id",
            "method",
            "candidate",
            "within_budget",
            "val_drop_pp",
            "clean_drop_pp",
            "sr",
            "lr",
            "select_s",
            "edit_s",
        ]
    ]
    print("per case (clean drop on heldout images; times: selection incl. every grid point)")
    print(per_case.round(2).to_string(index=False))
    tests = results[
        results["group"].isin(
            [
                "target_train_style",
                "target_heldout_style",
                "other_train_style",
                "other_heldout_style",
            ]
        )
    ]
    pooled = tests.groupby(["method", "group"], sort=False)[["e_pre", "e_post", "n"]].sum()
    pooled["errors_corrected_pooled"] = 100 * (pooled["e_pre"] - pooled["e_post"]) / pooled["e_pre"]
    print("\npooled over cases: E_pre, E_post and errors corrected (%)")
    print(pooled.round(1).to_string())
    print(f"\ntotal {time.perf_counter() - total:.1f} s on {torch.get_num_threads()} threads")
    return 0


if __name__ == "__main__":
    sys.exit(main())
