"""Group statistics of an audit: flip rates, accuracies and sensitivities against both controls.

`summarize(predictions, by)` gives one row per group (any of class, concept, texture, ...), each
statistic with a 95 % interval from a bootstrap over the group's images
(`pipeline.report.bootstrap`), so a group of one photo re-textured ten times gets no interval
rather than a tight one. Every column is defined in `docs/audit.md`. `flip_targets` lists what
the counterfactuals turn into per (concept, texture).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pandas as pd

from pipeline.report.bootstrap import N_BOOT, ClusterBootstrap
from pipeline.report.stats import Estimate

GROUP_KEYS = ("class", "concept", "texture")
EDITS = ("cf", "neutral", "ctrl")  # the counterfactual, the neutral control, the random control
# sensitivity name -> the control it subtracts: region = random mask, texture = neutral mask
SENSITIVITIES = {"sens": "ctrl", "sens_texture": "neutral"}


def outcomes(predictions: pd.DataFrame) -> pd.DataFrame:
    """Per-row outcomes: correctness against the label, flips against the clean prediction.

    `*_correct` are NaN for unlabelled rows; `*_flip` is the prediction differing from the clean
    prediction; `*_dprob` is the reference-class probability change from the clean image.
    """
    frame = predictions.copy()
    labelled = frame["label"].notna()
    label = frame["label"].astype("Float64")
    frame["labelled"] = labelled
    frame["class"] = frame["reference"].astype(int)
    frame["class_name"] = frame["reference_name"]
    for prefix in ("clean", *EDITS):
        correct = (frame[f"{prefix}_pred"].astype("Float64") == label).astype("Float64")
        frame[f"{prefix}_correct"] = correct.where(labelled).astype(float)
    for prefix in EDITS:
        frame[f"{prefix}_flip"] = (frame[f"{prefix}_pred"] != frame["clean_pred"]).astype(float)
        frame[f"{prefix}_dprob"] = frame[f"{prefix}_ref_prob"] - frame["clean_ref_prob"]
    return frame


def _put(out: dict[str, Any], name: str, estimate: Estimate) -> None:
    out[name], out[f"{name}_low"], out[f"{name}_high"] = estimate


def group_stats(group: pd.DataFrame, seed: int = 0, n_boot: int = N_BOOT) -> dict[str, Any]:
    """All statistics of one group of rows from `outcomes` (see docs/audit.md).

    One set of image resamples serves every statistic, so concept − control differences are
    paired over the same photos.
    """
    n = len(group)
    boot = ClusterBootstrap(group["image_id"].to_numpy(), n_boot=n_boot, seed=seed)
    labelled = group["labelled"].to_numpy(bool)
    correct = {p: boot.sums(group[f"{p}_correct"], labelled) for p in ("clean", *EDITS)}
    flips = {p: boot.sums(group[f"{p}_flip"]) for p in EDITS}
    out: dict[str, Any] = {
        "n": n,
        "n_labelled": int(labelled.sum()),
        "n_images": boot.n_clusters,
    }
    _put(out, "clean_acc", boot.ratio(correct["clean"], proportion=True))
    for prefix in EDITS:
        _put(out, f"{prefix}_acc", boot.ratio(correct[prefix], proportion=True))
        drop = boot.difference(correct["clean"], correct[prefix], proportions=True)
        _put(out, f"{prefix}_acc_drop", drop)
        _put(out, f"{prefix}_flip", boot.ratio(flips[prefix], proportion=True))
        _put(out, f"{prefix}_dprob", boot.ratio(boot.sums(group[f"{prefix}_dprob"])))
    cf_prob = group["cf_ref_prob"].to_numpy(float)
    for name, control in SENSITIVITIES.items():
        # positive: the counterfactual breaks the prediction more than the control does
        _put(out, f"{name}_flip", boot.difference(flips["cf"], flips[control], proportions=True))
        drop = boot.difference(correct[control], correct["cf"], proportions=True)
        _put(out, f"{name}_acc_drop", drop)
        prob_drop = group[f"{control}_ref_prob"].to_numpy(float) - cf_prob
        _put(out, f"{name}_prob_drop", boot.ratio(boot.sums(prob_drop)))
    out["area_frac"] = float(group["area_frac"].mean()) if n else math.nan
    out["control_overlap"] = float(group["control_overlap"].mean()) if n else math.nan
    return out


def summarize(
    predictions: pd.DataFrame,
    by: Sequence[str] = GROUP_KEYS,
    kept_only: bool = False,
    seed: int = 0,
    n_boot: int = N_BOOT,
) -> pd.DataFrame:
    """One row of statistics per group of `by` (any of class, concept, texture, style_image...).

    `by=()` pools every row into one. `kept_only` restricts to counterfactuals the build kept.
    Rows are sorted by the group keys; a `class` group also carries `class_name`.
    """
    frame = outcomes(predictions)
    if kept_only:
        frame = frame[frame["kept"].astype(bool)]
    keys = list(by)
    records = []
    if keys:
        for values, group in frame.groupby(keys, sort=True, dropna=False):
            values = values if isinstance(values, tuple) else (values,)
            record = dict(zip(keys, values, strict=True))
            if "class" in keys:
                record["class_name"] = group["class_name"].iloc[0]
            records.append({**record, **group_stats(group, seed, n_boot)})
    else:
        records.append(group_stats(frame, seed, n_boot))
    return pd.DataFrame(records)


def sensitivity_table(predictions: pd.DataFrame, kept_only: bool = False) -> pd.DataFrame:
    """Statistics per (class, concept, texture): the sensitivity table of the audit report."""
    return summarize(predictions, GROUP_KEYS, kept_only)


def by_concept(predictions: pd.DataFrame, kept_only: bool = False) -> pd.DataFrame:
    """Statistics per concept, pooled over classes and textures."""
    return summarize(predictions, ("concept",), kept_only)


def by_class(predictions: pd.DataFrame, kept_only: bool = False) -> pd.DataFrame:
    """Statistics per reference class, pooled over concepts and textures."""
    return summarize(predictions, ("class",), kept_only)


def by_texture(predictions: pd.DataFrame, kept_only: bool = False) -> pd.DataFrame:
    """Statistics per texture, pooled over classes and concepts (the per-texture summary)."""
    return summarize(predictions, ("texture",), kept_only)


def by_concept_texture(predictions: pd.DataFrame, kept_only: bool = False) -> pd.DataFrame:
    """Statistics per (concept, texture), pooled over classes: the controls table."""
    return summarize(predictions, ("concept", "texture"), kept_only)


def flip_targets(predictions: pd.DataFrame, k: int = 3, kept_only: bool = False) -> pd.DataFrame:
    """The `k` classes counterfactuals most often turn into, per (concept, texture).

    `cf_share` = rows whose counterfactual top-1 is the target (and differs from the clean
    top-1) / rows of the (concept, texture); `neutral_share`, `ctrl_share` are the same share
    for the two controls, so "road × snow → snowplow 31 %" can be read against how often a
    neutral road or a random region give a snowplow. `n_images`: photos with that target.
    """
    frame = predictions[predictions["kept"].astype(bool)] if kept_only else predictions
    columns = ["concept", "texture", "rank", "target", "n", "count", "cf_share",
               "neutral_share", "ctrl_share", "n_images"]  # fmt: skip
    records = []
    for (concept, texture), group in frame.groupby(["concept", "texture"], sort=True):
        flipped = group[group["cf_pred"] != group["clean_pred"]]
        counts = flipped["cf_pred_name"].value_counts(sort=False)
        order = sorted(counts.items(), key=lambda item: (-item[1], str(item[0])))[:k]
        for rank, (target, count) in enumerate(order, start=1):
            shares = {
                p: float(
                    (
                        (group[f"{p}_pred_name"] == target)
                        & (group[f"{p}_pred"] != group["clean_pred"])
                    ).mean()
                )
                for p in ("neutral", "ctrl")
            }
            images = flipped.loc[flipped["cf_pred_name"] == target, "image_id"].nunique()
            records.append(
                [concept, texture, rank, target, len(group), int(count), count / len(group),
                 shares["neutral"], shares["ctrl"], int(images)]
            )  # fmt: skip
    return pd.DataFrame(records, columns=columns)
