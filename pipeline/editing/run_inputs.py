"""What an edit run reads: its cases (planned when absent), the layer, the images for ``C``.

Split out of :mod:`pipeline.editing.runner` (which re-exports these names): resolving the cases
of a build (:func:`resolve_cases`, :class:`NoCasesError` with the reason there are none), the
default layer, and the image set of the key statistics, which must be disjoint from every
image a case uses (:func:`case_image_ids`), or come from another build.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from pipeline.cases import EditCase, build_cases, load_cases
from pipeline.editing.build_images import BuildImages, image
from pipeline.editing.predict import batched
from pipeline.error_cases import build_error_cases
from pipeline.hashing import stable_key

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
    build_dir: str | Path, cases: Sequence[EditCase | str] | None = None, plan: str = "auto"
) -> list[EditCase]:
    """``cases`` as :class:`EditCase` objects: ids are looked up in ``BUILD/cases/``; ``None``
    means every case there, planned if the folder is empty: ``plan`` ``classes``
    (:func:`build_cases`: one class, random exemplars), ``errors``
    (:func:`pipeline.error_cases.build_error_cases`: misclassified exemplars, every image
    tested, transformed validation images) or ``auto`` (classes, else errors). Raises
    :class:`NoCasesError` (saying why) when there are none."""
    if plan not in PLANS:
        raise ValueError(f"unknown case plan {plan!r}; known: {list(PLANS)}")
    if cases is None:
        found = load_cases(build_dir)
        planned = {str(case.params.get("plan", "classes")) for case in found}
        if plan != "auto" and found and planned != {plan}:
            found = []  # the folder holds another plan's cases: replan
        if not found and plan in ("auto", "classes"):
            found = build_cases(build_dir)
        if not found and plan in ("auto", "errors"):
            # a small build (the demo: 6 photos) may have fewer than 3 wrong photos per style
            found = build_error_cases(build_dir, min_train=1)
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


def case_image_ids(data: BuildImages, cases: Sequence[EditCase]) -> set[str]:
    """Every image id some case uses (its photos' counterfactuals or clean images)."""
    used: set[str] = set()
    for case in cases:
        used |= set(case.validation) | set(case.heldout)
        cf_ids = [*case.train, *case.validation_cf]
        cf_ids += [i for ids in case.test_groups.values() for i in ids]
        frame = data.counterfactuals
        used |= {str(i) for i in frame.loc[frame.index.intersection(cf_ids), "image_id"]}
    return used


def covariance_image_ids(
    data: BuildImages,
    covariance_images: int | Sequence[str] | None = None,
    exclude: set[str] | None = None,
) -> list[str]:
    """Clean images for ``C``: all of the build (``None``) except ``exclude`` (the images of
    the cases: ``C`` must not be estimated on what the edit is evaluated on; all of them when
    nothing is left, in-sample), the first ``n`` by id (an int), or the given ids. Ids are
    content hashes, so "first by id" is an unbiased sample."""
    every = sorted(str(i) for i in data.images["image_id"])
    if covariance_images is None:
        rest = [i for i in every if i not in (exclude or set())]
        return rest or every
    if isinstance(covariance_images, int):
        return every[: max(1, covariance_images)]
    ids = sorted(str(i) for i in covariance_images)
    missing = set(ids) - set(every)
    if missing:
        raise KeyError(f"{len(missing)} covariance images are not in the build")
    return ids


def _image_batches(
    data: BuildImages,
    preprocess: Callable[[list[np.ndarray]], torch.Tensor],
    ids: Sequence[str],
    batch_size: int,
) -> Iterator[torch.Tensor]:
    for chunk in batched(list(ids), batch_size):
        yield preprocess([data.rgb(image(i)) for i in chunk])


def _covariance_source(
    data: BuildImages,
    covariance_images: int | Sequence[str] | str | Path | None,
    cases: Sequence[EditCase],
) -> tuple[BuildImages, list[str], str, int]:
    """(images to read, ids, image-set id, overlap with the cases' images)."""
    if isinstance(covariance_images, str | Path) and Path(covariance_images).is_dir():
        other = BuildImages(covariance_images)
        ids = sorted(str(i) for i in other.images["image_id"])
        overlap = len(set(ids) & case_image_ids(data, cases))
        name = f"build-{Path(covariance_images).name}-{len(ids)}img-{stable_key(ids, length=12)}"
        return other, ids, name, overlap
    if isinstance(covariance_images, str | Path):
        raise FileNotFoundError(f"covariance build {covariance_images} is not a folder")
    used = case_image_ids(data, cases)
    ids = covariance_image_ids(data, covariance_images, exclude=used)
    return data, ids, f"{len(ids)}img-{stable_key(ids, length=12)}", len(set(ids) & used)
