"""Model-based and mask filters. Each returns a `Verdict(ok, reason)` stored in the manifest.

A counterfactual is kept when every gating verdict is ok. The reference class is the label for
labelled images and the clean prediction for unlabelled ones (label-free mode).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from pipeline.config import FilterConfig


@dataclass(frozen=True)
class Verdict:
    ok: bool
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def reference_class(label: int | None, clean_pred: int) -> int:
    return clean_pred if label is None else label


def clean_correct(label: int | None, clean_pred: int, names: list[str]) -> Verdict:
    if label is None:
        return Verdict(True, f"unlabelled: clean prediction {names[clean_pred]} is the reference")
    if clean_pred == label:
        return Verdict(True, f"clean image classified correctly as {names[label]}")
    return Verdict(
        False, f"clean image misclassified as {names[clean_pred]} (label {names[label]})"
    )


def concept_valid(concept: str, reference: int, names: list[str]) -> Verdict:
    """Whether re-texturing `concept` keeps the reference class true (the validity table).

    The table covers ImageNet-1k; for a classifier with other classes only `object` (always
    invalid) and `background` (always valid) are judged, other concepts pass.
    """
    if len(names) != 1000 and concept not in ("object", "background"):
        return Verdict(True, f"no validity table for this label space; {concept} assumed valid")
    from pipeline.segment.validity import is_valid

    ok, reason = is_valid(concept, reference if len(names) == 1000 else 0)
    return Verdict(ok, reason)


def mask_quality(kept: bool, reject_reason: str | None) -> Verdict:
    return (
        Verdict(True, "mask passed the quality rules")
        if kept
        else Verdict(False, reject_reason or "")
    )


def prediction_changed(reference: int, cf_pred: int, names: list[str]) -> Verdict:
    if cf_pred != reference:
        return Verdict(True, f"prediction changed from {names[reference]} to {names[cf_pred]}")
    return Verdict(False, f"prediction unchanged ({names[reference]})")


def judge(
    config: FilterConfig,
    *,
    concept: str,
    label: int | None,
    clean_pred: int,
    cf_pred: int,
    mask_kept: bool,
    mask_reason: str | None,
    names: list[str],
) -> tuple[dict[str, dict[str, Any]], bool]:
    """All verdicts for one counterfactual and whether it is kept."""
    reference = reference_class(label, clean_pred)
    verdicts = {
        "clean_correct": clean_correct(label, clean_pred, names),
        "concept_valid": concept_valid(concept, reference, names),
        "mask_quality": mask_quality(mask_kept, mask_reason),
        "changed": prediction_changed(reference, cf_pred, names),
    }
    gating = ["concept_valid", "mask_quality"]
    if config.require_clean_correct:
        gating.append("clean_correct")
    if config.require_change:
        gating.append("changed")
    kept = all(verdicts[name].ok for name in gating)
    return {name: verdict.to_dict() for name, verdict in verdicts.items()}, kept
