"""Where to edit on CamVid: train the locator, edit with it beside the baselines, measure its masks.

    .venv/bin/python benchmarks/where_to_edit.py [--out-root /tmp/cs-edit] [--threads 1]
        [--retrain | --skip-train] [--skip-edits] [--skip-specificity] [--fresh]

This script only prepares the data and prints; the experiment is two configs run by the
library exactly as the CLI runs them:

1. builds, into `--out-root` (default `/tmp/cs-edit`; the environment variable `BUILDS` the
   configs refer to), what `benchmarks/edit_real.py --dataset camvid` builds (`camvid-test`,
   the cases; `camvid-val`, for `C`; the ImageNet halves `imagenet-c` and `imagenet-locality`)
   and the locator's builds: `camvid-locator`, the `val` frames with their road re-textured by
   the road pairs' textures of `configs/locator-camvid.yaml` (never snow, the cases' texture),
   and `coco-locator`, the COCO panoptic sample with its other pairs (grass, sky, tree);
2. meta-trains the locator of `configs/locator-camvid.yaml` (`conceptswap train-locator`'s
   function), unless its artifact exists (`--retrain` trains again, `--skip-train` never
   trains), and prints its wall time and final losses;
3. runs `configs/edit-camvid-where.yaml` on `camvid-test` (`conceptswap edit`'s function:
   results with the same run key are reused, `--fresh` deletes every edit result of the build,
   also other configs'), prints the comparison and where-to-edit's seconds per edit;
4. prints the specificity of the locator's masks at sparsity 0.95 (`--sparsity`): mean IoU of
   masks of exemplar sets within a (concept, texture) pair minus across pairs, on frames its
   episodes of the pair never used (the road pairs: the COCO pairs' episodes drew every photo)
   and on the unseen pair road/snow of `camvid-test`, beside
   the gradient and random controls (`pipeline.editing.locate.specificity`).

The CamVid and ImageNet samples stay in `../shared/datasets` (the script exits 0 with
"skipped: ..." where CamVid is absent); photos are linked, never copied.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

    from pipeline.editing.locate.specificity import SpecificityReport

REPO = Path(__file__).resolve().parents[1]
LOCATOR_CONFIG = REPO / "configs" / "locator-camvid.yaml"
EDIT_CONFIG = REPO / "configs" / "edit-camvid-where.yaml"
TRAIN_TARGET_S = 1800.0  # wall seconds of meta-training on 2 CPU cores
EDIT_TARGET_S = 10.0  # seconds per where-to-edit edit on cached inputs
GAP_TARGET = 0.2  # mean IoU within pairs minus across pairs


def prepare_builds(root: Path, pairs: list[tuple[str, str]]) -> bool:
    """Build (or find up to date) every data set the configs read; False: CamVid is absent.

    The locator's road pairs come from `camvid-locator`, its other pairs from `coco-locator`
    (built only when some pair needs it and the COCO sample is present)."""
    import edit_datasets as data
    from edit_real import build_all, dataset_configs, link_imagenet_halves

    configs = dataset_configs("camvid", root)
    if configs is None:
        return False
    road = sorted({texture for concept, texture in pairs if concept == "road"})
    configs["camvid-locator"] = data.camvid_locator_config(road)
    others = [(concept, texture) for concept, texture in pairs if concept != "road"]
    if others and (data.COCO / "images").is_dir():
        configs["coco-locator"] = data.coco_locator_config(
            sorted({c for c, _ in others}), sorted({t for _, t in others})
        )
    link_imagenet_halves(root)
    build_all(configs, root)
    return True


def print_locator(folder: Path, wall_s: float | None) -> None:
    """The artifact's provenance and final losses (its record), and this run's wall time."""
    from pipeline.editing.locate.artifact import RECORD_FILE

    record = json.loads((folder / RECORD_FILE).read_text(encoding="utf-8"))
    losses = ", ".join(f"{k} {v:.4g}" for k, v in sorted(record["final_losses"].items()))
    print(f"locator {folder}: pairs {record['pairs']}, test pairs {record['test_pairs']}")
    print(
        f"  {record['steps']} steps in {record.get('train_s', float('nan')):.0f} s; final {losses}"
    )
    if wall_s is not None:
        print(
            f"  training wall time {wall_s:.0f} s (episode bank + meta-training; "
            f"target <= {TRAIN_TARGET_S:.0f} s)"
        )


def train_or_reuse(config_path: Path, retrain: bool, skip: bool) -> Path | None:
    """The locator's folder: trained by the library unless it exists; None if skipped."""
    from pipeline.editing.locate.artifact import RECORD_FILE
    from pipeline.editing.locate.config import LocatorConfig
    from pipeline.editing.locate.train import train_locator

    config = LocatorConfig.from_yaml(config_path)
    folder = Path(config.out)
    exists = (folder / RECORD_FILE).is_file()
    if exists and not retrain:
        record = json.loads((folder / RECORD_FILE).read_text(encoding="utf-8"))
        if record.get("config") != json.loads(config.model_dump_json()):
            print(f"note: {folder} was trained from another config; --retrain trains this one")
        print_locator(folder, None)
        return folder
    if skip:
        print(f"training skipped (--skip-train): no locator at {folder}")
        return None
    start = time.perf_counter()
    folder = train_locator(config, log=lambda line: print(f"  {line}"))
    print_locator(folder, time.perf_counter() - start)
    return folder


def print_edit_times(results: pd.DataFrame, methods: list[str]) -> None:
    """Seconds per edit (one grid candidate's solve on the cached inputs) of the where-to-edit
    methods, over every case and candidate, from the results' ``edit_s``."""
    solves = results.drop_duplicates(["case_id", "method", "candidate_index"])
    print(f"\nseconds per edit (target <= {EDIT_TARGET_S:.0f} s):")
    for method in methods:
        part = solves[solves["method"] == method]["edit_s"].dropna()
        if part.empty:
            continue
        print(
            f"  {method}: median {part.median():.2f} s, max {part.max():.2f} s over "
            f"{len(part)} edits"
        )


def run_edit_comparison(root: Path, config_path: Path, fresh: bool) -> None:
    """The edit experiment on `camvid-test`, its comparison and the seconds per edit."""
    import pandas as pd

    from pipeline.editing.config import EditConfig
    from pipeline.editing.runner import resolve_cases, run_edits
    from pipeline.report.edits import write_comparison
    from pipeline.store.edits_layout import clear_results

    build = root / "camvid-test"
    config = EditConfig.from_yaml(config_path)
    if fresh:
        print(f"--fresh: removed {clear_results(build)} earlier edit results of {build}")
    cases = resolve_cases(build, None, config.plan)
    start = time.perf_counter()
    folder = run_edits(build, config, cases=cases, log=print)
    print(f"edit run: {time.perf_counter() - start:.0f} s wall, {len(cases)} cases")
    write_comparison(build, [c.case_id for c in cases], config.method_names)
    print((folder / "comparison.md").read_text())
    results = pd.read_parquet(folder / "results.parquet")
    results = results[results["case_id"].isin([c.case_id for c in cases])]
    print_edit_times(results, [m for m in config.method_names if m.startswith("where-to-edit")])


def print_specificity(
    report: SpecificityReport, train_pairs: list[tuple[str, str]], test_pairs: list[tuple[str, str]]
) -> None:
    """Within-pair minus across-pair mask IoU per mask kind, over every pair (the test pairs
    unseen in training) and over the training pairs' held-out frames alone."""
    unseen = ", ".join(f"{c}/{t}" for c, t in test_pairs)
    counts = ", ".join(f"{c}/{t} {n}" for (c, t), n in report.sets_per_pair().items())
    size = len(report.sets[0].items) if report.sets else 0
    print(f"\nmask specificity at sparsity {report.sparsity} ({size} exemplars per set; {counts})")
    print(f"  {'masks':<10}{'pairs':<34}{'within':>8}{'across':>8}{'gap':>8}")
    for kind in report.masks:
        for label, pairs in (
            (f"all ({unseen} unseen)", None),
            ("training, held-out frames", train_pairs),
        ):
            result = report.specificity(kind, pairs)
            print(
                f"  {kind:<10}{label:<34}{result.same:>8.3f}{result.different:>8.3f}"
                f"{result.gap:>8.3f}"
            )
    print(f"  target: locator gap >= {GAP_TARGET} (all pairs)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-root", type=Path, default=Path(tempfile.gettempdir()) / "cs-edit")
    parser.add_argument("--locator-config", type=Path, default=LOCATOR_CONFIG)
    parser.add_argument("--edit-config", type=Path, default=EDIT_CONFIG)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (default 1: on 2 shared cores, a meta-training step and an edit of "
        "the locator's small tensors took 10-15x longer with 2 threads)",
    )
    training = parser.add_mutually_exclusive_group()
    training.add_argument("--retrain", action="store_true", help="train even if it exists")
    training.add_argument("--skip-train", action="store_true", help="never train the locator")
    parser.add_argument("--skip-edits", action="store_true")
    parser.add_argument("--skip-specificity", action="store_true")
    parser.add_argument("--fresh", action="store_true", help="delete earlier edit results")
    parser.add_argument("--sparsity", type=float, default=0.95)
    parser.add_argument("--sets", type=int, default=8, help="exemplar sets per pair")
    args = parser.parse_args()
    os.environ.setdefault("PREFECT_HOME", str(Path(tempfile.gettempdir()) / "prefect-edit-real"))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ["BUILDS"] = str(args.out_root)
    import torch

    from pipeline.editing.locate.config import LocatorConfig
    from pipeline.editing.locate.specificity import locator_specificity

    torch.set_num_threads(args.threads)
    total = time.perf_counter()
    locator_config = LocatorConfig.from_yaml(args.locator_config)
    train_pairs = list(locator_config.pairs or [])
    if not train_pairs:
        print(f"{args.locator_config} names no `pairs`: the textures of camvid-locator")
        return 2
    if not prepare_builds(args.out_root, train_pairs):
        print("skipped: the CamVid data are not in ../shared/datasets (they live outside the repo)")
        return 0
    locator = train_or_reuse(args.locator_config, args.retrain, args.skip_train)
    if locator is None:
        print("skipped: edits and specificity need a trained locator")
        return 0
    if not args.skip_edits:
        run_edit_comparison(args.out_root, args.edit_config, args.fresh)
    if not args.skip_specificity:
        # the CamVid pairs: the `val` frames the episodes left out and road/snow of the test
        # frames; the COCO pairs have none left out (their episodes drew every photo)
        road = [pair for pair in train_pairs if pair[0] == "road"]
        print(
            f"\nspecificity over the road pairs; the {len(train_pairs) - len(road)} COCO pairs "
            "have no photo their training episodes did not use"
        )
        report = locator_specificity(
            locator,
            [args.out_root / "camvid-locator", args.out_root / "camvid-test"],
            [*road, *locator_config.test_pairs],
            sparsity=args.sparsity,
            n_sets=args.sets,
            log=lambda line: print(f"  {line}"),
        )
        print_specificity(report, road, list(locator_config.test_pairs))
    print(
        f"\ntotal {time.perf_counter() - total:.0f} s on {torch.get_num_threads()} threads; "
        f"load {os.getloadavg()[0]:.1f}"
    )
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(main())
