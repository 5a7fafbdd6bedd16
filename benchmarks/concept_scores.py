"""Concept scores on a real build: TCAV cost and stability, discovery cost, agreement.

    python benchmarks/concept_scores.py [--dataset camvid|coco] [--root /tmp/cs-concepts]

Builds (once, under --root; the photos are read in place, never copied) a label-free CamVid
`val` build with ground-truth masks of five concepts, or a COCO panoptic sample build, then
with `timm:tf_efficientnet_lite0` prints:

1. TCAV, 5 concepts x 10 classes x 2 layers x 10 random runs, one seed: wall time (cold CAV
   store), then the same call again (cached);
2. stability: 5 seeds, the std over seeds of the pairs reported significant;
3. the FastCAV-style mean-difference CAV beside the linear CAV (time, score agreement);
4. discovery for 10 classes: wall time;
5. agreement of TCAV with the counterfactual texture effects (the build's audit).
Skips with a message where the dataset is absent.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

LAYERS = ["blocks.4", "blocks.5"]
DISCOVERY_LAYER = "bn2"  # the last features, after ReLU6: non-negative, and timm's head follows
CAMVID_CONCEPTS = ["road", "sky", "building", "tree", "car"]


def build(dataset: str, root: Path, frames: int) -> Path | None:
    """The benchmark's build (made once, then reused): CamVid `val`, every other of the first
    `2 · frames` frames, or the whole COCO panoptic sample."""
    from edit_datasets import CAMVID, COCO, COCO_CONCEPTS, camvid_segment, coco_config, link

    from flows.build import build_dataset
    from pipeline.config import BuildConfig

    if dataset == "camvid":
        if not (CAMVID / "val").is_dir():
            print(f"skipped: CamVid not found at {CAMVID} (it lives outside the repository)")
            return None
        chosen = sorted(p for p in (CAMVID / "val").iterdir() if p.is_file())[: 2 * frames : 2]
        folder = root / f"camvid-val-{frames}"
        link(chosen, folder)
        config = {
            "name": f"concepts-camvid-val-{frames}",
            "seed": 0,
            "shard_size": 25,
            "source": {"kind": "folder", "path": str(folder)},
            "segment": camvid_segment("val", CAMVID_CONCEPTS),
            "stylize": {"textures": ["snow"]},
            "filter": {"require_clean_correct": False},
        }
    else:
        if not (COCO / "annotations" / "panoptic_train2017.json").is_file():
            print(f"skipped: the COCO panoptic sample not found at {COCO}")
            return None
        folder = root / "coco-photos"
        link(sorted((COCO / "images").iterdir()), folder)
        config = coco_config("concepts-coco", folder, COCO_CONCEPTS, ["snow"])
    out = root / config["name"]
    if not (out / "manifest.parquet").is_file():
        started = time.perf_counter()
        build_dataset(BuildConfig.model_validate(config), out=str(out))
        print(f"built {out} in {time.perf_counter() - started:.0f} s")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=["camvid", "coco"], default="camvid")
    parser.add_argument("--root", type=Path, default=Path(tempfile.gettempdir()) / "cs-concepts")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--frames", type=int, default=40, help="CamVid frames in the build")
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--min-inputs", type=int, default=3, help="images a class needs")
    parser.add_argument("--skip-audit", action="store_true")
    args = parser.parse_args()
    build_dir = build(args.dataset, args.root, args.frames)
    if build_dir is None:
        return 0

    import shutil

    import pandas as pd
    import torch

    from pipeline.classify import create_classifier
    from pipeline.concepts import (
        DiscoverySettings,
        TcavSettings,
        agreement,
        concept_scores,
        concepts_dir,
        cross_layer_consistency,
        discover_concepts,
        discovery_table,
    )

    pd.set_option("display.width", 200)
    print(f"torch threads: {torch.get_num_threads()}")
    classifier = create_classifier("timm:tf_efficientnet_lite0", device="cpu", engine="eager")
    shutil.rmtree(concepts_dir(build_dir, classifier.id), ignore_errors=True)

    def timed(label, call):
        started = time.perf_counter()
        value = call()
        print(f"{label}: {time.perf_counter() - started:.1f} s")
        return value

    base = TcavSettings(n_random=10, min_inputs=args.min_inputs)
    scores = timed(
        "TCAV 1 seed, cold",
        lambda: concept_scores(build_dir, classifier, LAYERS, classes=args.classes, settings=base),
    )
    print(
        f"  rows {len(scores)}, classes {scores['class_index'].nunique()}, concepts "
        f"{scores['concept'].nunique()}, computed {scores.attrs['computed']}"
    )
    again = timed(
        "TCAV 1 seed, cached",
        lambda: concept_scores(build_dir, classifier, LAYERS, classes=args.classes, settings=base),
    )
    print(f"  computed {again.attrs['computed']}")
    columns = [
        "class_name",
        "concept",
        "layer",
        "score",
        "random_score",
        "p_adjusted",
        "significant",
        "cav_accuracy",
        "iou",
        "iou_whole",
        "iou_ellipse",
        "pointing",
        "pointing_centre",
    ]
    print(scores[columns].sort_values(["layer", "p_adjusted"]).head(20).to_string(index=False))
    print("cross-layer consistency:\n", cross_layer_consistency(scores).to_string(index=False))
    means = scores.groupby("layer")[
        ["cav_accuracy", "iou", "iou_whole", "iou_ellipse", "pointing", "pointing_centre"]
    ].mean()
    print("means per layer:\n", means.round(3).to_string())

    seeds = TcavSettings(n_random=10, min_inputs=args.min_inputs, seeds=tuple(range(args.seeds)))
    stable = timed(
        f"TCAV {args.seeds} seeds (seed 0 reused)",
        lambda: concept_scores(build_dir, classifier, LAYERS, classes=args.classes, settings=seeds),
    )
    significant = stable[stable["significant"]]
    spread = significant["score_std_seeds"]
    print(
        f"  significant {len(significant)}/{len(stable)}; std over seeds of significant pairs: "
        f"median {spread.median():.3f}, max {spread.max():.3f}, "
        f"share <= 0.05: {(spread <= 0.05).mean():.2f}"
    )

    fast = TcavSettings(n_random=10, min_inputs=args.min_inputs, cav="mean-difference")
    fast_scores = timed(
        "TCAV mean-difference CAV, cold",
        lambda: concept_scores(build_dir, classifier, LAYERS, classes=args.classes, settings=fast),
    )
    joined = scores.merge(
        fast_scores, on=["class_index", "concept", "layer"], suffixes=("", "_fast")
    )
    rho = joined["score"].corr(joined["score_fast"], method="spearman")
    same = (joined["significant"] == joined["significant_fast"]).mean()
    print(
        f"  linear vs mean-difference: Spearman of scores {rho:.3f}, same significance "
        f"{same:.2f}, CAV accuracy {joined['cav_accuracy'].mean():.3f} vs "
        f"{joined['cav_accuracy_fast'].mean():.3f}"
    )

    settings = DiscoverySettings(n_concepts=5, max_images=8, min_images=args.min_inputs)
    found = timed(
        "discovery 10 classes",
        lambda: discover_concepts(
            build_dir, classifier, DISCOVERY_LAYER, classes=args.classes, settings=settings
        ),
    )
    table = discovery_table(found)
    print(f"  classes {len(found)}, NMF relative error {table['reconstruction_error'].mean():.3f}")
    print(
        table.sort_values("importance", ascending=False)
        .head(8)[["class_name", "concept", "importance", "importance_share"]]
        .to_string(index=False)
    )

    if not args.skip_audit:
        from pipeline.report import run_audit
        from pipeline.report.groups import summarize
        from pipeline.report.sensitivity import load_predictions

        timed("audit", lambda: run_audit(str(build_dir), [classifier.id.split("@")[0]]))
        effects = summarize(load_predictions(build_dir, classifier.id), ("class", "concept"))
        for layer in LAYERS:
            found_agreement = agreement(scores, effects, layer=layer)
            low, high = found_agreement["low"], found_agreement["high"]
            print(
                f"agreement {layer}: rho {found_agreement['rho']:.3f} [{low:.3f}, {high:.3f}] "
                f"over {found_agreement['n_pairs']} pairs"
            )
        print(found_agreement["disagreements"].to_string(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
