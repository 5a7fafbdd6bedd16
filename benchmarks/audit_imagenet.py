"""Audit a real classifier on real photos: build, audit and report over ImageNet samples.

    .venv/bin/python benchmarks/audit_imagenet.py [--limit 100] [--classifier NAME ...]
        [--out DIR] [--max-side 256] [--batch-size 32] [--device auto] [--reuse-predictions]

Uses `../shared/datasets/imagenet-samples` (one photo per class, `<wnid>_<name>.JPEG`, outside
the repository; the script skips with a message where it is absent). `--limit` photos spread
evenly over the sorted file list are linked (never copied) into a temporary folder, built with
the default offline profile (cam segmentation of object/background, texture stylization with
the default textures) into `--out` (default: a temp folder, so no derived ImageNet pixels land
in the repository), then audited. Prints the build time, the audit's images per second (clean
+ counterfactual + control images classified, from a cold prediction cache), the cached
re-audit time, and the top concept sensitivities.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "imagenet-samples"


def link_subset(images: Path, limit: int, folder: Path) -> list[Path]:
    """Symlink `limit` photos, evenly spaced over the sorted list, into `folder` (emptied)."""
    files = sorted(p for p in images.iterdir() if p.suffix.lower() in {".jpeg", ".jpg", ".png"})
    step = max(1, len(files) // limit)
    chosen = files[::step][:limit]
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.iterdir():
        if old.is_symlink():
            old.unlink()
    links = []
    for path in chosen:
        links.append(folder / path.name)
        links[-1].symlink_to(path)
    return links


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=100, help="number of photos")
    parser.add_argument("--classifier", nargs="+", default=["timm:tf_efficientnet_lite0"])
    parser.add_argument("--out", type=Path, default=None, help="build directory")
    parser.add_argument("--max-side", type=int, default=256, help="working resolution")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--top", type=int, default=10, help="how many sensitivities to print")
    parser.add_argument(
        "--reuse-predictions", action="store_true", help="keep cached predictions (no timing)"
    )
    args = parser.parse_args()
    if not (SAMPLES / "images").is_dir():
        print(f"skipped: ImageNet samples not found at {SAMPLES} (they live outside the repo)")
        return 0
    os.environ.setdefault("PREFECT_HOME", str(Path(tempfile.gettempdir()) / "prefect-audit"))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

    import pandas as pd

    from flows.build import build_dataset
    from pipeline.classify import create_classifier
    from pipeline.report import by_concept, sensitivity_table, summarize, write_report
    from pipeline.report.sensitivity import PREDICTIONS_FILE, audit, model_dir

    tmp = Path(tempfile.gettempdir())
    out = args.out or tmp / f"conceptswap-imagenet-audit-{args.limit}"
    subset = tmp / f"imagenet-subset-{args.limit}"
    linked = link_subset(SAMPLES / "images", args.limit, subset)
    config = {
        "name": f"imagenet-audit-{args.limit}",
        "source": {"kind": "folder", "path": str(subset)},
        "image": {"max_side": args.max_side},
        "classifier": {"name": args.classifier[0], "device": args.device},
    }
    start = time.perf_counter()
    build_dataset(config=config, out=str(out))
    build_s = time.perf_counter() - start
    manifest = pd.read_parquet(out / "manifest.parquet")
    print(
        f"build: {len(linked)} photos -> {len(manifest)} counterfactuals "
        f"({int(manifest['kept'].sum())} kept) in {build_s:.1f} s  [{out}]"
    )

    all_predictions = []
    for name in args.classifier:
        classifier = create_classifier(name, device=args.device, batch_size=args.batch_size)
        cache = model_dir(out, classifier.id) / PREDICTIONS_FILE
        if not args.reuse_predictions:
            cache.unlink(missing_ok=True)
        start = time.perf_counter()
        predictions = audit(out, classifier, batch_size=args.batch_size)
        audit_s = time.perf_counter() - start
        start = time.perf_counter()
        audit(out, classifier, batch_size=args.batch_size)
        cached_s = time.perf_counter() - start
        # clean images + counterfactuals + random-region controls + one neutral per mask
        classified = 2 * len(predictions) + predictions["image_id"].nunique()
        classified += predictions["mask_id"].nunique()
        if args.reuse_predictions:
            print(f"audit {classifier.id}: {len(predictions)} rows read in {audit_s:.2f} s")
        else:
            print(
                f"audit {classifier.id} on {classifier.device}: {len(predictions)} "
                f"counterfactuals + controls, {classified} images classified in {audit_s:.1f} s"
                f" = {classified / audit_s:.1f} images/s; cached re-audit {cached_s:.2f} s"
            )
        all_predictions.append(predictions)

    start = time.perf_counter()
    html = write_report(out, all_predictions)
    print(f"report: {html} in {time.perf_counter() - start:.1f} s")
    pd.set_option("display.width", 160)
    for predictions in all_predictions:
        model = predictions["classifier_id"].iloc[0]
        concepts = by_concept(predictions)
        print(f"\n{model}: per concept (texture effect = cf - neutral, region = cf - random)")
        columns = ["concept", "n", "n_images", "clean_acc", "cf_acc", "cf_flip", "neutral_flip"]
        columns += ["ctrl_flip", "sens_texture_flip", "sens_flip", "sens_flip_low"]
        columns += ["sens_flip_high"]
        print(concepts[columns].round(3).to_string(index=False))
        textures = summarize(predictions, ("concept", "texture"))
        print(f"\n{model}: per (concept, texture), by sens_flip")
        columns = ["concept", "texture", "n", "cf_flip", "neutral_flip", "ctrl_flip"]
        columns += ["sens_texture_flip", "sens_flip", "sens_flip_low", "sens_flip_high"]
        textures = textures.sort_values("sens_flip", ascending=False)
        print(textures[columns].round(3).to_string(index=False))
        table = sensitivity_table(predictions)
        ranking = ["sens_flip_low", "sens_flip", "n"]
        top = table.sort_values(ranking, ascending=False, kind="stable").head(args.top)
        print(f"\n{model}: top {len(top)} (class, concept, texture) by sens_flip_low")
        columns = ["class_name", "concept", "texture", "n", "n_images", "cf_flip", "ctrl_flip"]
        columns += ["sens_flip", "sens_flip_low", "sens_flip_high"]
        print(top[columns].round(3).to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
