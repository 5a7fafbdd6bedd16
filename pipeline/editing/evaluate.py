"""From an edit case and a build to tensors, predictions and the metrics of design §6.

* :class:`BuildImages` reads the build's manifests once and loads one item at a time: a
  counterfactual (``Item("cf", cf_id)``) or a clean image (``Item("image", image_id)``), its
  concept mask, and its *reference label* (the image's own label; the build classifier's clean
  prediction for an unlabelled image).
* :func:`mask_transform` replays the geometric part of the classifier's preprocessing (resize,
  centre crop, pad) on masks with nearest-neighbour interpolation, so a mask stays on the pixels
  it marks; :func:`case_exemplars` builds :class:`EditExemplars` from a case's train split.
* :class:`Predictor` classifies items in batches, streaming them from disk; with a
  :class:`~pipeline.editing.split.SplitModel` the part of the network before the edited layer
  runs once per image, and every later evaluation of an edit costs only the rest.
* :func:`case_metrics` is a pure function of pre- and post-edit predictions: per test group the
  % errors corrected (``E`` counts misclassified counterfactuals whose clean image the pre-edit
  model classifies correctly; both counts over that same set), the generalisation rate, the
  locality rate; on the exemplars the success rate; on the case's ``heldout`` clean images the
  clean accuracy and its drop. :func:`evaluate_case` ties it together for one model and edit.

"Correct" always means top-1 equals the item's own reference label, also for cases whose target
is a group of classes (see :mod:`pipeline.editing.groups`).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch import Tensor, nn

from pipeline.cases import TEST_GROUPS, EditCase
from pipeline.editing import metrics
from pipeline.editing.delta import EditResult, applied
from pipeline.editing.exemplars import EditExemplars
from pipeline.editing.layers import model_device
from pipeline.editing.split import SplitModel
from pipeline.store import BuildStore

EXEMPLARS = "exemplars"
CLEAN = "clean"
GROUPS = (EXEMPLARS, *TEST_GROUPS, CLEAN)  # row order of the results table


class Item(NamedTuple):
    """One image of a build: ``kind`` is ``cf`` (counterfactual) or ``image`` (clean)."""

    kind: str
    id: str


def cf(cf_id: str) -> Item:
    return Item("cf", cf_id)


def image(image_id: str) -> Item:
    return Item("image", image_id)


# -- masks through the classifier's geometry ---------------------------------------------------
_PHOTOMETRIC = {
    "ToTensor",
    "MaybeToTensor",
    "PILToTensor",
    "MaybePILToTensor",
    "ToNumpy",
    "Normalize",
    "NormalizeTensor",
    "ConvertImageDtype",
    "ToDtype",
    "ToImage",
    "ToPureTensor",
    "Grayscale",
    "ColorJitter",
}


def _geometric_steps(transform: Any) -> list[Callable[[Image.Image], Image.Image]] | None:
    """The transform's geometric steps re-targeted to masks, or None if one is unknown."""
    from torchvision import transforms as T
    from torchvision.transforms import InterpolationMode

    parts = list(getattr(transform, "transforms", [transform]))
    steps: list[Callable[[Image.Image], Image.Image]] = []
    for part in parts:
        name = type(part).__name__
        if name in _PHOTOMETRIC:
            continue
        if isinstance(part, T.Resize):
            steps.append(
                T.Resize(
                    part.size,
                    interpolation=InterpolationMode.NEAREST,
                    max_size=part.max_size,
                    antialias=True,  # no effect with nearest; avoids a warning
                )
            )
        elif isinstance(part, T.CenterCrop):
            steps.append(part)
        elif isinstance(part, T.Pad):
            steps.append(T.Pad(part.padding, fill=0, padding_mode=part.padding_mode))
        elif name in {"ResizeKeepRatio", "CenterCropOrPad"}:  # timm's eval-time geometry
            twin = copy.copy(part)
            if hasattr(twin, "interpolation"):
                twin.interpolation = InterpolationMode.NEAREST
            if hasattr(twin, "fill"):
                twin.fill = 0
            steps.append(twin)
        else:
            return None
    return steps


def mask_transform(classifier: Any) -> Callable[[np.ndarray], Tensor]:
    """A function: boolean ``(H, W)`` mask of an image → ``(1, h, w)`` float mask in the
    geometry of ``classifier.preprocess`` applied to that image.

    Exact (nearest neighbour) when the classifier exposes a torchvision ``transform`` made of
    known steps (timm's eval transform: resize shorter side, centre crop); otherwise the mask is
    pushed through ``preprocess`` itself as a black/white RGB image, un-normalised with a black
    and a white reference image and thresholded at 0.5 (the resampling kernel blurs the edge by
    a pixel or so).
    """
    steps = _geometric_steps(getattr(classifier, "transform", None))
    if steps is not None and getattr(classifier, "transform", None) is not None:

        def exact(mask: np.ndarray) -> Tensor:
            pil = Image.fromarray(np.asarray(mask, dtype=bool).astype(np.uint8) * 255, "L")
            for step in steps:
                pil = step(pil)
            return torch.from_numpy(np.asarray(pil) > 127).float()[None]

        return exact

    def through_preprocess(mask: np.ndarray) -> Tensor:
        mask = np.asarray(mask, dtype=bool)
        rgb = np.repeat(mask[..., None].astype(np.uint8) * 255, 3, axis=2)
        black, white = np.zeros_like(rgb), np.full_like(rgb, 255)
        out, low, high = classifier.preprocess([rgb, black, white])
        soft = ((out - low) / (high - low).clamp_min(1e-12)).mean(0)
        return (soft > 0.5).float()[None]

    return through_preprocess


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of a boolean mask to ``(height, width)``."""
    mask = np.asarray(mask, dtype=bool)
    if mask.shape == tuple(size):
        return mask
    pil = Image.fromarray(mask.astype(np.uint8) * 255, "L")
    return np.asarray(pil.resize((size[1], size[0]), Image.Resampling.NEAREST)) > 127


# -- the build's images ------------------------------------------------------------------------
def _optional_int(value: Any) -> int | None:
    if value is None:
        return None
    try:
        if math.isnan(float(value)):
            return None
    except (TypeError, ValueError):
        return None
    return int(value)


class BuildImages:
    """Read access to a build's counterfactuals, clean images and masks, by item."""

    def __init__(self, build_dir: str | Path) -> None:
        self.store = BuildStore(build_dir)
        self.counterfactuals = pd.read_parquet(
            self.store.manifest_path("counterfactuals")
        ).set_index("cf_id", drop=False)
        self.images = pd.read_parquet(self.store.manifest_path("images")).set_index(
            "image_id", drop=False
        )
        masks_path = self.store.manifest_path("masks")
        self.masks = (
            pd.read_parquet(masks_path).set_index("mask_id", drop=False)
            if masks_path.is_file()
            else pd.DataFrame(columns=["mask_id", "path"]).set_index("mask_id", drop=False)
        )

    @property
    def root(self) -> Path:
        return self.store.root

    def clean_of(self, item: Item) -> Item:
        """The clean image of a counterfactual (an image item is its own clean image)."""
        if item.kind == "image":
            return item
        return image(str(self.counterfactuals.at[item.id, "image_id"]))

    def reference(self, item: Item) -> int | None:
        """The label a correct prediction must equal; None for an unlabelled clean image."""
        if item.kind == "cf":
            row = self.counterfactuals.loc[item.id]
            label = _optional_int(row["label"])
            return label if label is not None else _optional_int(row["clean_pred"])
        return _optional_int(self.images.at[item.id, "label"])

    def rgb(self, item: Item) -> np.ndarray:
        if item.kind == "cf":
            return self.store.load_image(str(self.counterfactuals.at[item.id, "path"]))
        if item.kind == "image":
            return self.store.load_image(str(self.images.at[item.id, "path"]))
        raise ValueError(f"unknown item kind {item.kind!r}")

    def mask(self, cf_id: str, size: tuple[int, int] | None = None) -> np.ndarray:
        """The concept mask of a counterfactual, at ``size`` (default: its clean image's)."""
        row = self.counterfactuals.loc[cf_id]
        mask = self.store.load_mask(str(self.masks.at[row["mask_id"], "path"]))
        if size is None:
            image_row = self.images.loc[row["image_id"]]
            size = (int(image_row["height"]), int(image_row["width"]))
        return resize_mask(mask, size)


# -- batched prediction ------------------------------------------------------------------------
def batched(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class Predictor:
    """Logits of build items under ``model`` (with whatever edit is applied to it right now).

    Items are loaded and preprocessed ``batch_size`` at a time and never kept. With ``split``
    (a :class:`SplitModel` of the same model), the frontier of every row is cached by its
    pixel content and an item seen before is not even loaded again.
    """

    def __init__(
        self,
        model: nn.Module,
        preprocess: Callable[[list[np.ndarray]], Tensor],
        data: BuildImages,
        split: SplitModel | None = None,
        batch_size: int = 32,
    ) -> None:
        self.model = model
        self.preprocess = preprocess
        self.data = data
        self.split = split
        self.batch_size = batch_size
        self._digests: dict[Item, str] = {}
        self.loaded = 0  # items read from disk (for tests and benchmarks)

    def load(self, items: Sequence[Item]) -> Tensor:
        """Preprocessed batch of ``items`` (read from the build)."""
        self.loaded += len(items)
        return self.preprocess([self.data.rgb(item) for item in items])

    def _batch_logits(self, items: Sequence[Item]) -> Tensor:
        device = model_device(self.model)
        split = self.split
        if split is not None and all(item in self._digests for item in items):
            keys = split.cache_keys([self._digests[item] for item in items])
            frontier = split.cached_frontier(keys) if keys is not None else None
            if frontier is not None:
                return split.run_suffix(tuple(v.to(device) for v in frontier)).float().cpu()
        images = self.load(items).to(device)
        if split is None:
            return self.model(images).float().cpu()
        digests = split.row_digests(images)
        self._digests.update(zip(items, digests, strict=True))
        keys = split.cache_keys(digests)
        return split.run_suffix(split.run_prefix(images, keys)).float().cpu()

    @torch.no_grad()
    def logits(self, items: Sequence[Item]) -> Tensor:
        """``(N, K)`` float32 logits on the CPU, in the order of ``items``."""
        items = list(items)
        if not items:
            return torch.zeros(0, 0)
        was_training = self.model.training
        self.model.eval()
        try:
            return torch.cat(
                [self._batch_logits(batch) for batch in batched(items, self.batch_size)]
            )
        finally:
            self.model.train(was_training)

    def predict(self, items: Sequence[Item]) -> dict[Item, int]:
        """Top-1 class of each distinct item."""
        unique = list(dict.fromkeys(items))
        if not unique:
            return {}
        top1 = self.logits(unique).argmax(1).tolist()
        return dict(zip(unique, top1, strict=True))


# -- exemplars ---------------------------------------------------------------------------------
def case_exemplars(
    case: EditCase,
    data: BuildImages,
    preprocess: Callable[[list[np.ndarray]], Tensor],
    masks: Callable[[np.ndarray], Tensor],
) -> EditExemplars:
    """The case's train counterfactuals as :class:`EditExemplars`.

    ``transformed``: the counterfactuals; ``original``: their clean images; ``masks``: the
    concept masks in the same geometry; ``labels``: each exemplar's own reference label (the
    target class, or the image's class within a target group).
    """
    items = [cf(cf_id) for cf_id in case.train]
    transformed = preprocess([data.rgb(item) for item in items])
    original = preprocess([data.rgb(data.clean_of(item)) for item in items])
    mask_batch = torch.stack([masks(data.mask(item.id)) for item in items])
    labels = []
    for item in items:
        label = data.reference(item)
        if label is None:
            raise ValueError(f"counterfactual {item.id} has neither a label nor a clean prediction")
        labels.append(label)
    return EditExemplars(transformed, original, mask_batch, torch.tensor(labels, dtype=torch.long))


# -- what a case evaluates ---------------------------------------------------------------------
@dataclass(frozen=True)
class CaseItems:
    """The items of a case by part; ``clean`` maps each counterfactual to its clean image."""

    train: list[Item]
    groups: dict[str, list[Item]]
    heldout: list[Item]
    validation: list[Item]
    clean: dict[Item, Item] = field(default_factory=dict)

    def test_items(self) -> list[Item]:
        """Every item the final evaluation classifies (never used for selection)."""
        items = [item for group in self.groups.values() for item in group]
        items += [self.clean[item] for item in items]
        items += self.train + [self.clean[item] for item in self.train] + self.heldout
        return list(dict.fromkeys(items))

    def selection_items(self) -> list[Item]:
        """What hyper-parameter selection may look at: train exemplars and validation images."""
        return list(dict.fromkeys([*self.train, *self.validation]))


def case_items(case: EditCase, data: BuildImages) -> CaseItems:
    train = [cf(i) for i in case.train]
    groups = {name: [cf(i) for i in case.test_groups.get(name, [])] for name in TEST_GROUPS}
    tested = [item for group in groups.values() for item in group]
    clean = {item: data.clean_of(item) for item in [*train, *tested]}
    return CaseItems(
        train=train,
        groups=groups,
        heldout=[image(i) for i in case.heldout],
        validation=[image(i) for i in case.validation],
        clean=clean,
    )


def references(data: BuildImages, items: Iterable[Item], pre: dict[Item, int]) -> dict[Item, int]:
    """Reference label per item; an unlabelled clean image is judged against ``pre``."""
    out = {}
    for item in items:
        label = data.reference(item)
        out[item] = pre[item] if label is None else label
    return out


def _pct(rate: metrics.Rate) -> float:
    return rate.percent


def case_metrics(
    items: CaseItems,
    refs: dict[Item, int],
    pre: dict[Item, int],
    post: dict[Item, int],
) -> list[dict[str, Any]]:
    """One row per part of the case (exemplars, the four test groups, clean heldout).

    Per row: ``n``; ``n_clean_correct`` (counterfactuals whose clean image the pre-edit model
    gets right); ``e_pre`` / ``e_post`` and ``errors_corrected`` (%, NaN when ``e_pre = 0``);
    ``new_errors`` (right before, wrong after, among those); ``acc_pre`` / ``acc_post`` (% of
    all the part's images right); ``gr`` (% of the ``e_pre`` errors fixed, the generalisation
    rate) and ``changed`` (% whose top-1 changed). Case-level values on every row: ``sr`` (% of
    misclassified exemplars fixed), ``lr`` (% of heldout clean images whose top-1 is unchanged),
    ``clean_acc_pre`` / ``clean_acc_post`` / ``clean_drop_pp``.
    """

    def flags(part: Sequence[Item], preds: dict[Item, int]) -> np.ndarray:
        return np.array([preds[i] == refs[i] for i in part], dtype=bool)

    def part_row(name: str, part: Sequence[Item]) -> dict[str, Any]:
        clean_items = [items.clean[i] for i in part]
        clean_ok = flags(clean_items, pre)
        cf_pre, cf_post = flags(part, pre), flags(part, post)
        e_pre = metrics.count_errors(clean_ok, cf_pre)
        e_post = metrics.count_errors(clean_ok, cf_post)
        fixed = metrics.fixed_rate(cf_pre[clean_ok], cf_post[clean_ok])
        changed = metrics.locality_rate([pre[i] for i in part], [post[i] for i in part])
        return {
            "group": name,
            "n": len(part),
            "n_clean_correct": int(clean_ok.sum()),
            "e_pre": e_pre,
            "e_post": e_post,
            "errors_corrected": metrics.errors_corrected(clean_ok, cf_pre, cf_post)
            if len(part)
            else math.nan,
            "new_errors": int((clean_ok & cf_pre & ~cf_post).sum()),
            "acc_pre": metrics.accuracy(cf_pre),
            "acc_post": metrics.accuracy(cf_post),
            "gr": _pct(fixed),
            "gr_n": fixed.total,
            "changed": 100.0 - changed.percent if changed.total else math.nan,
        }

    rows = [part_row(EXEMPLARS, items.train)]
    rows += [part_row(name, items.groups[name]) for name in TEST_GROUPS]
    held_pre, held_post = flags(items.heldout, pre), flags(items.heldout, post)
    locality = metrics.locality_rate(
        [pre[i] for i in items.heldout], [post[i] for i in items.heldout]
    )
    clean_row = {
        "group": CLEAN,
        "n": len(items.heldout),
        "n_clean_correct": int(held_pre.sum()),
        "e_pre": 0,
        "e_post": 0,
        "errors_corrected": math.nan,
        "new_errors": int((held_pre & ~held_post).sum()),
        "acc_pre": metrics.accuracy(held_pre),
        "acc_post": metrics.accuracy(held_post),
        "gr": math.nan,
        "gr_n": 0,
        "changed": 100.0 - locality.percent if locality.total else math.nan,
    }
    rows.append(clean_row)
    success = metrics.success_rate(flags(items.train, pre), flags(items.train, post))
    case_level = {
        "sr": _pct(success),
        "sr_n": success.total,
        "lr": locality.percent,
        "lr_n": locality.total,
        "clean_acc_pre": clean_row["acc_pre"],
        "clean_acc_post": clean_row["acc_post"],
        "clean_drop_pp": metrics.clean_accuracy_drop(held_pre, held_post)
        if len(items.heldout)
        else math.nan,
    }
    return [{**row, **case_level} for row in rows]


@dataclass
class CaseEvaluation:
    """Rows of :func:`case_metrics` plus the predictions they came from."""

    rows: list[dict[str, Any]]
    pre: dict[Item, int]
    post: dict[Item, int]
    items: CaseItems


def evaluate_case(
    predictor: Predictor,
    case: EditCase,
    edit: EditResult | None = None,
    pre: dict[Item, int] | None = None,
    scale: float = 1.0,
) -> CaseEvaluation:
    """Metrics of ``edit`` (applied to ``predictor.model`` only inside) on ``case``.

    ``pre``: the unedited model's predictions on the case's items, if already known (they are
    the same for every method, so a runner computes them once per case). Without an edit, post
    equals pre (errors corrected 0 where there are errors, clean drop 0).
    """
    items = case_items(case, predictor.data)
    wanted = items.test_items()
    if pre is None or any(item not in pre for item in wanted):
        pre = {**(pre or {}), **predictor.predict([i for i in wanted if i not in (pre or {})])}
    if edit is None:
        post = dict(pre)
    else:
        with applied(predictor.model, edit, scale):
            post = predictor.predict(wanted)
    refs = references(predictor.data, wanted, pre)
    return CaseEvaluation(case_metrics(items, refs, pre, post), pre, post, items)
