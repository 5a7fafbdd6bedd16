"""How specific a trained locator's masks are to a (concept, texture) pair, on unseen exemplars.

A locator earns its training only if exemplars of one pair lead to the same groups and other
pairs lead elsewhere; :func:`~pipeline.editing.locate.masks.mask_specificity` measures that as
the mean IoU of masks within pairs minus across pairs. This module supplies the masks:

- :func:`draw_exemplar_sets`: exemplar sets of kept counterfactuals from builds, never two of
  one pair from the same clean image (agreement must not come from shared photos), and never
  from a clean image the locator's episodes of that pair used (:func:`trained_images` reads
  them from the locator's record);
- :func:`locator_specificity`: each set's mask at one sparsity from the locator and from the
  controls (``gradient``: the ranking the locator starts from; ``random``: chance), so the
  report says how much of the agreement training added.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from pipeline.editing.exemplars import EditExemplars
from pipeline.editing.locate.edit import MASK_KINDS, choose_mask, exemplar_inputs
from pipeline.editing.locate.groups import GroupLayout
from pipeline.editing.locate.locator import Locator, LocatorInputs
from pipeline.editing.locate.masks import Specificity, mask_specificity

Pair = tuple[str, str]
BuildItem = tuple[str, str]  # (build folder, cf_id)


@dataclass(frozen=True)
class ExemplarSet:
    """One exemplar set: its pair and its counterfactuals as (build folder, cf_id)."""

    pair: Pair
    items: tuple[BuildItem, ...]


def trained_images(record: Mapping[str, Any], build: str | Path) -> dict[Pair, set[str]] | None:
    """Per pair, the clean image ids of ``build`` the locator's episodes drew from.

    Empty when the locator was not trained on ``build``; None when it was but its record does
    not list the images (they cannot be held out then).
    """
    path = str(Path(build).resolve())
    sources = record.get("builds", [])
    indices = {str(i) for i, source in enumerate(sources) if source.get("path") == path}
    if not indices:
        return {}
    if "pair_images" not in record:
        return None
    found: dict[Pair, set[str]] = {}
    for key, entries in record["pair_images"].items():
        concept, texture = str(key).split("/", 1)
        for entry in entries:
            index, image_id = str(entry).split(":", 1)
            if index in indices:
                found.setdefault((concept, texture), set()).add(image_id)
    return found


def draw_exemplar_sets(
    builds: Sequence[str | Path],
    pairs: Sequence[Pair],
    *,
    n_sets: int,
    n_exemplars: int,
    seed: int = 0,
    exclude: Mapping[str, Mapping[Pair, set[str]]] | None = None,
) -> list[ExemplarSet]:
    """Up to ``n_sets`` sets of ``n_exemplars`` kept counterfactuals per pair, seeded.

    Args:
        builds: build folders; a pair's counterfactuals are pooled over them.
        pairs: the (concept, texture) pairs, in the order of the result.
        n_sets: sets per pair (fewer where the pair has too few clean images).
        n_exemplars: counterfactuals per set.
        seed: seed of the draws (each pair's draw depends on the seed and the pair only).
        exclude: per resolved build folder, per pair, clean image ids not to draw from.

    Each clean image gives at most one counterfactual to one set of a pair. A pair with fewer
    than two sets' worth of images is an error: its masks could not be compared.
    """
    if n_sets < 2 or n_exemplars < 1:
        raise ValueError(f"need n_sets >= 2 and n_exemplars >= 1, got {n_sets}, {n_exemplars}")
    from pipeline.store import BuildStore

    wanted = [(str(c), str(t)) for c, t in pairs]
    # pair -> (build folder, image id) -> its cf ids
    pools: dict[Pair, dict[tuple[str, str], list[str]]] = {pair: {} for pair in wanted}
    for build in builds:
        folder = str(Path(build).resolve())
        frame = BuildStore(folder).frame(
            "counterfactuals", ["cf_id", "image_id", "concept", "texture", "kept"]
        )
        frame = frame[frame["kept"].astype(bool)]
        held = (exclude or {}).get(folder, {})
        for cf_id, image_id, concept, texture in zip(
            frame["cf_id"], frame["image_id"], frame["concept"], frame["texture"], strict=True
        ):
            pair = (str(concept), str(texture))
            if pair not in pools or str(image_id) in held.get(pair, set()):
                continue
            pools[pair].setdefault((folder, str(image_id)), []).append(str(cf_id))
    sets: list[ExemplarSet] = []
    for pair in wanted:
        images = sorted(pools[pair])
        count = min(n_sets, len(images) // n_exemplars)
        if count < 2:
            raise ValueError(
                f"pair {pair}: {len(images)} clean images not held out in {list(builds)}, "
                f"too few for two sets of {n_exemplars}"
            )
        rng = np.random.default_rng([seed, zlib.crc32("/".join(pair).encode())])
        order = rng.permutation(len(images))[: count * n_exemplars]
        items = []
        for index in order:
            folder, image_id = images[index]
            cf_ids = sorted(pools[pair][(folder, image_id)])
            items.append((folder, cf_ids[int(rng.integers(len(cf_ids)))]))
        sets += [
            ExemplarSet(pair, tuple(items[k * n_exemplars : (k + 1) * n_exemplars]))
            for k in range(count)
        ]
    return sets


def exemplar_set_inputs(
    classifier: Any, layout: GroupLayout, sets: Iterable[ExemplarSet]
) -> list[LocatorInputs]:
    """The locator's inputs for each set, as the method computes them for a case's exemplars.

    Labels: each photo's own label, or label-free the unedited model's top-1 on the clean
    image (the reference of meta-training and of the edit runner).
    """
    from pipeline.editing.build_images import BuildImages, cf

    model = classifier.model.eval()
    device = next(model.parameters()).device
    builds: dict[str, BuildImages] = {}
    inputs = []
    for exemplar_set in sets:
        datas = [builds.setdefault(b, BuildImages(b)) for b, _ in exemplar_set.items]
        items = [cf(cf_id) for _, cf_id in exemplar_set.items]
        transformed = classifier.preprocess([d.rgb(i) for d, i in zip(datas, items, strict=True)])
        original = classifier.preprocess(
            [d.rgb(d.clean_of(i)) for d, i in zip(datas, items, strict=True)]
        )
        transformed, original = transformed.to(device), original.to(device)
        with torch.no_grad():
            clean_top1 = model(original).argmax(dim=1).tolist()
        labels = [
            top1 if (label := d.label(i)) is None else label
            for d, i, top1 in zip(datas, items, clean_top1, strict=True)
        ]
        n, _, height, width = transformed.shape
        exemplars = EditExemplars(
            transformed,
            original,
            torch.ones(n, 1, height, width, device=device),
            torch.tensor(labels, dtype=torch.long, device=device),
        )
        inputs.append(exemplar_inputs(model, layout, exemplars)[0])
    return inputs


@dataclass(frozen=True)
class SpecificityReport:
    """The sets and, per mask kind, one ``(G,)`` mask per set, at ``sparsity``."""

    sparsity: float
    sets: list[ExemplarSet]
    masks: dict[str, list[Tensor]]

    def specificity(
        self, kind: str = "locator", pairs: Iterable[Pair] | None = None
    ) -> Specificity:
        """Mean IoU within pairs against across pairs, over the sets of ``pairs`` (all)."""
        keep = None if pairs is None else {tuple(p) for p in pairs}
        index = [i for i, s in enumerate(self.sets) if keep is None or s.pair in keep]
        return mask_specificity(
            [self.masks[kind][i] for i in index], [self.sets[i].pair for i in index]
        )

    def sets_per_pair(self) -> dict[Pair, int]:
        counts: dict[Pair, int] = {}
        for exemplar_set in self.sets:
            counts[exemplar_set.pair] = counts.get(exemplar_set.pair, 0) + 1
        return counts


def set_masks(
    kind: str,
    layout: GroupLayout,
    inputs: Sequence[LocatorInputs],
    sparsity: float,
    locator: Locator | None = None,
    seed: int = 0,
) -> list[Tensor]:
    """One mask per set; ``random`` draws each set's with its own seed (``seed + index``), so
    that its IoU is chance level rather than one repeated mask."""
    return [
        choose_mask(
            kind, layout, item, sparsity, locator, seed + index if kind == "random" else seed
        )
        for index, item in enumerate(inputs)
    ]


def locator_specificity(
    locator: str | Path,
    builds: Sequence[str | Path],
    pairs: Sequence[Pair],
    *,
    classifier: Any | None = None,
    sparsity: float = 0.95,
    n_sets: int = 8,
    n_exemplars: int | None = None,
    seed: int = 0,
    kinds: Sequence[str] = MASK_KINDS,
    exclude_trained: bool = True,
    log: Callable[[str], None] = lambda _line: None,
) -> SpecificityReport:
    """Masks of a trained locator (and of the controls) for exemplar sets of ``pairs``.

    Args:
        locator: the locator's folder, file or name (as the method's ``locator`` setting).
        builds: builds to draw the exemplar sets from.
        pairs: (concept, texture) pairs; test pairs the locator never saw are the fairest.
        classifier: the loaded classifier (``model``, ``preprocess``); default: the record's
            model, loaded eagerly on CPU. Its weights must be the locator's.
        sparsity: of every mask.
        n_sets: exemplar sets per pair.
        n_exemplars: counterfactuals per set (default: the locator's training episodes').
        seed: seed of the draws (and of the random masks).
        kinds: mask kinds (``locator``, ``gradient``, ``random``).
        exclude_trained: never draw from clean images the locator's episodes of the pair used;
            an error where the record does not list them for a build it was trained on.
        log: where progress lines go.
    """
    from pipeline.editing.covariance import weights_digest
    from pipeline.editing.locate.artifact import load_locator

    artifact = load_locator(locator)
    config = artifact.record.get("config", {})
    if classifier is None:
        from pipeline.classify import EAGER, create_classifier

        classifier = create_classifier(
            str(config.get("model", artifact.model_id)),
            engine=EAGER,
            device="cpu",
            **dict(config.get("model_options", {})),
        )
    expected = artifact.weights_hash
    if expected and weights_digest(classifier.model) != expected:
        raise ValueError(
            f"locator {str(locator)!r} was trained on weights {expected}; this classifier's differ"
        )
    exclude: dict[str, Mapping[Pair, set[str]]] = {}
    if exclude_trained:
        for build in builds:
            images = trained_images(artifact.record, build)
            if images is None:
                raise ValueError(
                    f"locator {str(locator)!r} was trained on {build} but its record does not "
                    "list the images its episodes used: retrain it, or measure with "
                    "exclude_trained=False"
                )
            exclude[str(Path(build).resolve())] = images
    size = n_exemplars or int(config.get("n_exemplars", 3))
    sets = draw_exemplar_sets(
        builds, pairs, n_sets=n_sets, n_exemplars=size, seed=seed, exclude=exclude
    )
    log(f"{len(sets)} exemplar sets of {size} over {len(pairs)} pairs")
    inputs = exemplar_set_inputs(classifier, artifact.layout, sets)
    masks = {
        kind: set_masks(kind, artifact.layout, inputs, sparsity, artifact.locator, seed)
        for kind in kinds
    }
    return SpecificityReport(float(sparsity), sets, masks)
