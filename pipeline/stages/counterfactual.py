"""Transform and filter: composite each kept concept with each style, classify, judge.

Counterfactuals stream through the classifier in batches, so memory holds one batch of images,
not the shard's product of concepts and styles. Each source image is decoded once per shard (for
its clean prediction and its composites), and the next batch is composited in a worker thread
while the classifier runs the current one, so the model never waits for the compositing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from pipeline.classify import Classifier, topk
from pipeline.config import BuildConfig, TransformConfig
from pipeline.failpoints import failpoint
from pipeline.filters import judge
from pipeline.hashing import stable_key
from pipeline.records import ConceptMask, Counterfactual, SourceImage, Stylized
from pipeline.stages.backends import Backends
from pipeline.store import BuildStore
from pipeline.store.build_store import PngWriter
from pipeline.transform import composite

CODE_VERSION = "counterfactual-v1"


@dataclass(frozen=True)
class Planned:
    """One counterfactual to make: which image, mask and stylized image, and its id."""

    cf_id: str
    image: SourceImage
    mask: ConceptMask
    stylized: Stylized

    @property
    def texture(self) -> str:
        return self.stylized.style_id.split("/")[0]


def plan(
    images: Sequence[SourceImage],
    masks: Sequence[ConceptMask],
    stylized: Sequence[Stylized],
    config: TransformConfig,
) -> list[Planned]:
    by_image: dict[str, list[Stylized]] = {}
    for record in stylized:
        by_image.setdefault(record.image_id, []).append(record)
    image_by_id = {image.image_id: image for image in images}
    planned = []
    for mask in masks:
        if not mask.kept or mask.image_id not in image_by_id:
            continue
        for record in by_image.get(mask.image_id, []):
            cf_id = stable_key(mask.mask_id, record.stylized_id, config.model_dump(), length=32)
            planned.append(Planned(cf_id, image_by_id[mask.image_id], mask, record))
    # grouped by image, then style image: each file is read once while its group is rendered
    return sorted(planned, key=lambda p: (p.image.image_id, p.stylized.stylized_id, p.cf_id))


class Renderer:
    """Composites planned counterfactuals, keeping the few most recent decoded files in memory.

    `sources`: source images already decoded (path → pixels), used instead of decoding again.
    """

    def __init__(
        self,
        store: BuildStore,
        config: TransformConfig,
        cache_size: int = 16,
        sources: Mapping[str, np.ndarray] | None = None,
    ) -> None:
        self.store = store
        self.config = config
        self.sources = sources or {}
        self._image = lru_cache(maxsize=cache_size)(store.load_image)
        self._mask = lru_cache(maxsize=cache_size)(store.load_mask)

    def source(self, path: str) -> np.ndarray:
        found = self.sources.get(path)
        return found if found is not None else self._image(path)

    def __call__(self, item: Planned) -> np.ndarray:
        return composite(
            self.source(item.image.path),
            self._image(item.stylized.path),
            self._mask(item.mask.path),
            blend=self.config.blend,
            feather=self.config.feather,
        )


def _batches(items: Sequence[Planned], size: int) -> Iterator[Sequence[Planned]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _rendered(
    planned: Sequence[Planned],
    render: Renderer,
    size: int,
    prepare: Callable[[list[np.ndarray]], Any] | None = None,
) -> Iterator[tuple[Sequence[Planned], list[np.ndarray], Any]]:
    """Batches of planned counterfactuals with their pixels and, given `prepare` (the
    classifier's preprocessing), its input batch; batch i+1 is composited and preprocessed in a
    worker thread while the caller classifies batch i (one batch ahead: memory stays flat)."""
    batches = list(_batches(planned, size))
    if not batches:
        return

    def render_batch(batch: Sequence[Planned]) -> tuple[list[np.ndarray], Any]:
        pixels = [render(item) for item in batch]
        return pixels, (prepare(pixels) if prepare is not None else None)

    with ThreadPoolExecutor(max_workers=1) as prefetch:  # one thread: the Renderer's caches
        pending = prefetch.submit(render_batch, batches[0])
        for index, batch in enumerate(batches):
            pixels, prepared = pending.result()
            if index + 1 < len(batches):
                pending = prefetch.submit(render_batch, batches[index + 1])
            yield batch, pixels, prepared


def counterfactual_shard(
    store: BuildStore,
    images: Sequence[SourceImage],
    masks: Sequence[ConceptMask],
    stylized: Sequence[Stylized],
    backends: Backends,
    config: BuildConfig,
) -> tuple[str, list[Counterfactual]]:
    """Composite, classify and judge every (kept mask, stylized image) pair of the shard."""
    planned = plan(images, masks, stylized, config.transform)
    key = stable_key(
        CODE_VERSION,
        backends.classifier.id,
        config.classifier.topk,
        config.filter.model_dump(),
        [p.cf_id for p in planned],
    )
    if store.has_part("counterfactuals", key):
        done = [c for c in store.read_part("counterfactuals", key) if isinstance(c, Counterfactual)]
        by_id = {p.cf_id: p for p in planned}
        render = Renderer(store, config.transform)
        for record in done:  # re-create only files that went missing
            if not store.exists(record.path):
                store.save_png(record.path, render(by_id[record.cf_id]))
        return key, done
    if not planned:
        store.write_part("counterfactuals", key, [])
        return key, []
    classifier = backends.classifier.load()
    with_cf = sorted({p.image.image_id: p.image for p in planned}.items())
    sources = {image.path: store.load_image(image.path) for _, image in with_cf}  # decoded once
    clean_probs = dict(
        zip(
            [image_id for image_id, _ in with_cf],
            classifier.predict_proba([sources[image.path] for _, image in with_cf]),
            strict=True,
        )
    )
    render = Renderer(store, config.transform, sources=sources)
    with store.png_writer() as writer:  # PNG encoding overlaps the classifier's next batch
        records = _classify_and_judge(
            store, planned, clean_probs, render, writer, classifier, backends.classifier.id, config
        )
    failpoint("counterfactual.before_part")
    store.write_part("counterfactuals", key, records)
    return key, records


def _classify_and_judge(
    store: BuildStore,
    planned: Sequence[Planned],
    clean_probs: dict[str, np.ndarray],
    render: Renderer,
    writer: PngWriter,
    classifier: Classifier,
    classifier_id: str,
    config: BuildConfig,
) -> list[Counterfactual]:
    names = classifier.class_names
    records: list[Counterfactual] = []
    # classifiers with `predict_proba_tensor` get their batches preprocessed one batch ahead
    tensor_proba = getattr(classifier, "predict_proba_tensor", None)
    prepare = classifier.preprocess if tensor_proba is not None else None
    for batch, pixels, prepared in _rendered(
        planned, render, config.classifier.batch_size, prepare
    ):
        for item, image in zip(batch, pixels, strict=True):
            relpath = store.relpath("counterfactuals", item.cf_id)
            if not store.exists(relpath):
                writer.save(relpath, image)
        if tensor_proba is not None:
            cf_probs = tensor_proba(prepared)
        else:
            cf_probs = classifier.predict_proba(pixels)
        for item, probs in zip(batch, cf_probs, strict=True):
            clean = clean_probs[item.image.image_id]
            clean_pred, cf_pred = int(np.argmax(clean)), int(np.argmax(probs))
            label = item.image.label
            reference = clean_pred if label is None else label
            verdicts, kept = judge(
                config.filter,
                concept=item.mask.concept,
                label=label,
                clean_pred=clean_pred,
                cf_pred=cf_pred,
                mask_kept=item.mask.kept,
                mask_reason=item.mask.reject_reason,
                names=names,
            )
            records.append(
                Counterfactual(
                    cf_id=item.cf_id,
                    image_id=item.image.image_id,
                    mask_id=item.mask.mask_id,
                    stylized_id=item.stylized.stylized_id,
                    concept=item.mask.concept,
                    texture=item.texture,
                    style_image=item.stylized.style_id,
                    blend=config.transform.blend,
                    area_frac=item.mask.area_frac,
                    label=label,
                    path=store.relpath("counterfactuals", item.cf_id),
                    classifier_id=classifier_id,
                    clean_topk=topk(clean[None], config.classifier.topk)[0],
                    cf_topk=topk(probs[None], config.classifier.topk)[0],
                    clean_pred=clean_pred,
                    cf_pred=cf_pred,
                    clean_true_prob=round(float(clean[reference]), 6),
                    cf_true_prob=round(float(probs[reference]), 6),
                    verdicts=verdicts,
                    kept=kept,
                )
            )
    return records
