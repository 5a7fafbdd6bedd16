"""Counterfactual sensitivity of a classifier: predictions on every counterfactual and its control.

`audit` classifies, for each counterfactual row of a build, the clean image, the counterfactual
(its PNG) and its two controls rendered on the fly (`pipeline.report.controls`): the same mask
re-rendered neutrally (the concept's own pixels, texture-free) and an area-matched random mask
outside the concept with the same stylized image. Predictions are cached per (build, classifier
id) in `BUILD/report/<slug>/predictions.parquet`; a second audit with the same model (and seed)
classifies only counterfactuals it has not seen.

`pipeline.report.groups.summarize` turns predictions into per-group statistics (re-exported
here); `docs/audit.md` defines every column.
The reference class of a row is its label, or the clean prediction when the image is unlabelled
(label-free mode: accuracy columns are NaN, flip rates and probability changes remain).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline import progress
from pipeline.classify import Classifier
from pipeline.report.controls import (
    DEFAULT_NEUTRAL,
    DEFAULT_PLACEMENT,
    Neutral,
    Placement,
    control_mask,
    neutral_fill,
    overlap_fraction,
)
from pipeline.report.groups import (  # noqa: F401  (re-exported: the statistics of an audit)
    GROUP_KEYS,
    by_class,
    by_concept,
    by_concept_texture,
    by_texture,
    flip_targets,
    group_stats,
    outcomes,
    sensitivity_table,
    summarize,
)
from pipeline.store import BuildStore
from pipeline.store.manifest import write_table
from pipeline.transform import composite

PREDICTIONS_VERSION = "audit-v2"  # v2: the neutral control, clustered statistics
PREDICTIONS_FILE = "predictions.parquet"
_META_KEY = b"conceptswap.audit"

PREDICTION_COLUMNS = [
    "cf_id", "image_id", "mask_id", "stylized_id", "concept", "texture", "style_image", "blend",
    "area_frac", "kept", "label", "reference", "reference_name",
    "clean_pred", "clean_pred_name", "clean_pred_prob", "clean_ref_prob",
    "cf_pred", "cf_pred_name", "cf_pred_prob", "cf_ref_prob",
    "neutral_pred", "neutral_pred_name", "neutral_pred_prob", "neutral_ref_prob",
    "ctrl_pred", "ctrl_pred_name", "ctrl_pred_prob", "ctrl_ref_prob", "control_overlap",
    "image_path", "mask_path", "stylized_path", "cf_path", "classifier_id", "seed", "placement",
    "neutral",
]  # fmt: skip


def classifier_slug(classifier_id: str) -> str:
    """A folder name for a classifier id: `timm:tf_efficientnet_lite0@ab12` → `timm-tf_...-ab12`."""
    return re.sub(r"[^A-Za-z0-9_.]+", "-", classifier_id).strip("-.") or "classifier"


def report_root(build_dir: str | Path) -> Path:
    return Path(build_dir).resolve() / "report"


def model_dir(build_dir: str | Path, classifier_id: str) -> Path:
    return report_root(build_dir) / classifier_slug(classifier_id)


# -- inputs ------------------------------------------------------------------------------------
def build_feather(store: BuildStore) -> float:
    """The build's mask feathering (from `build.yaml`), so controls are rendered like the cfs."""
    return float((store.resolved().get("transform") or {}).get("feather", 0.0))


def counterfactual_rows(store: BuildStore) -> pd.DataFrame:
    """The counterfactual manifest joined with the paths of its image, mask and stylized image."""
    if not store.has_manifest("counterfactuals"):
        absent = store.manifest_path("counterfactuals")
        raise FileNotFoundError(f"{store.root} has no counterfactual manifest {absent}; build it")
    manifest = store.frame("counterfactuals")
    if manifest.empty:
        return manifest
    paths = {
        "images": ("image_id", "image_path"),
        "masks": ("mask_id", "mask_path"),
        "stylized": ("stylized_id", "stylized_path"),
    }
    rows = manifest.rename(columns={"path": "cf_path"})
    for kind, (key, column) in paths.items():
        table = store.frame(kind, [key, "path"])
        rows = rows.merge(table.rename(columns={"path": column}), on=key, how="left")
        missing = rows[column].isna()
        if missing.any():
            raise ValueError(
                f"{store.root}: {int(missing.sum())} counterfactuals name a {key} missing from "
                f"manifests/{kind}.parquet; rebuild the manifests"
            )
    return rows.sort_values("cf_id", kind="stable").reset_index(drop=True)


def _label(value: Any) -> int | None:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return None
    return int(value)


def _batches(frame: pd.DataFrame, size: int) -> Iterator[pd.DataFrame]:
    for start in range(0, len(frame), size):
        yield frame.iloc[start : start + size]


# -- the cache ---------------------------------------------------------------------------------
def _read_cache(path: Path, meta: dict[str, Any]) -> pd.DataFrame | None:
    if not path.is_file():
        return None
    table = pq.read_table(path)
    stored = (table.schema.metadata or {}).get(_META_KEY)
    if stored is None or json.loads(stored) != meta:
        return None
    return table.to_pandas()


def _write_cache(path: Path, frame: pd.DataFrame, meta: dict[str, Any]) -> None:
    table = pa.Table.from_pandas(frame, preserve_index=False)
    metadata = {**(table.schema.metadata or {}), _META_KEY: json.dumps(meta, sort_keys=True)}
    write_table(path, table.replace_schema_metadata(metadata))


def load_predictions(build_dir: str | Path, classifier_id: str) -> pd.DataFrame:
    """The cached predictions of one classifier on a build (as `audit` returned them)."""
    path = model_dir(build_dir, classifier_id) / PREDICTIONS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no audit of {classifier_id} in {build_dir}: {path} is missing")
    return pd.read_parquet(path)


# -- the audit ---------------------------------------------------------------------------------
def _clean_predictions(
    store: BuildStore, todo: pd.DataFrame, classifier: Classifier, batch_size: int
) -> dict[str, tuple[int, float, int, float]]:
    """image_id -> (clean prediction, its probability, reference class, reference probability)."""
    images = todo.drop_duplicates("image_id")
    clean: dict[str, tuple[int, float, int, float]] = {}
    for batch in _batches(images, batch_size):
        probs = classifier.predict_proba([store.load_image(p) for p in batch["image_path"]])
        for image_id, label, row in zip(batch["image_id"], batch["label"], probs, strict=True):
            pred = int(np.argmax(row))
            reference = _label(label)
            reference = pred if reference is None else reference
            clean[image_id] = (pred, float(row[pred]), reference, float(row[reference]))
    return clean


def _predict_rows(
    store: BuildStore,
    todo: pd.DataFrame,
    classifier: Classifier,
    meta: dict[str, Any],
    batch_size: int,
) -> pd.DataFrame:
    """Classify the clean image, counterfactual and both controls of each row of `todo`.

    Rows come sorted by image and mask, so each image and each control mask is made once. The
    neutral control does not depend on the texture, so it is classified once per (mask, blend)
    and shared by every style image of that mask.
    """
    names = list(classifier.class_names)
    seed, placement, feather = meta["seed"], meta["placement"], meta["feather"]
    neutral = meta["neutral"]
    clean = _clean_predictions(store, todo, classifier, batch_size)
    fresh: list[dict[str, Any]] = []
    current_image: str | None = None
    image = np.zeros((0, 0, 3), np.uint8)
    controls: dict[str, tuple[np.ndarray, np.ndarray, float, np.ndarray]] = {}
    neutral_probs: dict[tuple[str, float], np.ndarray] = {}
    progress.advance("audit", 0, len(todo))
    for batch in _batches(todo, batch_size):
        cf_pixels, ctrl_pixels, overlaps = [], [], []
        neutral_pixels, neutral_keys = [], []
        for row in batch.itertuples(index=False):
            if row.image_id != current_image:
                current_image, image, controls = row.image_id, store.load_image(row.image_path), {}
            if row.mask_id not in controls:
                concept = store.load_mask(row.mask_path)
                control = control_mask(concept, seed, row.mask_id, placement)
                overlap = overlap_fraction(concept, control)
                fill = neutral_fill(image, concept, neutral)
                controls[row.mask_id] = (concept, control, overlap, fill)
            concept, control, overlap, fill = controls[row.mask_id]
            stylized = store.load_image(row.stylized_path)
            if store.exists(row.cf_path):
                cf_pixels.append(store.load_image(row.cf_path))
            else:  # a missing file is re-rendered exactly as the build renders it
                cf_pixels.append(composite(image, stylized, concept, row.blend, feather))
            key = (row.mask_id, float(row.blend))
            if key not in neutral_probs and key not in neutral_keys:
                neutral_keys.append(key)
                neutral_pixels.append(composite(image, fill, concept, row.blend, feather))
            ctrl_pixels.append(composite(image, stylized, control, row.blend, feather))
            overlaps.append(overlap)
        probs = classifier.predict_proba(cf_pixels + ctrl_pixels + neutral_pixels)
        size = len(batch)
        cf_probs, ctrl_probs = probs[:size], probs[size : 2 * size]
        neutral_probs.update(zip(neutral_keys, probs[2 * size :], strict=True))
        for row, cf_row, ctrl_row, overlap in zip(
            batch.itertuples(index=False), cf_probs, ctrl_probs, overlaps, strict=True
        ):
            clean_pred, clean_prob, reference, clean_ref = clean[row.image_id]
            neutral_row = neutral_probs[(row.mask_id, float(row.blend))]
            cf_pred, ctrl_pred = int(np.argmax(cf_row)), int(np.argmax(ctrl_row))
            neutral_pred = int(np.argmax(neutral_row))
            fresh.append(
                {
                    "cf_id": row.cf_id,
                    "image_id": row.image_id,
                    "mask_id": row.mask_id,
                    "stylized_id": row.stylized_id,
                    "concept": row.concept,
                    "texture": row.texture,
                    "style_image": row.style_image,
                    "blend": float(row.blend),
                    "area_frac": float(row.area_frac),
                    "kept": bool(row.kept),
                    "label": _label(row.label),
                    "reference": reference,
                    "reference_name": names[reference],
                    "clean_pred": clean_pred,
                    "clean_pred_name": names[clean_pred],
                    "clean_pred_prob": clean_prob,
                    "clean_ref_prob": clean_ref,
                    "cf_pred": cf_pred,
                    "cf_pred_name": names[cf_pred],
                    "cf_pred_prob": float(cf_row[cf_pred]),
                    "cf_ref_prob": float(cf_row[reference]),
                    "neutral_pred": neutral_pred,
                    "neutral_pred_name": names[neutral_pred],
                    "neutral_pred_prob": float(neutral_row[neutral_pred]),
                    "neutral_ref_prob": float(neutral_row[reference]),
                    "ctrl_pred": ctrl_pred,
                    "ctrl_pred_name": names[ctrl_pred],
                    "ctrl_pred_prob": float(ctrl_row[ctrl_pred]),
                    "ctrl_ref_prob": float(ctrl_row[reference]),
                    "control_overlap": overlap,
                    "image_path": row.image_path,
                    "mask_path": row.mask_path,
                    "stylized_path": row.stylized_path,
                    "cf_path": row.cf_path,
                    "classifier_id": classifier.id,
                    "seed": seed,
                    "placement": placement,
                    "neutral": neutral,
                }
            )
        # keep the neutral predictions of the current image's masks only (rows are sorted)
        neutral_probs = {k: v for k, v in neutral_probs.items() if k[0] in controls}
        progress.advance("audit", len(batch))
    return pd.DataFrame(fresh, columns=PREDICTION_COLUMNS)


def _still_valid(cached: pd.DataFrame, rows: pd.DataFrame) -> pd.DataFrame:
    """Cached rows still in the manifest with the same label, with the manifest's `kept` verdict.

    A counterfactual's pixels are fixed by its id, but its label (hence its reference class) and
    the build's filter verdict can change when a build is re-run with other settings.
    """
    current = rows.set_index("cf_id")
    done = cached[cached["cf_id"].isin(current.index)]
    labels = current.loc[done["cf_id"], "label"]
    same = [_label(old) == _label(new) for old, new in zip(done["label"], labels, strict=True)]
    done = done[np.array(same, dtype=bool)]
    return done.assign(kept=current.loc[done["cf_id"], "kept"].astype(bool).to_numpy())


def audit(
    build_dir: str | Path,
    classifier: Classifier,
    seed: int = 0,
    batch_size: int = 32,
    placement: Placement = DEFAULT_PLACEMENT,
    neutral: Neutral = DEFAULT_NEUTRAL,
) -> pd.DataFrame:
    """Predictions of `classifier` on every counterfactual of a build and on its two controls.

    One row per counterfactual (sorted by `cf_id`; columns `PREDICTION_COLUMNS`). Images are
    streamed `batch_size` counterfactuals (plus their controls) at a time. Rows already in the
    cache for the same classifier id, seed, placement, neutral kind and feathering are not
    classified again.
    """
    store = BuildStore(build_dir)
    rows = counterfactual_rows(store)
    if rows.empty:
        return pd.DataFrame(columns=PREDICTION_COLUMNS)
    meta = {
        "version": PREDICTIONS_VERSION,
        "classifier_id": classifier.id,
        "seed": seed,
        "placement": placement,
        "neutral": neutral,
        "feather": build_feather(store),
    }
    cache_path = model_dir(store.root, classifier.id) / PREDICTIONS_FILE
    cached = _read_cache(cache_path, meta)
    if cached is None:
        cached = pd.DataFrame(columns=PREDICTION_COLUMNS)
    done = _still_valid(cached, rows)
    todo = rows[~rows["cf_id"].isin(done["cf_id"])].sort_values(["image_id", "mask_id", "cf_id"])
    if todo.empty and len(done) == len(cached) and done["kept"].equals(cached["kept"]):
        return done.reset_index(drop=True)
    fresh = _predict_rows(store, todo, classifier, meta, batch_size)
    result = pd.concat([frame for frame in (done, fresh) if len(frame)], ignore_index=True)
    result["label"] = result["label"].astype("Int64")
    result = result.sort_values("cf_id", kind="stable").reset_index(drop=True)
    _write_cache(cache_path, result, meta)
    return result
