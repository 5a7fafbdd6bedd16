"""How a case's images are divided, and the photo sets a benchmark builds from.

Within a case (:func:`class_split_sizes`, :func:`error_split_sizes`): the clean validation
split gets the planner's usual share; where that share is below `min_validation` and the data
can give `min_validation` images while every split it draws from keeps at least as many, the
validation split grows to exactly `min_validation`. Otherwise it keeps its share and the case
records the shortfall, so a small build plans as it always did and a large one with small
fractions still gets a validation split that can resolve a 1 pp budget.

Across builds (:func:`covariance_split`, :func:`split_for_covariance`, :func:`choose_photos`):
the key statistics `C` must come from images no case split uses, so a benchmark builds two
data sets from one photo folder, chosen by file name — deterministic and independent of the
content or of any prediction.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

PHOTO_SUFFIXES = frozenset({".jpeg", ".jpg", ".png"})
Photo = TypeVar("Photo", bound=Hashable)


# -- within a case -----------------------------------------------------------------------------
def grow_validation(have: int, donors: Sequence[int], minimum: int) -> list[int] | None:
    """How many images to take from each donor split (in order) so that the validation split
    holds `minimum`, every donor keeping at least `minimum`; None where that is impossible
    (then nothing moves) or not needed."""
    need = minimum - have
    if need <= 0:
        return None
    taken = []
    for size in donors:
        take = max(0, min(need, size - minimum))
        taken.append(take)
        need -= take
    return taken if need == 0 else None


@dataclass(frozen=True)
class ClassSplit:
    """Sizes of the pool split of a class or group case (images outside the target class)."""

    validation: int  # clean validation images: the first ones of the pool's clean share
    heldout: int  # clean images for the clean accuracy drop
    extra_validation: int  # more validation images, taken from the other-class test share
    test: int  # images whose counterfactuals are other-class tests


def class_split_sizes(n_pool: int, clean_frac: float, min_validation: int) -> ClassSplit:
    """`clean_frac` of the pool is clean, half validation and half heldout, the rest tested;
    the validation grows toward `min_validation` from heldout, then from the tests."""
    n_clean = round(clean_frac * n_pool)
    validation, heldout, test = n_clean // 2, n_clean - n_clean // 2, n_pool - n_clean
    grown = grow_validation(validation, [heldout, test], min_validation)
    from_heldout, from_test = grown or (0, 0)
    return ClassSplit(
        validation + from_heldout, heldout - from_heldout, from_test, test - from_test
    )


@dataclass(frozen=True)
class ErrorSplit:
    """Sizes of the splits of an error case."""

    validation_photos: int  # photos with the concept whose counterfactuals validate
    test_photos: int  # photos with the concept whose counterfactuals are tested
    validation_others: int  # images without the concept in the clean validation split
    heldout_others: int  # images without the concept in the heldout clean split

    @property
    def validation(self) -> int:
        """Clean validation images: the validation photos and their share of the others."""
        return self.validation_photos + self.validation_others

    @property
    def heldout(self) -> int:
        """Clean heldout images: the test photos and the other share of the others."""
        return self.test_photos + self.heldout_others


def error_split_sizes(
    n_photos: int, n_others: int, val_frac: float, min_validation: int
) -> ErrorSplit:
    """The error plan's split: `round(val_frac · n_photos)` of the photos with the concept
    (exemplars excluded) validate, the rest are tested; the images without the concept go half
    to each clean split. The validation grows toward `min_validation` from the heldout images
    without the concept, then from the test photos, the heldout split keeping as many.

    Args:
        n_photos: photos carrying the concept, the exemplars' excluded.
        n_others: images of the build without the concept.
        val_frac: share of `n_photos` for validation.
        min_validation: clean validation images asked for.
    """
    val_photos, half = round(val_frac * n_photos), n_others // 2
    test_photos, held_others = n_photos - val_photos, n_others - half
    heldout = test_photos + held_others
    grown = grow_validation(val_photos + half, [heldout], min_validation)
    if grown:
        from_others = min(grown[0], held_others)
        half, held_others = half + from_others, held_others - from_others
        from_tests = grown[0] - from_others
        val_photos, test_photos = val_photos + from_tests, test_photos - from_tests
    return ErrorSplit(val_photos, test_photos, half, held_others)


# -- across builds -----------------------------------------------------------------------------
def list_photos(folder: str | Path) -> list[Path]:
    """The photos (JPEG, PNG) directly in `folder`, sorted by name."""
    return sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in PHOTO_SUFFIXES)


def covariance_split(
    photos: Sequence[Photo], every: int, keep: Sequence[Photo] = ()
) -> tuple[list[Photo], list[Photo]]:
    """(case photos, covariance photos): every `every`-th photo in the given order (from the
    `every`-th on) goes to `C`, except those in `keep`, which stay with the cases; 0: no split.
    The two lists are disjoint and together are `photos`.

    Args:
        photos: the photos, in a fixed order (by file name).
        every: one photo in `every` goes to the covariance set.
        keep: photos never given to `C` (the class groups the cases need).
    """
    if every < 0:
        raise ValueError(f"every must be >= 0 (0: no covariance split), not {every}")
    if every == 0:
        return list(photos), []
    kept = set(keep)
    candidates = [p for p in photos if p not in kept]
    covariance = set(candidates[every - 1 :: every])
    return [p for p in photos if p not in covariance], [p for p in photos if p in covariance]


def _labeller(label_of: Callable[[Path], int | None] | None) -> Callable[[Path], int | None]:
    if label_of is not None:
        return label_of
    from pipeline.sources.folder import infer_label

    return infer_label


def split_for_covariance(
    photos: Sequence[Path],
    groups: Mapping[str, Sequence[int]],
    every: int,
    label_of: Callable[[Path], int | None] | None = None,
) -> tuple[list[Path], list[Path]]:
    """(case photos, photos for `C`), both sorted: every `every`-th photo outside the class
    groups (by file name) is kept out of the cases, so `C` is disjoint from every case split.

    Args:
        photos: the chosen photos.
        groups: class groups (name → class indices) whose photos all stay with the cases.
        every: one photo in `every` outside the groups goes to `C`; 0: no split.
        label_of: a photo's class (default: the ImageNet class from its WordNet id).
    """
    label = _labeller(label_of)
    grouped = {int(c) for classes in groups.values() for c in classes}
    ordered = sorted(photos)
    keep = [p for p in ordered if label(p) in grouped]
    return covariance_split(ordered, every, keep)


def choose_photos(
    photos: Sequence[Path],
    groups: Mapping[str, Sequence[int]],
    limit: int,
    label_of: Callable[[Path], int | None] | None = None,
) -> list[Path]:
    """Up to `limit` photos, sorted: first each group's (an even share of `limit`, evenly
    spread by file name; one group: 40 %, several: 65 % together), then the other classes'
    spread evenly.

    Args:
        photos: every photo available (e.g. :func:`list_photos` of a folder).
        groups: class groups (name → class indices).
        limit: photos wanted.
        label_of: a photo's class (default: the ImageNet class from its WordNet id).
    """
    if limit < 1:
        raise ValueError(f"limit must be at least 1, not {limit}")
    label = _labeller(label_of)
    files = sorted(photos)
    labels = {path: label(path) for path in files}
    per_group = int(limit * 0.4) if len(groups) == 1 else int(limit * 0.65) // max(1, len(groups))
    chosen: list[Path] = []
    grouped: set[Path] = set()
    for classes in groups.values():
        members = [p for p in files if labels[p] in set(classes)]
        grouped |= set(members)
        step = max(1, len(members) // max(1, per_group))
        chosen += members[::step][:per_group]
    rest = [p for p in files if p not in grouped]
    need = max(0, limit - len(chosen))
    step = max(1, len(rest) // max(1, need))
    chosen += rest[::step][:need]
    return sorted(chosen)
