"""What an edit run reads: its cases (planned when absent) and the layer.

Split out of :mod:`pipeline.editing.runner` (which re-exports these names): resolving the cases
of a build (:func:`resolve_cases`, :class:`NoCasesError` with the reason there are none) and
the default layer. The image sets of the key statistics are :mod:`pipeline.editing.key_sources`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from torch import nn

from pipeline.cases import ClassPlan, EditCase, ErrorPlan, Plan, load_cases, parse_plan
from pipeline.cases import plan_cases as plan_build_cases

# plan names that need no settings (a `groups` plan needs its groups: pass it as a plan)
PLANS = ("auto", "classes", "errors")


class NoCasesError(ValueError):
    """A build without any edit case: the message says why (what the planners needed)."""


def _no_cases_reason(build_dir: Path) -> str:
    from pipeline.store import BuildStore

    try:
        manifest = BuildStore(build_dir).frame("counterfactuals")
    except (OSError, KeyError, ValueError):
        return f"{build_dir} has no counterfactual manifest (run `conceptswap build` first)"
    if manifest.empty:
        return f"{build_dir} has no counterfactuals"
    kept = manifest[manifest["kept"].astype(bool)]
    if kept.empty:
        return f"none of the {len(manifest)} counterfactuals of {build_dir} passed the filters"
    pred = pd.to_numeric(kept["cf_pred"], errors="coerce")
    ref = kept["label"].where(kept["label"].notna(), kept["clean_pred"]).astype(float)
    unknown = int(ref.isna().sum())
    if unknown == len(kept):
        return (
            f"no edit case in {build_dir}: none of the {len(kept)} kept counterfactuals has a "
            "reference (no label and no clean prediction: build with a classifier)"
        )
    wrong = kept[pred.notna() & ref.notna() & (pred != ref)]
    most = int(wrong.groupby("style_image")["image_id"].nunique().max()) if len(wrong) else 0
    return (
        f"no edit case in {build_dir}: a case needs 3 photos of one class in one style image "
        f"(plan 'classes') or photos whose counterfactual in one style image the classifier "
        f"gets wrong (plan 'errors': 3, or as many as one style image has); {len(kept)} "
        f"counterfactuals are kept, {len(wrong)} of them misclassified, at most {most} wrong "
        "photos share a style image"
    )


# -- inputs ------------------------------------------------------------------------------------
def resolve_cases(
    build_dir: str | Path,
    cases: Sequence[EditCase | str] | None = None,
    plan: str | Plan | Mapping[str, Any] = "auto",
) -> list[EditCase]:
    """``cases`` as :class:`EditCase` objects: ids are looked up in ``BUILD/cases/``.

    Args:
        build_dir: the build.
        cases: cases or case ids; ``None``: every case in ``BUILD/cases/``, planned with
            :func:`pipeline.cases.plan_cases` when the folder is empty or holds another plan
            kind's cases.
        plan: a plan (object or mapping: the cases are planned with it, replacing the
            folder's); a plan kind with its defaults (``classes``: one
            class, random exemplars; ``errors``: misclassified exemplars, every image tested,
            transformed validation images, as few as one exemplar where a small build has no
            more); or ``auto``: classes, else errors.

    Raises:
        NoCasesError: there are none (the message says why).
    """
    if isinstance(plan, str) and plan not in PLANS:
        raise ValueError(f"unknown case plan {plan!r}; known: {list(PLANS)}")
    if cases is None and not isinstance(plan, str):
        # a plan with its settings: planned afresh (deterministic; cheap beside the edits)
        found = plan_build_cases(build_dir, parse_plan(plan))
        if not found:
            raise NoCasesError(_no_cases_reason(Path(build_dir)))
        return found
    if cases is None:
        found = load_cases(build_dir)
        kind = plan if isinstance(plan, str) else parse_plan(plan).kind
        planned = {str(case.params.get("plan", "classes")) for case in found}
        if kind != "auto" and found and planned != {kind}:
            found = []  # the folder holds another plan's cases: replan
        if not found:
            for candidate in _plans_to_try(plan):
                found = plan_build_cases(build_dir, candidate)
                if found:
                    break
        if not found:
            raise NoCasesError(_no_cases_reason(Path(build_dir)))
        return found
    stored: dict[str, EditCase] | None = None
    out = []
    for case in cases:
        if isinstance(case, EditCase):
            out.append(case)
            continue
        if stored is None:
            stored = {c.case_id: c for c in load_cases(build_dir)}
        if case not in stored:
            raise KeyError(f"no case {case!r} in {Path(build_dir) / 'cases'}")
        out.append(stored[case])
    return out


def _plans_to_try(plan: str | Plan | Mapping[str, Any]) -> list[Plan]:
    """The plans ``resolve_cases`` tries in turn for ``plan``."""
    # a small build (the demo: 6 photos) may have fewer than 3 wrong photos per style
    lenient_errors = ErrorPlan(min_train=1)
    if plan == "auto":
        return [ClassPlan(), lenient_errors]
    if plan == "classes":
        return [ClassPlan()]
    if plan == "errors":
        return [lenient_errors]
    return [parse_plan(plan)]


def default_layer(model: nn.Module) -> str:
    """A late dense layer to edit when none is named: the second-to-last dense convolution
    (EfficientNet-Lite0: ``blocks.6.0.conv_pwl``, the last block's 1x1 projection, with
    ``conv_head`` after it), else the last transformer MLP output (``blocks.<last>.mlp.fc2``),
    else the second-to-last linear layer."""
    convs = [
        name
        for name, module in model.named_modules()
        if isinstance(module, nn.Conv2d) and module.groups == 1
    ]
    if len(convs) >= 2:
        return convs[-2]
    linears = [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    mlp = [name for name in linears if name.endswith("mlp.fc2")]
    if mlp:
        return mlp[-1]
    if len(linears) >= 2:
        return linears[-2]
    raise ValueError("no layer to edit found; name one")
