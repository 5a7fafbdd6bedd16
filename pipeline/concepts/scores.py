"""`concept_scores`: TCAV of a build's concepts for a classifier, cached in the build.

```
BUILD/concepts/<classifier slug>/concept_scores.parquet   the ConceptScore rows (the cache)
BUILD/concepts/<classifier slug>/concept_runs.parquet     every random run's score
BUILD/concepts/<classifier slug>/cav/                     captum's AV and CAV store
BUILD/concepts/<classifier slug>/references.parquet       clean top-1 of unlabelled images
```

Two cache levels: the table is keyed by everything it depends on (classifier id, layers,
concepts and their masks, classes and their images, settings), so an identical second run
reads it and computes nothing; the CAV store is keyed by the classifier id, the concept set and
the settings that change a CAV's examples, with one file per (concept set, layer), so a run
with another class or another layer reuses every CAV it shares.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from pipeline.classify import Classifier
from pipeline.concepts.activations import input_size, layer_activations, mean_colour, to_input
from pipeline.concepts.build_inputs import (
    BuildImages,
    class_images,
    classes_by_count,
    concept_crops,
    load_build,
    random_crops,
)
from pipeline.concepts.crops import resize
from pipeline.concepts.location import cav_maps, location_scores, upsample
from pipeline.concepts.records import ConceptScore
from pipeline.concepts.settings import TcavSettings
from pipeline.concepts.tcav import TcavData, run_tcav, summarize_runs
from pipeline.hashing import stable_key
from pipeline.store.manifest import write_table

VERSION = "concepts-v1"
SCORES_FILE = "concept_scores.parquet"
RUNS_FILE = "concept_runs.parquet"
REFERENCES_FILE = "references.parquet"  # clean predictions of unlabelled images
_META_KEY = b"conceptswap.concepts"
EXAMPLES_PER_SEED = 3  # crops kept per concept: n_examples × this, so seeds draw different sets

logger = logging.getLogger("conceptswap.concepts")


def classifier_slug(classifier_id: str) -> str:
    """A folder name for a classifier id (as the audit report names its folders)."""
    return re.sub(r"[^A-Za-z0-9_.]+", "-", classifier_id).strip("-.") or "classifier"


def concepts_dir(build_dir: str | Path, classifier_id: str) -> Path:
    return Path(build_dir).resolve() / "concepts" / classifier_slug(classifier_id)


def load_concept_scores(build_dir: str | Path, classifier_id: str) -> pd.DataFrame:
    """The stored scores of one classifier on a build, under the declared schema."""
    path = concepts_dir(build_dir, classifier_id) / SCORES_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no concept scores of {classifier_id} in {build_dir}: {path}")
    return pq.read_table(path).cast(ConceptScore.arrow_schema()).to_pandas()


def _read_cached(path: Path, key: str) -> pd.DataFrame | None:
    if not path.is_file():
        return None
    table = pq.read_table(path)
    if (table.schema.metadata or {}).get(_META_KEY) != key.encode():
        return None
    return table.cast(ConceptScore.arrow_schema()).to_pandas()


def concept_scores(
    build_dir: str | Path,
    classifier: Classifier,
    layers: Sequence[str],
    concepts: Sequence[str] | None = None,
    classes: Sequence[int] | int | None = None,
    settings: TcavSettings | None = None,
) -> pd.DataFrame:
    """TCAV scores of a build's concepts per (class, concept, layer), with their trust metrics.

    Args:
        build_dir: a build with images and masks manifests.
        classifier: the audited classifier (`pipeline.classify.create_classifier`); its torch
            `model` gives the gradients.
        layers: module names of `classifier.model` (e.g. `["blocks.4", "blocks.5"]`).
        concepts: concepts whose masks give the examples (default: every concept of the
            build's masks but `object`).
        classes: class indices to test, or a count (the most frequent reference classes);
            default every class with at least `settings.min_inputs` images.
        settings: `TcavSettings` (runs, seeds, CAV method, negatives, correction).

    Returns:
        The `ConceptScore` rows as a DataFrame (also in `concept_scores.parquet`). Its
        `attrs["computed"]` says what this call computed: `{"activations": crops through the
        model, "cavs": CAVs trained, "cached": whether the table was read as it was}`.
    """
    settings = settings or TcavSettings()
    named = concepts is not None  # named concepts must all be usable; found ones may be skipped
    layers = list(layers)
    folder = concepts_dir(build_dir, classifier.id)
    build = load_build(
        str(build_dir), classifier, settings.batch_size, settings.min_area,
        folder / REFERENCES_FILE,
    )  # fmt: skip
    if concepts is None:
        concepts = sorted(c for c in build.masks["concept"].unique() if c != "object")
    concepts = sorted(concepts)
    absent = sorted(set(concepts) - set(build.masks["concept"]))
    if absent:
        raise ValueError(f"{build_dir}: no masks of {absent} (area >= {settings.min_area})")
    if classes is None or isinstance(classes, int):
        classes = classes_by_count(build.images, classes, settings.min_inputs)
    classes = sorted(int(c) for c in classes)
    inputs = class_images(build, classes, settings.max_inputs, input_size(classifier))
    masks_of = {
        c: sorted(build.masks.loc[build.masks["concept"] == c, "mask_id"]) for c in concepts
    }
    cav_key = stable_key(
        VERSION, classifier.id, masks_of, sorted(build.images["image_id"]),
        settings.model_dump(include={"n_random", "n_examples", "random_pool", "negatives", "cav",
                                     "test_split", "min_area", "crop_margin"}),
    )  # fmt: skip
    table_key = stable_key(
        cav_key, layers, {c: sorted(rows["image_id"]) for c, rows in inputs.items()},
        settings.model_dump(mode="json"),
    )  # fmt: skip
    cached = _read_cached(folder / SCORES_FILE, table_key)
    if cached is not None:
        cached.attrs["computed"] = {"activations": 0, "cavs": 0, "cached": True}
        return cached

    size, fill = input_size(classifier), mean_colour(classifier)
    crops = {
        c: concept_crops(build, c, settings.n_examples * EXAMPLES_PER_SEED, size, fill,
                         settings.crop_margin)
        for c in concepts
    }  # fmt: skip
    empty = [c for c, (examples, _) in crops.items() if len(examples) < 2]
    if empty and (named or len(empty) == len(crops)):
        raise ValueError(f"{build_dir}: fewer than 2 usable masks of {empty}")
    if empty:  # a build's rare concepts (a part found in one photo): left out, and said so
        logger.warning("concept scores: skipped %s (fewer than 2 usable masks)", empty)
        crops = {c: found for c, found in crops.items() if c not in empty}
    pool, _ = random_crops(build, settings.random_pool, size)
    tested = {c: rows for c, rows in inputs.items() if len(rows) >= settings.min_inputs}
    data = TcavData(
        concepts={c: to_input(classifier, examples) for c, (examples, _) in crops.items()},
        random_pool=to_input(classifier, pool),
        class_inputs={c: to_input(classifier, list(rows["pixels"])) for c, rows in tested.items()},
    )
    model = classifier.model.eval()
    result = run_tcav(model, layers, data, settings, str(folder / "cav"), cav_key)
    summary = summarize_runs(result.runs, settings)
    located = _locate(build, model, layers, tested, data, result.cavs, settings)
    rows = _records(classifier, summary, tested, crops, located, settings)
    table = pa.Table.from_pylist([r.to_row() for r in rows], schema=ConceptScore.arrow_schema())
    metadata = {_META_KEY: table_key.encode()}
    write_table(folder / RUNS_FILE, pa.Table.from_pandas(result.runs, preserve_index=False))
    write_table(folder / SCORES_FILE, table.replace_schema_metadata(metadata))
    frame = table.to_pandas()
    frame.attrs["computed"] = {
        "activations": result.activations_computed,
        "cavs": result.cavs_trained,
        "cached": False,
    }
    return frame


def _locate(
    build: BuildImages,
    model: torch.nn.Module,
    layers: Sequence[str],
    inputs: dict[int, pd.DataFrame],
    data: TcavData,
    cavs: dict[tuple[str, str], torch.Tensor],
    settings: TcavSettings,
) -> dict[tuple[int, str, str], dict[str, float]]:
    """Mean location scores of each concept's CAV map on its masks in each class's images."""
    located: dict[tuple[int, str, str], dict[str, float]] = {}
    concepts = sorted({c for c, _ in cavs})
    for class_index, rows in inputs.items():
        masks = build.masks[build.masks["image_id"].isin(rows["image_id"])]
        if masks.empty:
            continue
        acts = layer_activations(model, layers, data.class_inputs[class_index], settings.batch_size)
        position = {image_id: i for i, image_id in enumerate(rows["image_id"])}
        size = rows["pixels"].iloc[0].shape[0]
        for concept in concepts:
            chosen = masks[masks["concept"] == concept]
            if chosen.empty:
                continue
            truths = {
                r.image_id: resize(build.store.load_mask(r.path).astype(np.uint8), size, True) > 0
                for r in chosen.itertuples(index=False)
            }
            for layer in layers:
                if (concept, layer) not in cavs:
                    continue
                maps = cav_maps(acts[layer], cavs[(concept, layer)])
                scores = [
                    location_scores(upsample(maps[position[i]], size, size), truth,
                                    settings.map_threshold)
                    for i, truth in truths.items()
                ]  # fmt: skip
                mean = {k: float(np.nanmean([s[k] for s in scores])) for k in scores[0]}
                located[(class_index, concept, layer)] = {**mean, "n": len(scores)}
    return located


def _records(
    classifier: Classifier,
    summary: pd.DataFrame,
    inputs: dict[int, pd.DataFrame],
    crops: dict[str, tuple[list[np.ndarray], list[str]]],
    located: dict[tuple[int, str, str], dict[str, float]],
    settings: TcavSettings,
) -> list[ConceptScore]:
    names = list(classifier.class_names)
    records = []
    for row in summary.to_dict("records"):
        key = (int(row["class_index"]), row["concept"], row["layer"])
        where = located.get(key, {})
        seed_std = row["score_std_seeds"]
        records.append(
            ConceptScore(
                classifier_id=classifier.id,
                class_index=key[0],
                class_name=names[key[0]] if key[0] < len(names) else str(key[0]),
                concept=key[1],
                layer=key[2],
                cav_method=settings.cav,
                score=row["score"],
                score_std_runs=row["score_std_runs"],
                score_std_seeds=None if pd.isna(seed_std) else float(seed_std),
                random_score=row["random_score"],
                random_score_std=row["random_score_std"],
                magnitude=row["magnitude"],
                p_value=row["p_value"],
                p_adjusted=row["p_adjusted"],
                significant=bool(row["significant"]),
                cav_accuracy=row["cav_accuracy"],
                cav_accuracy_std=row["cav_accuracy_std"],
                n_random=int(row["n_random"]),
                n_seeds=int(row["n_seeds"]),
                n_inputs=len(inputs[key[0]]),
                n_examples=len(crops[key[1]][0]),
                n_located=int(where.get("n", 0)),
                iou=where.get("iou"),
                pointing=where.get("pointing"),
                iou_whole=where.get("iou_whole"),
                iou_ellipse=where.get("iou_ellipse"),
                pointing_centre=where.get("pointing_centre"),
            )
        )
    return records
