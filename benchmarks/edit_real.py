"""Edit a real classifier on real photos: rewrite vs fine-tuning (CamVid, COCO, ImageNet).

    .venv/bin/python benchmarks/edit_real.py --dataset camvid [--out-root DIR] [--val-frac 0.1]
        [--cov-extra FOLDER ... | none] [--cov-views center|windows] [--no-each-style]
    .venv/bin/python benchmarks/edit_real.py --dataset coco [--concepts grass sky road snow tree]
        [--textures snow wood] [--max-pairs N] [--cov-every 3] [--val-frac 0.3]
    .venv/bin/python benchmarks/edit_real.py [--limit 200] [--groups dog bird]
        [--textures snow wood] [--layer blocks.6.0.conv_pwl] [--methods ...] [--out DIR]
        [--max-side 224] [--budget-pp 1.0] [--threads 2] [--fresh] [--scales 0.05 0.1 ...]

`--dataset camvid` / `coco`: label-free error cases (`pipeline.cases`, plan `errors`) on
ground-truth masks (`annotations` backend), with the key statistics `C` from a second build of
images no case uses (CamVid: the `val` frames; COCO: every third photo of the 100-photo sample
by file name, `pipeline.cases.splits.covariance_split`), mixed with `--cov-extra` folders
(CamVid default: the ImageNet samples, each image with its two end squares, `--cov-views
windows`), and one case per style image (`--each-style`, CamVid default). The builds go to
`--out-root` (default `/tmp/cs-edit`).

Uses `../shared/datasets/imagenet-samples` (one photo per ImageNet class, `<wnid>_<name>.JPEG`,
outside the repository; the script exits 0 with "skipped: ..." where it is absent). The photos
are linked (never copied) into a temporary folder: up to `--limit` photos, first the photos of
each class group (`--groups`, WordNet groups from `pipeline.cases.class_group`), the
rest spread evenly over the remaining classes; every `--cov-every`-th photo outside the groups
(by file name) goes to a second build used only for the key statistics `C`, so `C` is disjoint
from every case split. The builds (cam `background` masks from a classifier other than the
edited one, `texture` stylization with two style images per texture, EfficientNet-Lite0) go to
a temporary folder by default, so no derived ImageNet pixels land in the repository.

One photo per class means no single-class case is possible (a case needs `n_train + 1` photos
of its target), so each case targets a class group: exemplars are three photos of three
classes of the group, target test groups the group's other photos, and a prediction is correct
when it equals the photo's own label. One case per (background, texture, group).
`--plan errors` plans error cases instead (`pipeline.cases`, labelled): 3 exemplars the
model gets wrong in one style image (of any class, as no class has 3 photos), one case per
style image, every other photo in the test groups, and `--val-frac` (default 0.35) of the
photos for validation, so that about 200 clean photos steer the selection.

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
TEST_GROUPS = ["target_train_style", "target_heldout_style", "other_train_style"]
TEST_GROUPS += ["other_heldout_style"]
METHODS = ["rewrite", "rewrite-closed", "rewrite-multikey", "finetune-local", "finetune-global"]


def clear_edits(build: Path) -> None:
    """``--fresh``: delete earlier edit results of a build, keeping its ``C`` cache."""
    import shutil

    from pipeline.store.edits_layout import edits_dir

    if edits_dir(build).exists():
        cache = edits_dir(build) / "cache"
        for path in edits_dir(build).iterdir():
            if path != cache:
                shutil.rmtree(path) if path.is_dir() else path.unlink()


def scale_grids(args: argparse.Namespace) -> dict | None:
    """``--scales``: the rewrite methods' scale grid (one solve, several strengths)."""
    if not args.scales:
        return None
    from pipeline.editing.methods import Candidate

    rewrite = [Candidate({}, s) for s in args.scales]
    return {"rewrite": rewrite, "rewrite-closed": [Candidate({"rank": 1}, s) for s in args.scales]}


def build_pair(configs: dict[str, dict], root: Path) -> dict[str, Path]:
    """Build the case and covariance data sets (a finished build is found up to date)."""
    from flows.build import build_dataset

    builds = {}
    for role, config in configs.items():
        start = time.perf_counter()
        builds[role] = root / config["name"]
        build_dataset(config=config, out=str(builds[role]))
        print(f"build {role}: {time.perf_counter() - start:.1f} s  [{builds[role]}]")
    return builds


def run_label_free(args: argparse.Namespace, builds: dict[str, Path], concepts: list[str]) -> int:
    """Label-free error cases on the ``cases`` build; ``C`` from the ``covariance`` build."""
    import pandas as pd

    from pipeline.cases import ErrorPlan, plan_cases
    from pipeline.editing.runner import run_edits
    from pipeline.report.edits import write_comparison

    plan = ErrorPlan(
        n_train=args.n_train,
        val_frac=args.val_frac,
        concepts=concepts,
        max_pairs=args.max_pairs,
        each_style=bool(args.each_style),
    )
    cases = plan_cases(builds["cases"], plan)
    print_cases(cases)
    if not cases:
        print("no error case could be planned (too few wrong counterfactuals per style image?)")
        return 1
    if args.fresh:
        clear_edits(builds["cases"])
    start = time.perf_counter()
    folder = run_edits(
        builds["cases"],
        args.model,
        args.layer,
        args.methods,
        cases=cases,
        budget_pp=args.budget_pp,
        device=args.device,
        covariance_images=covariance_sets(args, builds["covariance"]),
        covariance_views=args.cov_views or "center",
        grids=scale_grids(args),
        log=print,
    )
    print(
        f"\nedits: {len(cases)} cases x {len(args.methods)} methods in "
        f"{time.perf_counter() - start:.1f} s\n"
    )
    write_comparison(builds["cases"])
    print((folder / "comparison.md").read_text())
    results = pd.read_parquet(folder / "results.parquet")
    results = results[results["case_id"].isin([c.case_id for c in cases])]
    pd.set_option("display.width", 200)
    columns = ["case_id", "method", "group", "n", "e_pre", "e_post", "errors_corrected"]
    columns += ["dlogp", "clean_drop_pp", "sr", "lr", "lr_n", "select_s", "candidate"]
    print(results[columns].round(2).to_string(index=False))
    print_pooled(results)
    return 0


def print_cases(cases) -> None:
    """One line per case: its splits' sizes (and the induced errors of an error case)."""
    for case in cases:
        sizes = ", ".join(f"{k}={len(v)}" for k, v in case.test_groups.items())
        errors = case.params.get("induced_errors")
        print(
            f"case {case.case_id}: train {len(case.train)} ({case.train_style}); {sizes}; "
            f"validation {len(case.validation)} clean (asked {case.params['min_validation']}) + "
            f"{len(case.validation_cf)} transformed, heldout {len(case.heldout)}"
            + (f"; induced errors {errors}" if errors is not None else "")
        )


def covariance_sets(args: argparse.Namespace, build: Path) -> Path | list[Path]:
    """The second build, plus ``--cov-extra`` folders (``C`` = the mean of their moments)."""
    extra = [] if args.cov_extra in (None, ["none"]) else [Path(p) for p in args.cov_extra]
    missing = [p for p in extra if not p.is_dir()]
    if missing:
        raise SystemExit(f"--cov-extra: not a folder: {', '.join(map(str, missing))}")
    return [build, *extra] if extra else build


def print_pooled(results) -> None:
    """Errors corrected pooled over cases: sum E_pre and E_post per (method, group)."""
    tests = results[results["group"].isin(TEST_GROUPS)]
    pooled = tests.groupby(["method", "group"], sort=False)[["e_pre", "e_post", "n"]].sum()
    pooled["errors_corrected_pooled"] = 100 * (pooled["e_pre"] - pooled["e_post"]) / pooled["e_pre"]
    clean = results[results["group"] == "clean"].groupby("method", sort=False)
    print("\npooled over cases: E_pre, E_post and errors corrected (%)")
    print(pooled.round(1).to_string())
    print("\nclean change per case (pp) and its mean over cases")
    print(clean["clean_drop_pp"].agg(["count", "min", "max", "mean"]).round(2).to_string())


def run_camvid(args: argparse.Namespace) -> int:
    """Label-free error cases on the CamVid test frames; C from the val frames (disjoint)."""
    from edit_datasets import CAMVID, MIN_HELDOUT, camvid_config

    from pipeline.cases.plans import DEFAULT_MIN_VALIDATION
    from pipeline.cases.splits import error_split_sizes

    if not (CAMVID / "test").is_dir() or not (CAMVID / "testannot").is_dir():
        print(f"skipped: CamVid not found at {CAMVID} (it lives outside the repo)")
        return 0
    frames = sum(1 for p in (CAMVID / "test").iterdir() if p.suffix.lower() == ".png")
    split = error_split_sizes(frames - args.n_train, 0, args.val_frac, DEFAULT_MIN_VALIDATION)
    if split.heldout < MIN_HELDOUT:
        print(
            f"warning: {split.heldout} of {frames} frames held out (< {MIN_HELDOUT}); "
            "lower --val-frac"
        )
    textures = args.textures if args.textures != ["snow", "wood"] else ["snow"]
    root = args.out_root or Path(tempfile.gettempdir()) / "cs-edit"
    configs = {
        "cases": camvid_config("test", textures),
        "covariance": camvid_config("val", textures),
    }
    return run_label_free(args, build_pair(configs, root), ["road"])


def run_coco(args: argparse.Namespace) -> int:
    """Label-free error cases on two thirds of the COCO panoptic sample; C from the rest."""
    from edit_datasets import COCO, COCO_CONCEPTS, coco_config, link

    from pipeline.cases.splits import covariance_split, list_photos

    if not (COCO / "annotations" / "panoptic_train2017.json").is_file():
        print(f"skipped: the COCO panoptic sample not found at {COCO} (it lives outside the repo)")
        return 0
    root = args.out_root or Path(tempfile.gettempdir()) / "cs-edit"
    concepts = args.concepts or COCO_CONCEPTS
    case_photos, cov_photos = covariance_split(list_photos(COCO / "images"), args.cov_every)
    configs = {}
    for role, photos in (("cases", case_photos), ("covariance", cov_photos)):
        folder = root / f"coco-photos-{role}"
        link(photos, folder)
        configs[role] = coco_config(f"coco-{role}", folder, concepts, args.textures)
    print(
        f"COCO: {len(case_photos)} photos for the cases, {len(cov_photos)} for C "
        f"(every {args.cov_every}. photo by file name)"
    )
    return run_label_free(args, build_pair(configs, root), concepts)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=["imagenet", "camvid", "coco"], default="imagenet")
    parser.add_argument("--out-root", type=Path, default=None, help="CamVid / COCO builds' folder")
    parser.add_argument("--val-frac", type=float, default=None, help="CamVid 0.1, COCO 0.3")
    parser.add_argument("--max-pairs", type=int, default=None, help="error cases (pairs) at most")
    parser.add_argument("--concepts", nargs="+", default=None, help="COCO concepts")
    parser.add_argument("--cov-every", type=int, default=3, help="every n-th photo for C")
    parser.add_argument(
        "--cov-extra",
        nargs="+",
        default=None,
        help="CamVid / COCO: more image folders for C, mixed with equal weights (CamVid: the "
        "ImageNet samples where present; 'none': only the second build)",
    )
    parser.add_argument(
        "--cov-views",
        choices=["center", "windows"],
        default=None,
        help="windows: add each image's two end squares to C (CamVid default; else center)",
    )
    parser.add_argument(
        "--each-style",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="CamVid / COCO: one case per style image (CamVid default)",
    )
    parser.add_argument("--scales", nargs="+", type=float, default=None, help="rewrite scales")
    parser.add_argument("--limit", type=int, default=200, help="number of photos")
    parser.add_argument("--groups", nargs="+", default=["dog", "bird"])
    parser.add_argument(
        "--plan",
        choices=["groups", "errors"],
        default="groups",
        help="ImageNet cases: class groups with random exemplars, or error cases (exemplars "
        "the model gets wrong, one case per style image, --val-frac 0.35 by default)",
    )
    parser.add_argument("--textures", nargs="+", default=["snow", "wood"])
    parser.add_argument("--layer", default="blocks.6.0.conv_pwl")
    parser.add_argument("--methods", nargs="+", default=METHODS)
    parser.add_argument("--model", default="timm:tf_efficientnet_lite0")
    parser.add_argument("--out", type=Path, default=None, help="build directory")
    parser.add_argument("--max-side", type=int, default=224)
    parser.add_argument("--budget-pp", type=float, default=1.0)
    parser.add_argument("--n-train", type=int, default=None, help="CamVid 10, else 3")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--fresh", action="store_true", help="delete earlier edit results")
    args = parser.parse_args()
    os.environ.setdefault("PREFECT_HOME", str(Path(tempfile.gettempdir()) / "prefect-edit-real"))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    import torch

    torch.set_num_threads(args.threads)
    if args.dataset == "camvid":  # the measured defaults (edit_datasets.CAMVID_DEFAULTS)
        from edit_datasets import CAMVID_DEFAULTS

        for key, value in CAMVID_DEFAULTS.items():
            setattr(args, key, value if getattr(args, key) is None else getattr(args, key))
        if args.cov_extra != ["none"] and not all(Path(p).is_dir() for p in args.cov_extra):
            print(f"note: {args.cov_extra} not found; C from the val frames only")
            args.cov_extra = None
    args.n_train = args.n_train or 3
    if args.dataset in ("camvid", "coco"):
        args.val_frac = args.val_frac or 0.3
        return run_camvid(args) if args.dataset == "camvid" else run_coco(args)
    if not (SAMPLES / "images").is_dir():
        print(f"skipped: ImageNet samples not found at {SAMPLES} (they live outside the repo)")
        return 0
    return run_imagenet(args)


def run_imagenet(args: argparse.Namespace) -> int:
    """Grouped cases (class groups) on the ImageNet samples; cam masks from another model."""
    import pandas as pd
    import torch
    import yaml
    from edit_datasets import link

    from flows.build import build_dataset
    from pipeline.cases import ErrorPlan, GroupPlan, class_group, plan_cases
    from pipeline.cases.splits import choose_photos, list_photos, split_for_covariance
    from pipeline.editing.runner import run_edits
    from pipeline.report.edits import write_comparison

    total = time.perf_counter()
    groups = {name: class_group(name) for name in args.groups}
    tmp = Path(tempfile.gettempdir())
    tag = f"{args.limit}-{'-'.join(args.groups)}-{args.max_side}-c{args.cov_every}"
    out = args.out or tmp / f"conceptswap-edit-real-{tag}"
    photos = choose_photos(list_photos(SAMPLES / "images"), groups, args.limit)
    case_photos, cov_photos = split_for_covariance(photos, groups, args.cov_every)
    sizes = ", ".join(f"{name}: {len(classes)} classes" for name, classes in groups.items())
    print(
        f"{len(photos)} photos ({sizes}): {len(case_photos)} for the cases, {len(cov_photos)} "
        f"(every {args.cov_every}. photo outside the groups) for C"
    )
    builds = {"cases": out, "covariance": out.with_name(out.name + "-cov")}
    for role, chosen in (("cases", case_photos), ("covariance", cov_photos)):
        if not chosen:
            continue
        subset = tmp / f"imagenet-edit-subset-{tag}-{role}"
        link(chosen, subset)
        config = {
            "name": f"edit-real-{tag}-{role}",
            "source": {"kind": "folder", "path": str(subset)},
            "image": {"max_side": args.max_side},
            # cam masks come from a model other than the edited one (lite2 for lite0)
            "segment": {"backend": "cam", "concepts": ["background"]},
            "stylize": {"backend": "texture", "textures": args.textures, "styles_per_texture": 2},
            "classifier": {"name": args.model, "device": args.device},
        }
        start = time.perf_counter()
        build_dataset(config=config, out=str(builds[role]))
        manifest = pd.read_parquet(builds[role] / "manifest.parquet")
        print(
            f"build {role}: {len(chosen)} photos -> {len(manifest)} counterfactuals "
            f"({int(manifest['kept'].sum())} kept) in {time.perf_counter() - start:.1f} s "
            f" [{builds[role]}]"
        )
    resolved = yaml.safe_load((out / "build.yaml").read_text()).get("resolved", {})
    print(f"masks from: {resolved.get('mask_model')}; edited: {args.model}")

    if args.plan == "errors":
        plan = ErrorPlan(
            n_train=args.n_train,
            val_frac=args.val_frac or 0.35,
            concepts=["background"],
            each_style=True if args.each_style is None else args.each_style,
        )
    else:
        plan = GroupPlan(groups=groups, n_train=args.n_train, concepts=["background"])
    cases = plan_cases(out, plan)
    print_cases(cases)
    if not cases:
        print("no case could be planned (too few photos per group?)")
        return 1
    if args.fresh:
        clear_edits(out)

    start = time.perf_counter()
    folder = run_edits(
        out,
        args.model,
        args.layer,
        args.methods,
        cases=cases,
        budget_pp=args.budget_pp,
        device=args.device,
        covariance_images=builds["covariance"] if cov_photos else None,
        covariance_views=args.cov_views or "center",
        grids=scale_grids(args),
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
    print_pooled(results)
    print(f"\ntotal {time.perf_counter() - total:.1f} s on {torch.get_num_threads()} threads")
    return 0


if __name__ == "__main__":
    sys.exit(main())
