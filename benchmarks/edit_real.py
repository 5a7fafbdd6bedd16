"""Edit a real classifier on real photos: every method's curve on CamVid, COCO or ImageNet.

    .venv/bin/python benchmarks/edit_real.py --dataset camvid [--out-root /tmp/cs-edit]
        [--methods rewrite-closed finetune-local ...] [--threads 2] [--fresh]
    .venv/bin/python benchmarks/edit_real.py --dataset coco
    .venv/bin/python benchmarks/edit_real.py --dataset imagenet

This script only prepares the data and prints: the experiment is `configs/edit-DATASET.yaml`
(`--config` for another), run by the library exactly as `conceptswap edit BUILD -c CONFIG`
runs it. It builds, into `--out-root` (default `/tmp/cs-edit`; the environment variable
`BUILDS` the configs refer to):

- `camvid`: `camvid-test` (the cases: ground-truth road masks, label-free) and `camvid-val`
  (only for the key statistics `C`); `camvid-styles`: `camvid-test-styles` (the same frames
  with every snow style, training and held-out) and `camvid-val`;
- `coco`: `coco-cases` (two thirds of the panoptic sample by file name) and
  `coco-covariance` (every third photo, only for `C`);
- `imagenet`: `imagenet-cases` and `imagenet-covariance` (every third photo, only for `C`),
  `cam` background masks from a classifier other than the edited one;

and links the ImageNet samples into two disjoint halves by file name: `imagenet-c` (mixed
into `C` where a config asks) and `imagenet-locality` (the labelled general locality set).
The datasets stay in `../shared/datasets` (measurement only; the script exits 0 with
"skipped: ..." where one is absent); photos are linked, never copied.

Prints the cases, the comparison `conceptswap edit` prints (pooled errors corrected per test
group at the budget point; every method's curve summary at locality 99 % / 95 %; per case and
method the clean change the validation split predicted beside the held-out one) and the run's
time per stage.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATASETS = REPO.parent / "shared" / "datasets"
SAMPLES = DATASETS / "imagenet-samples" / "images"


def build_all(configs: dict[str, dict], root: Path) -> dict[str, float]:
    """Build every data set (a finished build is found up to date); seconds per build."""
    from flows.build import build_dataset

    seconds = {}
    for name, config in configs.items():
        start = time.perf_counter()
        build_dataset(config=config, out=str(root / name))
        seconds[name] = time.perf_counter() - start
        print(f"build {name}: {seconds[name]:.1f} s  [{root / name}]")
    return seconds


def link_imagenet_halves(root: Path) -> None:
    """`imagenet-c` and `imagenet-locality`: the samples split in two by file name."""
    from edit_datasets import link

    from pipeline.cases.splits import covariance_split, list_photos

    if not SAMPLES.is_dir():
        print(f"note: no ImageNet samples at {SAMPLES}; the configs' sets from them are empty")
        return
    locality, for_c = covariance_split(list_photos(SAMPLES), 2)
    link(for_c, root / "imagenet-c")
    link(locality, root / "imagenet-locality")
    print(f"ImageNet samples: {len(for_c)} for C, {len(locality)} for general locality")


def dataset_configs(dataset: str, root: Path) -> dict[str, dict] | None:
    """The builds a dataset needs (None: its data are absent)."""
    import edit_datasets as data

    if dataset in ("camvid", "camvid-styles"):
        if not (data.CAMVID / "test").is_dir():
            return None
        cases = "camvid-test" if dataset == "camvid" else "camvid-test-styles"
        test = data.camvid_config("test") if dataset == "camvid" else data.camvid_styles_config()
        return {cases: test, "camvid-val": data.camvid_config("val")}
    if dataset == "coco":
        if not (data.COCO / "annotations" / "panoptic_train2017.json").is_file():
            return None
        return data.coco_configs(root)
    if not SAMPLES.is_dir():
        return None
    return data.imagenet_configs(SAMPLES, root)


def print_stages(results, wall_s: float) -> None:
    """Where the run's time went: selection (every grid edit + its validation) and the
    evaluation of every candidate, per method, summed over cases."""
    per_case = results.drop_duplicates(["case_id", "method", "candidate_index"])
    select = per_case.drop_duplicates(["case_id", "method"]).groupby("method")["select_s"].sum()
    evaluate = per_case.groupby("method")["eval_s"].sum()
    selected = per_case[per_case["selected"]].groupby("method")["eval_s"].sum()
    print(f"\nedit run: {wall_s:.1f} s wall")
    for method in select.index:
        print(
            f"  {method}: selection {select[method]:.1f} s, evaluation of the "
            f"{per_case[per_case['method'] == method]['candidate_index'].nunique()} candidates "
            f"evaluated {evaluate[method]:.1f} s (the selected one: {selected[method]:.1f} s)"
        )
    print(
        f"  curves cost {evaluate.sum() - selected.sum():.1f} s beyond the selected points "
        f"({evaluate.sum():.1f} s evaluating, {select.sum():.1f} s selecting)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--dataset", choices=["camvid", "camvid-styles", "coco", "imagenet"], default="camvid"
    )
    parser.add_argument("--config", type=Path, default=None, help="default configs/edit-DATASET")
    parser.add_argument("--out-root", type=Path, default=Path(tempfile.gettempdir()) / "cs-edit")
    parser.add_argument("--methods", nargs="+", default=None, help="override the config's")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--fresh", action="store_true", help="delete earlier edit results")
    parser.add_argument(
        "--single-point",
        action="store_true",
        help="evaluate only each method's selected candidate (curves: false), for the cost",
    )
    args = parser.parse_args()
    os.environ.setdefault("PREFECT_HOME", str(Path(tempfile.gettempdir()) / "prefect-edit-real"))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ["BUILDS"] = str(args.out_root)
    import pandas as pd
    import torch

    from pipeline.editing.config import EditConfig
    from pipeline.editing.runner import resolve_cases, run_edits
    from pipeline.report.edits import write_comparison
    from pipeline.store.edits_layout import clear_results

    torch.set_num_threads(args.threads)
    total = time.perf_counter()
    configs = dataset_configs(args.dataset, args.out_root)
    if configs is None:
        print(
            f"skipped: the {args.dataset} data are not in {DATASETS} (they live outside the repo)"
        )
        return 0
    link_imagenet_halves(args.out_root)
    build_s = build_all(configs, args.out_root)
    cases_build = args.out_root / next(iter(configs))
    config = EditConfig.from_yaml(args.config or REPO / "configs" / f"edit-{args.dataset}.yaml")
    config = config.overridden(methods=args.methods, curves=False if args.single_point else None)
    if args.fresh:
        clear_results(cases_build)
    cases = resolve_cases(cases_build, None, config.plan)
    for case in cases:
        sizes = ", ".join(f"{k}={len(v)}" for k, v in case.test_groups.items())
        print(
            f"case {case.case_id}: train {len(case.train)} ({case.train_style}); {sizes}; "
            f"validation {len(case.validation)} clean + {len(case.validation_cf)} transformed, "
            f"heldout {len(case.heldout)}"
        )
    start = time.perf_counter()
    folder = run_edits(cases_build, config, cases=cases, log=print)
    wall_s = time.perf_counter() - start
    write_comparison(cases_build, [c.case_id for c in cases], config.method_names)
    print((folder / "comparison.md").read_text())
    results = pd.read_parquet(folder / "results.parquet")
    results = results[results["case_id"].isin([c.case_id for c in cases])]
    pd.set_option("display.width", 220)
    print_stages(results, wall_s)
    print(
        f"\nbuilds {sum(build_s.values()):.1f} s; total {time.perf_counter() - total:.1f} s on "
        f"{torch.get_num_threads()} threads; load {os.getloadavg()[0]:.1f}"
    )
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(main())
