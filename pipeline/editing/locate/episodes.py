"""Meta-training episodes: counterfactuals of one (concept, texture) pair and clean images.

An episode is drawn from an :class:`EpisodeBank`, every image of which has been run once
through the network up to the cut (before the first edited module):

- ``exemplars``: a few counterfactuals of one pair (and their clean images, for the locator's
  "what changed" feature) — what the inner loop fine-tunes on;
- ``pseudo``: other counterfactuals of the same pair — the generalisation term;
- ``locality``: clean images of other content (no image with a counterfactual of the pair) —
  the locality term, the KL to the unedited model's outputs.

Labels are each photo's own label or, label-free, the unedited model's top-1 on the clean image
(the reference the edit runner uses). :func:`bank_from_builds` reads builds; a test builds a
bank from tensors directly.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from pipeline.editing.layers import capture
from pipeline.editing.locate.locator import pool_positions
from pipeline.editing.split import Frontier, SplitModel
from pipeline.hashing import stable_key

Pair = tuple[str, str]


@dataclass
class EpisodeBank:
    """Every image of the episodes at the cut, once.

    ``frontier``: the split's frontier values, one row per image; ``pooled`` ``(N, C)``: the
    first edited module's pooled input; ``base_log_probs`` ``(N, K)``: the unedited model's;
    ``labels`` ``(N,)``: reference labels; ``pairs``: per pair, ``(counterfactual row, its
    clean image's row)``; ``clean_rows``: clean images for locality with their image ids.
    """

    frontier: Frontier
    pooled: Tensor
    base_log_probs: Tensor
    labels: Tensor
    pairs: dict[Hashable, list[tuple[int, int]]]
    clean_rows: list[int]
    clean_ids: list[str] = field(default_factory=list)
    pair_images: dict[Hashable, set[str]] = field(default_factory=dict)

    def rows(self, index: Sequence[int]) -> Frontier:
        at = torch.as_tensor(list(index), dtype=torch.long)
        return tuple(value[at] for value in self.frontier)


@dataclass(frozen=True)
class Episode:
    pair: Hashable
    exemplars: list[int]
    exemplar_clean: list[int]
    pseudo: list[int]
    locality: list[int]


def sample_episode(
    bank: EpisodeBank,
    generator: torch.Generator,
    n_exemplars: int,
    n_pseudo: int,
    n_locality: int,
    pairs: Sequence[Hashable] | None = None,
) -> Episode:
    """One episode: a pair drawn uniformly among those with more than ``n_exemplars``
    counterfactuals, its exemplars and pseudo-samples, and locality images of other content."""
    usable = [p for p in (pairs or list(bank.pairs)) if len(bank.pairs[p]) > n_exemplars]
    if not usable:
        raise ValueError(f"no pair has more than {n_exemplars} counterfactuals")
    pair = usable[int(torch.randint(len(usable), (1,), generator=generator))]
    members = bank.pairs[pair]
    order = torch.randperm(len(members), generator=generator).tolist()
    chosen = [members[i] for i in order[:n_exemplars]]
    pseudo = [members[i][0] for i in order[n_exemplars : n_exemplars + n_pseudo]]
    excluded = bank.pair_images.get(pair, set())
    candidates = [
        row
        for row, image_id in zip(
            bank.clean_rows, bank.clean_ids or [""] * len(bank.clean_rows), strict=True
        )
        if image_id not in excluded
    ]
    if not candidates:
        raise ValueError(f"pair {pair}: no clean image of other content for locality")
    picks = torch.randperm(len(candidates), generator=generator)[:n_locality].tolist()
    return Episode(
        pair,
        [cf for cf, _ in chosen],
        [clean for _, clean in chosen],
        pseudo,
        [candidates[i] for i in picks],
    )


def check_pairs(train: Sequence[Pair], test: Sequence[Pair]) -> None:
    """Refuse training pairs that are test pairs (the edit benchmark's cases)."""
    overlap = sorted(set(map(tuple, train)) & set(map(tuple, test)))
    if overlap:
        raise ValueError(
            f"training pairs include test pairs {overlap}: remove them from `pairs` (a locator "
            "must not have seen the (concept, texture) pairs it is evaluated on)"
        )


def bank_at_cut(
    split: SplitModel,
    first_module: str,
    images: Tensor,
    batch_size: int = 32,
) -> tuple[Frontier, Tensor, Tensor]:
    """Frontier rows, pooled first-module inputs and log-probabilities of ``images``."""
    frontiers: list[Frontier] = []
    pooled: list[Tensor] = []
    log_probs: list[Tensor] = []
    with torch.no_grad():
        for start in range(0, images.shape[0], batch_size):
            batch = images[start : start + batch_size]
            frontier = split.prefix(batch)
            with capture(split, first_module) as seen:
                logits = split.run_suffix(frontier)
            frontiers.append(frontier)
            pooled.append(pool_positions(seen.input))
            log_probs.append(torch.log_softmax(logits.float(), dim=1))
    joined = tuple(torch.cat([f[i] for f in frontiers]) for i in range(len(frontiers[0])))
    return joined, torch.cat(pooled), torch.cat(log_probs)


@dataclass(frozen=True)
class BankSource:
    """What a bank was built from, for the locator's record."""

    builds: list[dict[str, Any]]
    pairs: list[Pair]


def bank_from_builds(
    builds: Sequence[str | Path],
    preprocess: Callable[[list[np.ndarray]], Tensor],
    split: SplitModel,
    first_module: str,
    *,
    pairs: Sequence[Pair] | None,
    test_pairs: Sequence[Pair],
    max_per_pair: int,
    max_locality: int,
    seed: int,
    batch_size: int = 32,
    log: Callable[[str], None] = lambda _line: None,
) -> tuple[EpisodeBank, BankSource]:
    """An episode bank from the kept counterfactuals and the clean images of ``builds``.

    Args:
        builds: build folders.
        preprocess: the classifier's preprocessing (RGB arrays → model inputs).
        split: the model cut before ``first_module``.
        first_module: the first edited module (its pooled input is the locator's feature).
        pairs: (concept, texture) pairs to train on (default: every pair of the builds that
            is not a test pair); a test pair among them is refused.
        test_pairs: pairs held out for evaluation.
        max_per_pair: counterfactuals kept per pair (seeded draw).
        max_locality: clean images kept for locality (seeded draw).
        seed: seed of the draws.
        batch_size: images per forward pass.
        log: where progress lines go.
    """
    from pipeline.editing.build_images import BuildImages, Item

    rng = np.random.default_rng(seed)
    test = [tuple(p) for p in test_pairs]
    if pairs is not None:
        check_pairs(pairs, test)
    wanted = None if pairs is None else {tuple(p) for p in pairs}
    entries: list[tuple[int, Item]] = []  # (build index, item)
    row_of: dict[tuple[int, Item], int] = {}
    pair_items: dict[Pair, list[tuple[int, Item, Item]]] = {}
    clean_items: list[tuple[int, Item]] = []
    sources = []
    datas = []
    for index, build in enumerate(builds):
        data = BuildImages(build)
        datas.append(data)
        frame = data.store.frame(
            "counterfactuals", ["cf_id", "image_id", "concept", "texture", "kept"]
        )
        frame = frame[frame["kept"].astype(bool)].sort_values("cf_id")
        found: dict[Pair, list[str]] = {}
        for cf_id, concept, texture in zip(
            frame["cf_id"], frame["concept"], frame["texture"], strict=True
        ):
            found.setdefault((str(concept), str(texture)), []).append(str(cf_id))
        for pair, cf_ids in sorted(found.items()):
            if pair in test or (wanted is not None and pair not in wanted):
                continue
            take = sorted(rng.permutation(len(cf_ids))[:max_per_pair].tolist())
            for i in take:
                item = Item("cf", cf_ids[i])
                pair_items.setdefault(pair, []).append((index, item, data.clean_of(item)))
        image_ids = sorted(str(i) for i in data.images["image_id"])
        clean_items += [(index, Item("image", i)) for i in image_ids]
        sources.append(
            {
                "path": str(Path(build).resolve()),
                "counterfactuals": len(frame),
                "images": len(image_ids),
                "content": stable_key(sorted(frame["cf_id"].astype(str)), image_ids, length=16),
            }
        )
    if wanted is not None and (missing := sorted(wanted - set(pair_items))):
        raise ValueError(f"pairs {missing} have no kept counterfactual in {list(builds)}")
    if not pair_items:
        raise ValueError(f"no training pair in {list(builds)} (test pairs {test} excluded)")
    picks = sorted(rng.permutation(len(clean_items))[:max_locality].tolist())
    locality = [clean_items[i] for i in picks]
    for key in [
        *[
            (b, item)
            for members in pair_items.values()
            for b, cf, clean in members
            for item in (cf, clean)
        ],
        *locality,
    ]:
        if key not in row_of:
            row_of[key] = len(entries)
            entries.append(key)
    log(f"{len(pair_items)} pairs, {len(entries)} images to run up to the cut")
    images = preprocess([datas[b].rgb(item) for b, item in entries])
    frontier, pooled, log_probs = bank_at_cut(split, first_module, images, batch_size)
    labels = []
    for b, item in entries:
        label = datas[b].label(item)
        if label is None:  # label-free: the unedited model's top-1 on the clean image
            label = int(log_probs[row_of[(b, datas[b].clean_of(item))]].argmax())
        labels.append(int(label))
    bank = EpisodeBank(
        frontier=frontier,
        pooled=pooled,
        base_log_probs=log_probs,
        labels=torch.tensor(labels, dtype=torch.long),
        pairs={
            pair: [(row_of[(b, cf)], row_of[(b, clean)]) for b, cf, clean in members]
            for pair, members in pair_items.items()
        },
        clean_rows=[row_of[key] for key in locality],
        clean_ids=[f"{b}:{item.id}" for b, item in locality],
        pair_images={
            pair: {f"{b}:{clean.id}" for b, _, clean in members}
            for pair, members in pair_items.items()
        },
    )
    return bank, BankSource(sources, sorted(pair_items))
