"""TCAV with captum (`captum.concept.TCAV`, `Concept`, `CAV`) on precomputed activations.

Experiment (Kim et al. 2018), per seed and layer:

- concept CAVs: the concept's examples against random set `R_i`, i = 1..N;
- null CAVs: a random "concept" `R*_i` (another random set for each run, so the null's runs
  are independent) against the same `R_i` — or, with `negatives="concepts"`, both against the
  i-th draw of the other concepts' examples instead of `R_i`;
- the TCAV score of a class is captum's `sign_count`: the share of the class's images whose
  class logit increases along the CAV (gradient · CAV > 0) at that layer.

How captum is fed so that it is fast and cacheable: activations are computed here, once per
layer for every crop (one forward pass serves all layers), and written into captum's AV store
(`AV.save`); CAVs are trained by captum's `train_cav` from that store with a seeded
`captum.concept.Classifier` and saved by captum (`<save_path>/<model_id>/<ids>-<layer>.pkl`);
`TCAV.interpret` then finds every CAV saved and only computes the class images' gradients,
once per (class, layer) for all experimental sets of all seeds (each distinct pair once).
(`TCAV.compute_cavs` cannot be given stored activations: its `load_cavs` checks `AV.exists`
with the layer and identifier swapped, so it would recompute them through each concept's data
iterator.)
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from captum._utils.av import AV
from captum.concept import CAV, TCAV, Concept
from captum.concept._core.tcav import train_cav
from captum.concept._utils.common import concepts_to_str

from pipeline.concepts.activations import layer_activations
from pipeline.concepts.cav import create_cav_classifier
from pipeline.concepts.settings import TcavSettings
from pipeline.concepts.stats import adjust, significance

RUN_COLUMNS = [
    "class_index", "concept", "layer", "seed", "run", "kind", "score", "magnitude", "cav_accuracy",
]  # fmt: skip


@dataclass
class TcavData:
    """The model inputs of one TCAV experiment (already preprocessed, N x 3 x H x W).

    Args:
        concepts: concept name → its examples (masked crops).
        random_pool: random crops that the random sets are drawn from.
        class_inputs: class index → images whose gradients are tested.
    """

    concepts: Mapping[str, torch.Tensor]
    random_pool: torch.Tensor
    class_inputs: Mapping[int, torch.Tensor]


@dataclass
class TcavResult:
    """Scores per random run, and each concept's mean CAV per layer (first seed, for maps)."""

    runs: pd.DataFrame
    cavs: dict[tuple[str, str], torch.Tensor] = field(default_factory=dict)
    activations_computed: int = 0  # crops passed through the model (0 on a cached run)
    cavs_trained: int = 0  # CAVs trained (0 on a cached run)


def _rng(*parts: object) -> np.random.Generator:
    digest = hashlib.sha256(":".join(map(str, parts)).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def _draw(count: int, size: int, *key: object) -> np.ndarray:
    """`min(count, size)` distinct indices of `range(size)`, seeded by `key`, sorted."""
    return np.sort(_rng(*key).choice(size, size=min(count, size), replace=False))


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]+", "_", name).strip("_") or "concept"


@dataclass
class _Set:
    """One concept-like set of examples: captum's `Concept` and which crops it holds."""

    concept: Concept
    source: str  # a concept name, "random", or "others:<concept>"
    index: np.ndarray


class _Plan:
    """Every set and experimental pair of the experiment, with deterministic captum ids.

    Concept ids are `seed · block + local`, so one seed's CAV files never change when seeds or
    layers are added, and ids never collide inside the one `TCAV` instance.
    """

    def __init__(self, names: Sequence[str], sizes: Mapping[str, int], pool: int, s: TcavSettings):
        self.names = sorted(names)
        n, nc = s.n_random, len(self.names)
        block = nc + 2 * n + nc * n
        self.sets: list[_Set] = []
        self.pairs: list[tuple[int, str, str, int, list[Concept]]] = []  # seed, concept, kind, run
        for seed in s.seeds:
            base = seed * block

            def make(
                local: int,
                name: str,
                source: str,
                index: np.ndarray,
                seed: int = seed,
                base: int = base,
            ) -> Concept:
                concept = Concept(base + local, f"{name}_s{seed}", None)
                self.sets.append(_Set(concept, source, index))
                return concept

            def draw(*key: object, seed: int = seed) -> np.ndarray:
                return _draw(s.n_examples, pool, seed, *key)

            concepts = {
                c: make(j, _safe(c), c, _draw(s.n_examples, sizes[c], seed, "concept", c))
                for j, c in enumerate(self.names)
            }
            # one random "concept" per run, so the null's runs are independent draws
            random_concepts = [
                make(nc + i, f"random_concept{i}", "random", draw("random*", i)) for i in range(n)
            ]
            randoms = [
                make(nc + n + i, f"random{i}", "random", draw("random", i)) for i in range(n)
            ]
            for j, c in enumerate(self.names):
                for i in range(n):
                    if s.negatives == "concepts":
                        others = sum(sizes[o] for o in self.names if o != c)
                        if others == 0:
                            raise ValueError("negatives='concepts' needs at least two concepts")
                        negative = make(
                            nc + 2 * n + j * n + i,
                            f"others{j}_{i}",
                            f"others:{c}",
                            _draw(s.n_examples, others, seed, "others", c, i),
                        )
                    else:
                        negative = randoms[i]
                    self.pairs.append((seed, c, "concept", i, [concepts[c], negative]))
                    self.pairs.append((seed, c, "random", i, [random_concepts[i], negative]))

    def unique_pairs(self) -> list[list[Concept]]:
        seen: dict[str, list[Concept]] = {}
        for *_, pair in self.pairs:
            seen.setdefault(concepts_to_str(pair), pair)
        return list(seen.values())


def _examples(data: TcavData, names: Sequence[str], source: str) -> torch.Tensor:
    if source == "random":
        return data.random_pool
    if source.startswith("others:"):
        excluded = source.split(":", 1)[1]
        return torch.cat([data.concepts[o] for o in sorted(names) if o != excluded])
    return data.concepts[source]


def run_tcav(
    model: torch.nn.Module,
    layers: Sequence[str],
    data: TcavData,
    settings: TcavSettings,
    save_path: str,
    model_id: str,
) -> TcavResult:
    """TCAV scores of every (class, concept, layer) per seed and random run, with the nulls.

    Args:
        model: the classifier's torch module (eval mode); layers are its named modules.
        layers: module names whose outputs the CAVs live in.
        data: the concepts' examples, the random pool and the class images (model inputs).
        settings: runs, seeds, examples per set, CAV method.
        save_path: captum's store for activations and CAVs (reused by later runs).
        model_id: captum's model id: names the store's folder; must change with the weights
            and with anything that changes a set's examples.

    Returns:
        `runs` (one row per class, concept, layer, seed, run and kind — `concept` or its
        `random` null — with `score` = captum's sign_count, `magnitude`, `cav_accuracy`) and
        the concepts' mean CAVs.
    """
    layers = list(layers)
    sizes = {c: len(x) for c, x in data.concepts.items()}
    plan = _Plan(list(data.concepts), sizes, len(data.random_pool), settings)
    missing = [
        (item, layer)
        for item in plan.sets
        for layer in layers
        if not AV.exists(save_path, model_id, item.concept.identifier, layer)
    ]
    computed = 0
    if missing:
        sources = sorted({item.source for item, _ in missing})
        bases = {"random" if s == "random" else s.split(":", 1)[-1] for s in sources}
        bases |= {c for s in sources if s.startswith("others:") for c in data.concepts}
        acts: dict[str, dict[str, torch.Tensor]] = {}
        for base in sorted(bases):
            examples = data.random_pool if base == "random" else data.concepts[base]
            acts[base] = layer_activations(model, layers, examples, settings.batch_size)
            computed += len(examples)
        for item, layer in missing:
            if item.source.startswith("others:"):
                excluded = item.source.split(":", 1)[1]
                stacked = torch.cat([acts[o][layer] for o in plan.names if o != excluded])
            else:
                stacked = acts[item.source][layer]
            chosen = stacked[torch.from_numpy(item.index)].flatten(1)
            AV.save(save_path, model_id, item.concept.identifier, layer, chosen, "0")

    classifier = create_cav_classifier(settings.cav, settings.test_split, seed=0)
    CAV.create_cav_dir_if_missing(save_path, model_id)
    accuracy: dict[tuple[str, str], float] = {}
    for pair in plan.unique_pairs():
        todo = []
        for layer in layers:
            cav = CAV.load(save_path, model_id, pair, layer)
            if cav is None:
                todo.append(layer)
            else:
                accuracy[(concepts_to_str(pair), layer)] = float(cav.stats["accs"])
        if todo:
            trained = train_cav(model_id, pair, todo, classifier, save_path, {})
            for layer, cav in trained[concepts_to_str(pair)].items():
                accuracy[(concepts_to_str(pair), layer)] = float(cav.stats["accs"])

    tcav = TCAV(model, layers, model_id=model_id, classifier=classifier, save_path=save_path)
    experimental_sets = plan.unique_pairs()  # a null pair serves every concept of its run
    rows = []
    device = next(model.parameters()).device
    for class_index, inputs in sorted(data.class_inputs.items()):
        scores = tcav.interpret(inputs.to(device), experimental_sets, target=int(class_index))
        for seed, concept, kind, run, pair in plan.pairs:
            key = concepts_to_str(pair)
            for layer in layers:
                result = scores[key][layer]
                rows.append(
                    (int(class_index), concept, layer, seed, run, kind,
                     float(result["sign_count"][0]), float(result["magnitude"][0]),
                     accuracy[(key, layer)])
                )  # fmt: skip
    cavs = _mean_cavs(plan, layers, save_path, model_id, settings.seeds[0])
    return TcavResult(pd.DataFrame(rows, columns=RUN_COLUMNS), cavs, computed, classifier.trained)


def _mean_cavs(
    plan: _Plan, layers: Sequence[str], save_path: str, model_id: str, seed: int
) -> dict[tuple[str, str], torch.Tensor]:
    """Each concept's CAV (its row of the weights) averaged over the random runs of `seed`."""
    sums: dict[tuple[str, str], list[torch.Tensor]] = {}
    for pair_seed, concept, kind, _run, pair in plan.pairs:
        if pair_seed != seed or kind != "concept":
            continue
        for layer in layers:
            cav = CAV.load(save_path, model_id, pair, layer)
            if cav is None:
                continue
            classes = [int(c) for c in cav.stats["classes"]]
            row = cav.stats["weights"][classes.index(pair[0].id)].float()
            sums.setdefault((concept, layer), []).append(row / (row.norm() or 1.0))
    return {key: torch.stack(rows).mean(0) for key, rows in sums.items()}


SCORE_COLUMNS = [
    "class_index", "concept", "layer", "score", "score_std_runs", "score_std_seeds",
    "random_score", "random_score_std", "magnitude", "p_value", "p_adjusted", "significant",
    "cav_accuracy", "cav_accuracy_std", "n_random", "n_seeds",
]  # fmt: skip


def summarize_runs(runs: pd.DataFrame, settings: TcavSettings) -> pd.DataFrame:
    """Per (class, concept, layer): the score, its spread over runs and seeds, the null, the
    test and its correction over every row, and the CAVs' held-out accuracy.

    Args:
        runs: `TcavResult.runs`.
        settings: `alpha` and `correction`.

    Returns:
        One row per (class, concept, layer) with `SCORE_COLUMNS`.
    """
    rows = []
    for (class_index, concept, layer), group in runs.groupby(
        ["class_index", "concept", "layer"], sort=True
    ):
        own = group[group["kind"] == "concept"]
        null = group[group["kind"] == "random"]
        per_seed = own.groupby("seed")["score"]
        seed_means = per_seed.mean()
        rows.append(
            {
                "class_index": int(class_index),
                "concept": concept,
                "layer": layer,
                "score": float(own["score"].mean()),
                "score_std_runs": float(per_seed.std(ddof=1).mean()),
                "score_std_seeds": float(seed_means.std(ddof=1)) if len(seed_means) > 1 else np.nan,
                "random_score": float(null["score"].mean()),
                "random_score_std": float(null["score"].std(ddof=1)),
                "magnitude": float(own["magnitude"].mean()),
                "p_value": significance(own["score"], null["score"]),
                "cav_accuracy": float(own["cav_accuracy"].mean()),
                "cav_accuracy_std": float(own["cav_accuracy"].std(ddof=1)),
                "n_random": int(own["run"].nunique()),
                "n_seeds": int(own["seed"].nunique()),
            }
        )
    table = pd.DataFrame(rows)
    if table.empty:
        return pd.DataFrame(columns=SCORE_COLUMNS)
    table["p_adjusted"] = adjust(table["p_value"].to_numpy(), settings.correction)
    table["significant"] = table["p_adjusted"] < settings.alpha
    return table[SCORE_COLUMNS]
