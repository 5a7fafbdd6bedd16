"""Edit evaluation metrics as pure functions of per-image correctness / predictions.

Inputs are array-likes (numpy, torch, lists) of booleans or class indices, one entry per image,
aligned across pre- and post-edit. Rates are returned as :class:`Rate` (counts kept, so that
confidence intervals can be computed later); a rate over zero images is NaN, never 0, since
"nothing to measure" must not read as "complete failure".

:func:`case_metrics` applies them to one edit case: per test group the % errors corrected
(``E`` counts misclassified counterfactuals whose clean image the pre-edit model classifies
correctly; both counts over that same set), the generalisation rate, the locality rate; on the
exemplars the success rate; on the case's ``heldout`` clean images the clean accuracy and its
drop. Nothing here loads torch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.cases import CLEAN, EXEMPLARS, TEST_GROUPS
from pipeline.edit_stats import clipped_percent, pooled_errors_corrected

__all__ = ["clipped_percent", "pooled_errors_corrected"]

if TYPE_CHECKING:
    from pipeline.editing.build_images import CaseItems, Item


def _bool(values: Any) -> np.ndarray:
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    array = np.asarray(values)
    if array.dtype != np.bool_:
        if not np.isin(array, (0, 1)).all():
            raise ValueError("expected booleans (or 0/1)")
        array = array.astype(bool)
    return array.reshape(-1)


def _labels(values: Any) -> np.ndarray:
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    return np.asarray(values)


def _same_length(*arrays: np.ndarray) -> None:
    if len({array.shape[0] for array in arrays}) > 1:
        raise ValueError(f"arrays differ in length: {[array.shape[0] for array in arrays]}")


def predictions(logits_or_predictions: Any) -> np.ndarray:
    """Top-1 class per image: argmax over the last axis of ``(N, K)`` logits, or ``(N,)`` as is."""
    array = _labels(logits_or_predictions)
    return array.argmax(-1) if array.ndim == 2 else array.reshape(-1)


def correct(logits_or_predictions: Any, labels: Any) -> np.ndarray:
    """Boolean ``(N,)``: top-1 prediction equals the label."""
    preds, labels = predictions(logits_or_predictions), _labels(labels).reshape(-1)
    _same_length(preds, labels)
    return preds == labels


@dataclass(frozen=True)
class Rate:
    """``successes`` out of ``total``; ``fraction`` / ``percent`` are NaN when ``total == 0``."""

    successes: int
    total: int

    @property
    def fraction(self) -> float:
        return self.successes / self.total if self.total else math.nan

    @property
    def percent(self) -> float:
        return 100.0 * self.fraction


def count_errors(clean_correct: Any, transformed_correct: Any) -> int:
    """E: transformed images misclassified among those whose clean image is classified correctly.

    Restricting to correctly classified clean images isolates errors caused by the
    transformation (the concept's new texture) from errors the model makes anyway.
    """
    clean, transformed = _bool(clean_correct), _bool(transformed_correct)
    _same_length(clean, transformed)
    return int((clean & ~transformed).sum())


def errors_corrected(
    clean_correct_pre: Any,
    transformed_correct_pre: Any,
    transformed_correct_post: Any,
    clean_correct_post: Any | None = None,
) -> float:
    """``100·(E_pre − E_post)/E_pre`` in percent, clipped at −100; NaN when ``E_pre = 0``.

    By default both counts use the pre-edit set of correctly classified clean images, so the
    same images are compared before and after. Pass ``clean_correct_post`` to count ``E_post``
    over the post-edit model's own set instead. Negative values mean the edit added errors;
    as in the paper they are clipped at −100 % (an edit that more than doubles the errors
    counts as "all lost", so one bad case cannot dominate a mean over cases).
    """
    e_pre = count_errors(clean_correct_pre, transformed_correct_pre)
    subset = clean_correct_pre if clean_correct_post is None else clean_correct_post
    e_post = count_errors(subset, transformed_correct_post)
    return clipped_percent(e_pre, e_post)


def accuracy(correct_flags: Any) -> float:
    """Share of ``True`` in percent (NaN for no images)."""
    flags = _bool(correct_flags)
    return 100.0 * float(flags.mean()) if flags.size else math.nan


def clean_accuracy_drop(correct_pre: Any, correct_post: Any) -> float:
    """Clean accuracy before minus after, in percentage points (positive = the edit hurt)."""
    pre, post = _bool(correct_pre), _bool(correct_post)
    _same_length(pre, post)
    return accuracy(pre) - accuracy(post)


def fixed_rate(correct_pre: Any, correct_post: Any, include: Any | None = None) -> Rate:
    """Among images misclassified before (and in ``include``), how many are correct after."""
    pre, post = _bool(correct_pre), _bool(correct_post)
    _same_length(pre, post)
    wrong = ~pre if include is None else ~pre & _bool(include)
    return Rate(int((wrong & post).sum()), int(wrong.sum()))


def success_rate(exemplar_correct_pre: Any, exemplar_correct_post: Any) -> Rate:
    """SR: share of the (transformed) exemplars that were misclassified and are fixed."""
    return fixed_rate(exemplar_correct_pre, exemplar_correct_post)


def generalization_rate(group_correct_pre: Any, group_correct_post: Any, is_exemplar: Any) -> Rate:
    """GR: share of the rest of the group (exemplars excluded) misclassified before, fixed after."""
    return fixed_rate(group_correct_pre, group_correct_post, include=~_bool(is_exemplar))


def locality_rate(predictions_pre: Any, predictions_post: Any) -> Rate:
    """LR: share of a locality set (images the edit should not affect) whose top-1 is unchanged.

    Accepts ``(N,)`` class indices or ``(N, K)`` logits.
    """
    pre, post = predictions(predictions_pre), predictions(predictions_post)
    _same_length(pre, post)
    return Rate(int((pre == post).sum()), int(pre.shape[0]))


def case_metrics(
    items: CaseItems,
    refs: dict[Item, int],
    pre: dict[Item, int],
    post: dict[Item, int],
    pre_logp: dict[Item, float] | None = None,
    post_logp: dict[Item, float] | None = None,
    min_e_pre: int = 1,
) -> list[dict[str, Any]]:
    """One row per part of the case (exemplars, the four test groups, clean heldout).

    Per row: ``n``; ``n_clean_correct`` (counterfactuals whose clean image the pre-edit model
    gets right); ``e_pre`` / ``e_post`` and ``errors_corrected`` (%, NaN when ``e_pre = 0``);
    ``new_errors`` (right before, wrong after, among those); ``acc_pre`` / ``acc_post`` (% of
    all the part's images right); ``gr`` (% of the ``e_pre`` errors fixed, the generalisation
    rate) and ``changed`` (% whose top-1 changed). Case-level values on every row: ``sr`` (% of
    misclassified exemplars fixed), ``lr`` (% of heldout clean images whose top-1 is unchanged),
    ``clean_acc_pre`` / ``clean_acc_post`` / ``clean_drop_pp``. Also per row: ``measurable``
    (``e_pre >= min_e_pre``), ``dlogp`` (mean change of log p(reference) over the part's
    counterfactuals, with ``pre_logp`` / ``post_logp``) and ``err_bits`` (per clean-correct
    image ``pre``+``post`` error flags as "01 10 ..." for pooled bootstrap intervals);
    ``same_bits`` on the clean row ("1101...": per heldout image, top-1 unchanged).
    """

    def flags(part: Sequence[Item], preds: dict[Item, int]) -> np.ndarray:
        return np.array([preds[i] == refs[i] for i in part], dtype=bool)

    def part_row(name: str, part: Sequence[Item]) -> dict[str, Any]:
        clean_items = [items.clean[i] for i in part]
        clean_ok = flags(clean_items, pre)
        cf_pre, cf_post = flags(part, pre), flags(part, post)
        e_pre = count_errors(clean_ok, cf_pre)
        e_post = count_errors(clean_ok, cf_post)
        fixed = fixed_rate(cf_pre[clean_ok], cf_post[clean_ok])
        changed = locality_rate([pre[i] for i in part], [post[i] for i in part])
        bits = " ".join(
            f"{int(a)}{int(b)}" for a, b in zip(~cf_pre[clean_ok], ~cf_post[clean_ok], strict=True)
        )
        dlogp = math.nan
        if pre_logp is not None and post_logp is not None and len(part):
            dlogp = float(np.mean([post_logp[i] - pre_logp[i] for i in part]))
        return {
            "group": name,
            "n": len(part),
            "n_clean_correct": int(clean_ok.sum()),
            "e_pre": e_pre,
            "e_post": e_post,
            "errors_corrected": errors_corrected(clean_ok, cf_pre, cf_post)
            if len(part)
            else math.nan,
            "new_errors": int((clean_ok & cf_pre & ~cf_post).sum()),
            "acc_pre": accuracy(cf_pre),
            "acc_post": accuracy(cf_post),
            "gr": fixed.percent,
            "gr_n": fixed.total,
            "changed": 100.0 - changed.percent if changed.total else math.nan,
            "measurable": e_pre >= max(1, min_e_pre),
            "dlogp": dlogp,
            "err_bits": bits,
            "same_bits": "",
        }

    rows = [part_row(EXEMPLARS, items.train)]
    rows += [part_row(name, items.groups[name]) for name in TEST_GROUPS]
    held_pre, held_post = flags(items.heldout, pre), flags(items.heldout, post)
    locality = locality_rate([pre[i] for i in items.heldout], [post[i] for i in items.heldout])
    clean_row = {
        "group": CLEAN,
        "n": len(items.heldout),
        "n_clean_correct": int(held_pre.sum()),
        "e_pre": 0,
        "e_post": 0,
        "errors_corrected": math.nan,
        "new_errors": int((held_pre & ~held_post).sum()),
        "acc_pre": accuracy(held_pre),
        "acc_post": accuracy(held_post),
        "gr": math.nan,
        "gr_n": 0,
        "changed": 100.0 - locality.percent if locality.total else math.nan,
        "measurable": False,
        "dlogp": math.nan,
        "err_bits": "",
        # per heldout image: its top-1 unchanged (locality, resampled by the curves' bootstrap)
        "same_bits": "".join("1" if pre[i] == post[i] else "0" for i in items.heldout),
    }
    rows.append(clean_row)
    success = success_rate(flags(items.train, pre), flags(items.train, post))
    case_level = {
        "sr": success.percent,
        "sr_n": success.total,
        "lr": locality.percent,
        "lr_n": locality.total,
        "clean_acc_pre": clean_row["acc_pre"],
        "clean_acc_post": clean_row["acc_post"],
        "clean_drop_pp": clean_accuracy_drop(held_pre, held_post)
        if len(items.heldout)
        else math.nan,
    }
    return [{**row, **case_level} for row in rows]
