"""Meta-training of a locator: learn which parameter groups an edit should change.

Per outer step, for each of ``episodes_per_step`` episodes
(:mod:`~pipeline.editing.locate.episodes`):

1. the locator scores the groups from the exemplars (:mod:`~pipeline.editing.locate.locator`);
2. the mask is the top ``(1 − sparsity)·G`` groups, differentiable through the selected ones by
   ``sigmoid(logits / T)`` (straight-through, :func:`~.masks.straight_through`);
3. ``inner_steps`` differentiable SGD steps on the exemplars' cross-entropy change the masked
   groups only (:func:`~pipeline.editing.locate.inner.masked_sgd`, ``torch.func.grad``);
4. the outer loss: cross-entropy of the pseudo-samples under the edited weights
   (generalisation) + KL of the locality images to the unedited model (locality) + the mean
   relaxed mask (sparsity), weighted by ``weights``.

The locator is trained by Adam on the mean over episodes. Only the network after the cut runs
(its inputs are cached in the bank), in eval mode. Deterministic for a seed on CPU: the
locator's initialisation and the episode draws come from seeded generators.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pipeline.editing.locate.artifact import save_locator
from pipeline.editing.locate.config import LocatorConfig
from pipeline.editing.locate.episodes import Episode, EpisodeBank, sample_episode
from pipeline.editing.locate.groups import GroupLayout, layout_params
from pipeline.editing.locate.inner import TailRunner, kl_to_reference, masked_sgd
from pipeline.editing.locate.locator import (
    Locator,
    LocatorInputs,
    exemplar_gradients,
    gradient_scores,
    pooled_features,
)
from pipeline.editing.locate.masks import straight_through
from pipeline.store.atomic import atomic_write_text

HISTORY_FILE = "history.json"
CURVES_FILE = "curves.png"


@dataclass(frozen=True)
class MetaSettings:
    """The loops' settings (the subset of :class:`LocatorConfig` :func:`meta_train` reads)."""

    sparsity: float = 0.95
    temperature: float = 1.0
    inner_steps: int = 1
    inner_lr: float = 1e-2
    steps: int = 300
    episodes_per_step: int = 2
    lr: float = 1e-3
    hidden: int = 256
    n_exemplars: int = 3
    n_pseudo: int = 8
    n_locality: int = 16
    generalisation: float = 1.0
    locality: float = 1.0
    sparsity_weight: float = 0.1
    seed: int = 0

    @classmethod
    def of(cls, config: LocatorConfig) -> MetaSettings:
        return cls(
            sparsity=config.sparsity,
            temperature=config.temperature,
            inner_steps=config.inner_steps,
            inner_lr=config.inner_lr,
            steps=config.steps,
            episodes_per_step=config.episodes_per_step,
            lr=config.lr,
            hidden=config.hidden,
            n_exemplars=config.n_exemplars,
            n_pseudo=config.n_pseudo,
            n_locality=config.n_locality,
            generalisation=config.weights.generalisation,
            locality=config.weights.locality,
            sparsity_weight=config.weights.sparsity,
            seed=config.seed,
        )


@dataclass(frozen=True)
class OuterTerms:
    """One episode's outer loss and its parts (tensors, differentiable)."""

    total: Tensor
    generalisation: Tensor
    locality: Tensor
    density: Tensor


def episode_inputs(
    tail: nn.Module, layout: GroupLayout, bank: EpisodeBank, episode: Episode
) -> LocatorInputs:
    """The locator's inputs for an episode's exemplars (unedited model)."""
    frontier = bank.rows(episode.exemplars)
    grads = exemplar_gradients(
        lambda p: torch.func.functional_call(tail, dict(p), (frontier,)),
        layout_params(tail, layout),
        bank.labels[episode.exemplars],
    )
    pooled = pooled_features(bank.pooled[episode.exemplars], bank.pooled[episode.exemplar_clean])
    return LocatorInputs(pooled, gradient_scores(layout, grads))


def outer_loss(
    tail: nn.Module,
    layout: GroupLayout,
    bank: EpisodeBank,
    episode: Episode,
    mask: Tensor,
    settings: MetaSettings,
    density: Tensor | None = None,
) -> OuterTerms:
    """The outer loss of ``mask`` (``(G,)``, any values, differentiable) on an episode.

    ``density``: the sparsity term (the mean relaxed mask); default: the mean of ``mask``.
    """
    start = layout_params(tail, layout)
    masks = layout.expand(mask, start)
    frontier = bank.rows(episode.exemplars)
    labels = bank.labels[episode.exemplars]

    def inner_loss(params: Mapping[str, Tensor]) -> Tensor:
        logits = torch.func.functional_call(tail, dict(params), (frontier,))
        return F.cross_entropy(logits, labels)

    edited = masked_sgd(
        inner_loss,
        start,
        masks,
        lr=settings.inner_lr,
        steps=settings.inner_steps,
        differentiable=True,
    )
    pseudo = torch.func.functional_call(tail, edited, (bank.rows(episode.pseudo),))
    generalisation = F.cross_entropy(pseudo, bank.labels[episode.pseudo])
    local = torch.func.functional_call(tail, edited, (bank.rows(episode.locality),))
    locality = kl_to_reference(local, bank.base_log_probs[episode.locality])
    density = mask.float().mean() if density is None else density
    total = (
        settings.generalisation * generalisation
        + settings.locality * locality
        + settings.sparsity_weight * density
    )
    return OuterTerms(total, generalisation, locality, density)


def locator_terms(
    locator: Locator,
    tail: nn.Module,
    layout: GroupLayout,
    bank: EpisodeBank,
    episode: Episode,
    settings: MetaSettings,
) -> OuterTerms:
    """The outer loss of the locator's straight-through mask on an episode."""
    logits = locator(episode_inputs(tail, layout, bank, episode))
    mask = straight_through(logits, settings.sparsity, settings.temperature)
    density = torch.sigmoid(logits / settings.temperature).mean()
    return outer_loss(tail, layout, bank, episode, mask, settings, density)


def evaluate_locator(
    locator: Locator,
    tail: nn.Module,
    layout: GroupLayout,
    bank: EpisodeBank,
    episodes: list[Episode],
    settings: MetaSettings,
) -> dict[str, float]:
    """Mean outer-loss terms over fixed episodes (``task``: generalisation + locality,
    weighted, without the sparsity term)."""
    sums = {"outer": 0.0, "generalisation": 0.0, "locality": 0.0, "task": 0.0}
    for episode in episodes:
        terms = locator_terms(locator, tail, layout, bank, episode, settings)
        generalisation = float(terms.generalisation.detach())
        locality = float(terms.locality.detach())
        sums["outer"] += float(terms.total.detach())
        sums["generalisation"] += generalisation
        sums["locality"] += locality
        sums["task"] += settings.generalisation * generalisation + settings.locality * locality
    return {key: value / max(1, len(episodes)) for key, value in sums.items()}


def meta_train(
    tail: nn.Module,
    layout: GroupLayout,
    bank: EpisodeBank,
    settings: MetaSettings,
    feature_dim: int,
    log: Callable[[str], None] = lambda _line: None,
) -> tuple[Locator, list[dict[str, float]]]:
    """Train a locator on episodes of ``bank``; returns it (eval mode) and the per-step history.

    Args:
        tail: the network after the cut (``TailRunner``), run with replaced parameters.
        layout: the parameter groups.
        bank: the episodes' images at the cut.
        settings: the loops' settings.
        feature_dim: channels at the first edited module's input.
        log: where progress lines go (every tenth of the steps).

    History rows: ``step``, ``outer``, ``generalisation``, ``locality``, ``density`` (the mean
    relaxed mask), ``sparsity`` (of the hard masks), ``seconds``.
    """
    torch.manual_seed(settings.seed)
    locator = Locator(feature_dim, layout.size, settings.hidden)
    optimiser = torch.optim.Adam(locator.parameters(), lr=settings.lr)
    generator = torch.Generator().manual_seed(settings.seed)
    history: list[dict[str, float]] = []
    tick = time.perf_counter()
    every = max(1, settings.steps // 10)
    was_training = tail.training
    tail.eval()
    locator.train()
    try:
        for step in range(settings.steps):
            episodes = [
                sample_episode(
                    bank, generator, settings.n_exemplars, settings.n_pseudo, settings.n_locality
                )
                for _ in range(settings.episodes_per_step)
            ]
            terms = [locator_terms(locator, tail, layout, bank, e, settings) for e in episodes]
            loss = torch.stack([t.total for t in terms]).mean()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            row = {
                "step": float(step),
                "outer": float(loss.detach()),
                "generalisation": sum(float(t.generalisation.detach()) for t in terms) / len(terms),
                "locality": sum(float(t.locality.detach()) for t in terms) / len(terms),
                "density": sum(float(t.density.detach()) for t in terms) / len(terms),
                "sparsity": float(settings.sparsity),
                "seconds": time.perf_counter() - tick,
            }
            history.append(row)
            if step % every == 0 or step == settings.steps - 1:
                log(
                    f"step {step + 1}/{settings.steps}: outer {row['outer']:.4f} "
                    f"(generalisation {row['generalisation']:.4f}, locality KL "
                    f"{row['locality']:.5f}, density {row['density']:.3f}) "
                    f"{row['seconds']:.0f} s"
                )
    finally:
        tail.train(was_training)
    locator.eval()
    return locator, history


def plot_history(history: list[dict[str, float]], path: str | Path) -> Path:
    """Training curves (outer loss, generalisation, locality KL, mask density) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [row["step"] + 1 for row in history]
    panels = [
        ("outer", "outer loss"),
        ("generalisation", "generalisation (pseudo-sample CE)"),
        ("locality", "locality (KL to unedited)"),
        ("density", "mean relaxed mask (sparsity term)"),
    ]
    figure, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.2))
    for axis, (key, title) in zip(axes, panels, strict=True):
        axis.plot(steps, [row[key] for row in history], linewidth=0.8)
        axis.set_title(title, fontsize=9)
        axis.set_xlabel("outer step")
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def _probe(config: LocatorConfig, classifier: Any) -> Tensor | None:
    """Two images of the first build, to verify the model's cut on real inputs."""
    from pipeline.editing.build_images import BuildImages, image

    data = BuildImages(config.builds[0])
    ids = sorted(str(i) for i in data.images["image_id"])[:2]
    if not ids:
        return None
    probe = classifier.preprocess([data.rgb(image(i)) for i in ids])
    return torch.cat([probe, probe.flip(-1)]) if probe.shape[0] == 1 else probe


def train_locator(
    config: LocatorConfig, classifier: Any | None = None, log: Callable[[str], None] | None = None
) -> Path:
    """Meta-train a locator as ``config`` says and write the artifact; returns its folder.

    Args:
        config: the training config (:class:`LocatorConfig`).
        classifier: an already loaded classifier (``model``, ``preprocess``, ``id``) instead
            of loading ``config.model``.
        log: where progress lines go (default: nowhere).

    The folder holds ``locator.safetensors``, ``locator.json`` (provenance: model id and
    weights hash, groups, builds, pairs, test pairs, seed, steps, final losses),
    ``history.json`` and ``curves.png``.
    """
    from pipeline.editing.covariance import weights_digest
    from pipeline.editing.locate.episodes import bank_from_builds, check_pairs
    from pipeline.editing.locate.groups import parameter_groups
    from pipeline.editing.split import SplitModel

    say = log or (lambda _line: None)
    if config.pairs is not None:
        check_pairs(config.pairs, config.test_pairs)
    if classifier is None:
        from pipeline.classify import EAGER, create_classifier

        classifier = create_classifier(
            config.model, engine=EAGER, device=config.device, **config.model_options
        )
    model = classifier.model.eval()
    layout = parameter_groups(model, config.blocks, config.architecture)
    say(f"{layout.size} groups in {len(layout.sets)} modules from {layout.first_module}")
    split = SplitModel.create(
        model, layout.first_module, probe=_probe(config, classifier), max_cache_bytes=0
    )
    if split is None:
        raise ValueError(f"{classifier.id} cannot be cut before {layout.first_module}")
    tick = time.perf_counter()
    bank, source = bank_from_builds(
        config.builds,
        classifier.preprocess,
        split,
        layout.first_module,
        pairs=config.pairs,
        test_pairs=config.test_pairs,
        max_per_pair=config.max_per_pair,
        max_locality=config.max_locality,
        seed=config.seed,
        batch_size=config.batch_size,
        log=say,
    )
    seconds = time.perf_counter() - tick
    say(f"episode bank: {bank.pooled.shape[0]} images at the cut ({seconds:.0f} s)")
    settings = MetaSettings.of(config)
    tail = TailRunner(split)
    locator, history = meta_train(tail, layout, bank, settings, bank.pooled.shape[1], say)
    last = history[-max(1, len(history) // 10) :]
    final = {
        key: sum(row[key] for row in last) / len(last)
        for key in ("outer", "generalisation", "locality", "density")
    }
    record = {
        "model_id": classifier.id,
        "weights_hash": weights_digest(model),
        "builds": source.builds,
        "pairs": [list(pair) for pair in source.pairs],
        # per pair, the clean images its episodes drew from ("build index:image id"), so that
        # a measurement of the trained locator can hold them out (specificity.py)
        "pair_images": {
            f"{concept}/{texture}": sorted(bank.pair_images.get((concept, texture), ()))
            for concept, texture in source.pairs
        },
        "test_pairs": [list(pair) for pair in config.test_pairs],
        "seed": config.seed,
        "steps": config.steps,
        "final_losses": final,
        "train_s": history[-1]["seconds"] if history else 0.0,
        "config": json.loads(config.model_dump_json()),
        "torch": torch.__version__,
    }
    folder = save_locator(config.out, locator, layout, record)
    atomic_write_text(folder / HISTORY_FILE, json.dumps(history) + "\n")
    plot_history(history, folder / CURVES_FILE)
    say(f"locator written to {folder}")
    return folder
