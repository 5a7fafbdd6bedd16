"""Same config, another engine: are the manifests equal up to the stored probabilities?

    nice -n 10 .venv/bin/python benchmarks/engine_manifests.py [--engines eager torch onnxruntime]
        [--out-root /tmp/cs-engines]

Builds the offline demo once per `classifier.engine` (each in its own folder, the same seed),
then compares every `manifest.parquet` with the first one, rows sorted by `cf_id`: the ids, the
masks, the predictions, the verdicts and `kept` must be equal; the stored probabilities
(`clean_true_prob`, `cf_true_prob` and the top-k lists) may differ by at most 1e-4 (the
engines' agreed tolerance).
Prints, per engine, the engine `auto` would record, the row count, the columns that differ
beyond the tolerance (none expected), the largest probability difference and whether the top-k
classes are the same in the same order.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

TOLERANCE = 1e-4
PROBABILITIES = ("clean_true_prob", "cf_true_prob")
TOPK = ("clean_topk", "cf_topk")


def build(engine: str, root: Path) -> pd.DataFrame:
    from flows.build import build_dataset
    from pipeline.config import BuildConfig

    config = BuildConfig.demo().model_dump()
    config["classifier"]["engine"] = engine
    out = root / engine
    build_dataset(config=BuildConfig.model_validate(config), out=str(out))
    frame = pd.read_parquet(out / "manifest.parquet")
    return frame.sort_values("cf_id").reset_index(drop=True)


def topk(value: object) -> list[list[float]]:
    return json.loads(value) if isinstance(value, str) else [list(v) for v in value]


def compare(reference: pd.DataFrame, other: pd.DataFrame) -> tuple[list[str], float, bool]:
    """Columns unequal beyond the tolerance, the largest probability difference, same top-k."""
    if len(reference) != len(other) or list(reference.cf_id) != list(other.cf_id):
        return ["cf_id"], float("nan"), False
    unequal, largest, same_classes = [], 0.0, True
    for column in reference.columns:
        if column in PROBABILITIES:
            a = reference[column].astype(float).to_numpy()
            b = other[column].astype(float).to_numpy()
            both = ~(np.isnan(a) | np.isnan(b))
            if not np.array_equal(np.isnan(a), np.isnan(b)):
                unequal.append(column)
            diff = float(np.abs(a[both] - b[both]).max()) if both.any() else 0.0
            largest = max(largest, diff)
        elif column in TOPK:
            for x, y in zip(reference[column], other[column], strict=True):
                x, y = topk(x), topk(y)
                same_classes &= [c for c, _ in x] == [c for c, _ in y]
                if len(x) == len(y):
                    diffs = [abs(p - q) for (_, p), (_, q) in zip(x, y, strict=True)]
                    largest = max([largest, *diffs])
        elif not reference[column].astype(str).equals(other[column].astype(str)):
            unequal.append(column)
    if largest > TOLERANCE:
        unequal.append(f"probabilities ({largest:.1e} > {TOLERANCE:.0e})")
    return unequal, largest, same_classes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engines", nargs="+", default=["eager", "torch", "onnxruntime"])
    parser.add_argument("--out-root", type=Path, default=Path("/tmp/cs-engines"))
    args = parser.parse_args()
    from pipeline.store import BuildStore

    frames = {engine: build(engine, args.out_root) for engine in args.engines}
    first = args.engines[0]
    failed = False
    for engine, frame in frames.items():
        resolved = BuildStore(args.out_root / engine).resolved().get("resolved") or {}
        chosen = resolved.get("classifier_engine") or {}
        unequal, largest, same = compare(frames[first], frame)
        failed |= bool(unequal)
        print(
            f"{engine:<12} ran {chosen.get('engine', 'torch')}@{chosen.get('batch_size', 32)}: "
            f"{len(frame)} rows; vs {first}: unequal {unequal or 'none'}, largest probability "
            f"difference {largest:.1e}, same top-k classes in order: {same}"
        )
    return int(failed)


if __name__ == "__main__":
    raise SystemExit(main())
