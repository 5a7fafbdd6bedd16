"""Where the key statistics ``C`` come from: this build, another build, an image folder, or a mix.

``C`` decides how local a rewrite is (``d ∝ C⁻¹k*``): a direction it under-samples is one the
edit treats as free, and clean images that do use it change. A few hundred frames of one
domain sample a 672- or 1152-d key space thinly, so a run can mix several image sets:
``C`` is then the **mean of the sets' second moments, each set weighted equally** whatever its
size, so a small in-domain set (the other split of the road scenes) and a large generic one
(a folder of ImageNet photos) both count. Every set is cached on its own (by image-set id) and
checked for overlap with the cases by content id (:func:`pipeline.hashing.pixels_id` of the
decoded image, the build's ``image_id``).

A spec is one of: ``None`` (the build's images no case uses), an ``int`` (the first ``n`` by
id), a list of image ids of the build, a path (a build folder, or any folder of images), a
Hugging Face dataset (``hf:NAME_OR_PATH[@SPLIT][#IMAGE_COLUMN]``: a Hub name read from the local
cache, or a ``save_to_disk`` folder), or a list of paths and ``hf:`` specs (the mix).

``views="windows"`` adds, for every image that is not square, its two end squares (left and
right, or top and bottom) to the full image: the classifier's centre crop never sees the sides
of a wide frame, and keys at the sides of the grid are what the test frames' own edges give.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pipeline.cases import EditCase
from pipeline.editing.build_images import BuildImages, image
from pipeline.editing.covariance import KeyStatistics
from pipeline.editing.predict import batched
from pipeline.hashing import pixels_id, stable_key
from pipeline.imageio import ImageDecodeError, decode_image, resize_max_side
from pipeline.sources.base import Source, SourceRef
from pipeline.sources.folder import FolderSource
from pipeline.sources.huggingface import HuggingFaceSource

logger = logging.getLogger(__name__)

Preprocess = Callable[[list[np.ndarray]], torch.Tensor]
VIEWS = ("center", "windows")
HF_PREFIX = "hf:"
CovarianceSpec = int | Sequence[str] | str | Path | Sequence[str | Path] | None


@dataclass
class KeySource:
    """One image set for ``C``: its id (cache key, recorded in the results), its size, how many
    of its images a case uses, and how to stream it as preprocessed batches."""

    name: str
    images: int
    overlap: int
    read: Callable[[Preprocess, int], Iterator[torch.Tensor]]


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


def image_views(rgb: np.ndarray, views: str = "center") -> list[np.ndarray]:
    """The image, and with ``views="windows"`` its two end squares when it is not square."""
    if views not in VIEWS:
        raise ValueError(f"unknown key-statistics views {views!r}; use one of {VIEWS}")
    height, width = rgb.shape[:2]
    if views == "center" or height == width:
        return [rgb]
    side = min(height, width)
    if width > height:
        ends = [rgb[:, :side], rgb[:, width - side :]]
    else:
        ends = [rgb[:side], rgb[height - side :]]
    return [rgb, *(np.ascontiguousarray(end) for end in ends)]


def _build_batches(
    data: BuildImages, ids: list[str], views: str
) -> Callable[..., Iterator[torch.Tensor]]:
    def read(preprocess: Preprocess, batch_size: int) -> Iterator[torch.Tensor]:
        for chunk in batched(ids, batch_size):
            yield preprocess([v for i in chunk for v in image_views(data.rgb(image(i)), views)])

    return read


def _suffix(views: str) -> str:
    return "" if views == "center" else f"-{views}"


def _is_build(path: Path) -> bool:
    return (path / "build.yaml").is_file() or (path / "manifests").is_dir()


def decoded_images(
    source: Source, refs: Sequence[SourceRef], max_side: int | None
) -> Iterator[tuple[SourceRef, np.ndarray]]:
    """Decoded RGB of `refs` (downscaled to `max_side`); an unreadable one is skipped with a
    warning naming it."""
    for ref in refs:
        try:
            rgb = decode_image(source.read(ref), ref.uri).rgb
        except (OSError, ImageDecodeError) as err:
            logger.warning("skipped an image: %s", err)
            continue
        yield ref, rgb if max_side is None else resize_max_side(rgb, max_side)


def images_source(
    source: Source, label: str, used: set[str], max_side: int | None = None, views: str = "center"
) -> KeySource:
    """Any image source (a folder, a Hugging Face dataset) as an image set for ``C``.

    Unreadable images are skipped with a warning naming them. One decoding pass computes the
    content ids, for the image-set id and the overlap with the cases; images are downscaled to
    the cases' build ``max_side`` so they reach the classifier's transform like the build's
    own images."""
    good, ids = [], []
    for ref, rgb in decoded_images(source, list(source.refs()), None):
        good.append(ref)
        ids.append(pixels_id(rgb))
    if not good:
        raise ValueError(f"covariance images {label}: no readable image")
    name = f"{_slug(label)}-{len(ids)}img-{stable_key(sorted(ids), length=12)}{_suffix(views)}"

    def read(preprocess: Preprocess, batch_size: int) -> Iterator[torch.Tensor]:
        for chunk in batched(good, batch_size):
            yield preprocess(
                [
                    v
                    for _, rgb in decoded_images(source, chunk, max_side)
                    for v in image_views(rgb, views)
                ]
            )

    return KeySource(name, len(ids), len(set(ids) & used), read)


def folder_source(
    folder: Path, used: set[str], max_side: int | None = None, views: str = "center"
) -> KeySource:
    """A plain folder of images, walked like a build's ``folder`` source."""
    source = FolderSource(folder, infer_labels=False)
    return images_source(source, f"folder-{folder.name}", used, max_side, views)


def is_hf_spec(spec: object) -> bool:
    """Whether a covariance image-set spec names a Hugging Face dataset (``hf:…``)."""
    return isinstance(spec, str) and spec.startswith(HF_PREFIX)


def parse_hf_spec(spec: str) -> HuggingFaceSource:
    """``hf:NAME_OR_PATH[@SPLIT][#IMAGE_COLUMN]``: a Hub dataset (from the local cache when
    offline) or a ``save_to_disk`` / data folder, split ``train`` and column ``image`` by
    default."""
    body = spec.removeprefix(HF_PREFIX)
    body, _, column = body.partition("#")
    body, _, split = body.partition("@")
    if not body:
        raise ValueError(f"covariance images {spec!r}: no dataset after {HF_PREFIX!r}")
    local = Path(body).expanduser()
    return HuggingFaceSource(
        dataset=None if local.exists() else body,
        path=str(local) if local.exists() else None,
        split=split or "train",
        image_column=column or "image",
    )


def build_max_side(data: BuildImages) -> int | None:
    config = data.store.resolved()
    max_side = (config.get("image") or {}).get("max_side") if config else None
    return int(max_side) if max_side else None


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "images"


def _set_source(data: BuildImages, spec: str | Path, used: set[str], views: str) -> KeySource:
    if is_hf_spec(spec):
        source = parse_hf_spec(str(spec))
        label = f"hf-{Path(source.name).name}-{source.split}"
        return images_source(source, label, used, build_max_side(data), views)
    path = Path(spec)
    if not path.is_dir():
        raise FileNotFoundError(f"covariance images {path}: not a folder (a build or images)")
    if not _is_build(path):
        return folder_source(path, used, build_max_side(data), views)
    other = BuildImages(path)
    ids = sorted(str(i) for i in other.images["image_id"])
    name = f"build-{path.name}-{len(ids)}img-{stable_key(ids, length=12)}{_suffix(views)}"
    return KeySource(name, len(ids), len(set(ids) & used), _build_batches(other, ids, views))


def _is_path_list(spec: object) -> bool:
    if isinstance(spec, str | Path | int) or spec is None:
        return False
    items = list(spec)  # type: ignore[call-overload]
    return bool(items) and all(
        isinstance(i, Path) or is_hf_spec(i) or Path(str(i)).is_dir() for i in items
    )


def key_sources(
    data: BuildImages, spec: CovarianceSpec, cases: Sequence[EditCase], views: str = "center"
) -> list[KeySource]:
    """The image sets of ``C`` for ``spec`` (see the module docstring), overlap-checked."""
    if views not in VIEWS:
        raise ValueError(f"unknown key-statistics views {views!r}; use one of {VIEWS}")
    used = case_image_ids(data, cases)
    if isinstance(spec, str | Path):
        return [_set_source(data, spec, used, views)]
    if _is_path_list(spec):
        sets = list(spec)  # type: ignore[call-overload]
        if len({str(p) for p in sets}) < len(sets):
            raise ValueError(f"covariance image sets listed twice: {[str(p) for p in sets]}")
        return [_set_source(data, p, used, views) for p in sets]
    ids = covariance_image_ids(data, spec, exclude=used)  # type: ignore[arg-type]
    name = f"{len(ids)}img-{stable_key(ids, length=12)}{_suffix(views)}"
    return [KeySource(name, len(ids), len(set(ids) & used), _build_batches(data, ids, views))]


def mixed_covariance(stats: Sequence[KeyStatistics]) -> torch.Tensor:
    """``C`` of several image sets: the mean of their second moments (equal weight per set)."""
    if not stats:
        raise ValueError("no key statistics to mix")
    dims = {s.dim for s in stats}
    if len(dims) != 1:
        raise ValueError(f"key statistics of different dimensions: {sorted(dims)}")
    return torch.stack([s.covariance() for s in stats]).mean(0)


def mixed_name(sources: Sequence[KeySource]) -> str:
    """The image-set id of a mix (one source keeps its own id, so its runs keep their keys)."""
    return "+".join(s.name for s in sources)
