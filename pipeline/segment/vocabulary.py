"""The concept vocabulary: canonical names, synonyms and which backend finds which concept.

A build asks for concepts by name (`road`, `wheel`, `tyre`...); `canonical` turns any known
spelling into the one canonical name every backend reports, so `tyre` and `tire`, COCO
panoptic's `grass-merged` and `grass`, LVIS's `car_(automobile)` and COCO's `car` are the same
concept. `coverage` says which backend finds which concept, `backends_for` which backends can
serve one concept. The tables are data files in `pipeline/segment/data/`:

* `vocabulary.yaml` — canonical concepts with kind, synonyms and WordNet anchors;
* `coco_categories.json` — the 80 COCO things (with their COCO ids) and the 53 panoptic stuff;
* `lvis_subset.yaml` — the LVIS v1 categories the detectron2 LVIS model reports, mapped to
  concepts.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

DATA_DIR = Path(__file__).resolve().parent / "data"
KINDS = ("image", "thing", "stuff", "part")
# COCO panoptic / COCO-stuff name suffixes that do not change the concept.
_SUFFIXES = ("_merged", "_other", "_stuff")
# Order in which `backends_for` lists backends: best masks first, ground truth last.
BACKEND_PREFERENCE = (
    "detectron2",
    "transformers-panoptic",
    "torchvision-maskrcnn",
    "cam",
    "grounded-sam",
    "clipseg",
    "annotations",
)


class UnknownConceptError(KeyError):
    """A concept name that the vocabulary does not know; the message suggests close names."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


@dataclass(frozen=True)
class Concept:
    name: str
    kind: str
    synonyms: tuple[str, ...]
    wordnet: tuple[str, ...]  # NLTK-style sense names (lemma.n.NN) or WordNet ids (n01234567)


@dataclass(frozen=True)
class Vocabulary:
    concepts: dict[str, Concept]
    lookup: dict[str, str]  # normalised spelling → canonical name


def normalize(name: str) -> str:
    """Lower case, spaces and hyphens as `_`: `Traffic Light` → `traffic_light`."""
    text = re.sub(r"[\s\-]+", "_", str(name).strip().lower())
    return re.sub(r"_+", "_", text).strip("_")


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise ValueError(f"cannot read vocabulary data {path}: {error}") from None


@lru_cache(maxsize=1)
def load_vocabulary() -> Vocabulary:
    """Parse and check `vocabulary.yaml`: kinds known, no spelling claimed by two concepts."""
    path = DATA_DIR / "vocabulary.yaml"
    document = _read_yaml(path) or {}
    concepts: dict[str, Concept] = {}
    lookup: dict[str, str] = {}
    for name, entry in (document.get("concepts") or {}).items():
        if normalize(name) != name:
            raise ValueError(f"{path}: concept {name!r} is not in canonical form")
        kind = entry.get("kind")
        if kind not in KINDS:
            raise ValueError(f"{path}: concept {name!r} has kind {kind!r}; expected one of {KINDS}")
        concept = Concept(
            name=name,
            kind=kind,
            synonyms=tuple(str(s) for s in entry.get("synonyms") or ()),
            wordnet=tuple(str(s) for s in entry.get("wordnet") or ()),
        )
        concepts[name] = concept
        for spelling in (name, *concept.synonyms):
            key = normalize(spelling)
            if lookup.get(key, name) != name:
                raise ValueError(f"{path}: {spelling!r} names both {lookup[key]!r} and {name!r}")
            lookup[key] = name
    return Vocabulary(concepts=concepts, lookup=lookup)


def all_concepts() -> tuple[str, ...]:
    """Every canonical concept, in the vocabulary file's order."""
    return tuple(load_vocabulary().concepts)


def concept_kind(concept: str) -> str:
    return load_vocabulary().concepts[canonical(concept)].kind


def canonical(name: str, strict: bool = True) -> str:
    """The canonical concept for any known spelling (`tyre` → `tire`, `sky-other-merged` → `sky`).

    Unknown names raise UnknownConceptError (with suggestions), or with `strict=False` come back
    normalised: ground-truth annotations may name concepts the vocabulary does not have.
    """
    lookup = load_vocabulary().lookup
    key = normalize(name)
    candidate = key
    while True:
        if candidate in lookup:
            return lookup[candidate]
        stripped = next((candidate[: -len(s)] for s in _SUFFIXES if candidate.endswith(s)), None)
        if not stripped:
            break
        candidate = stripped
    if not strict:
        return key
    close = difflib.get_close_matches(key, list(lookup), n=3, cutoff=0.75)
    hint = f"; did you mean {', '.join(sorted({lookup[c] for c in close}))}?" if close else ""
    raise UnknownConceptError(f"unknown concept {name!r}{hint} (see docs/segmentation.md)")


# ------------------------------------------------------------------ backend label spaces


@lru_cache(maxsize=1)
def coco_categories() -> tuple[dict[str, Any], ...]:
    """The 133 COCO panoptic categories: {id, name, isthing}, things first (COCO id order)."""
    path = DATA_DIR / "coco_categories.json"
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"cannot read {path}: {error}") from None
    return tuple(document["categories"])


def coco_thing_names() -> list[str]:
    """The 80 COCO thing names in contiguous order (detectron2's `thing_classes`)."""
    return [c["name"] for c in coco_categories() if c["isthing"]]


def coco_stuff_names() -> list[str]:
    """The 53 COCO panoptic stuff names as the panoptic JSON spells them (`sky-other-merged`)."""
    return [c["name"] for c in coco_categories() if not c["isthing"]]


def coco_label_names() -> list[str]:
    """torchvision's 91-slot COCO label list: index = COCO id, `__background__` and `N/A` gaps."""
    names = ["N/A"] * 91
    names[0] = "__background__"
    for category in coco_categories():
        if category["isthing"]:
            names[category["id"]] = category["name"]
    return names


@lru_cache(maxsize=1)
def lvis_subset() -> dict[str, str]:
    """LVIS v1 category name → canonical concept, for the curated categories we use."""
    path = DATA_DIR / "lvis_subset.yaml"
    document = _read_yaml(path) or {}
    table: dict[str, str] = {}
    for entry in document.get("categories", []):
        table[str(entry["name"])] = canonical(str(entry["concept"]))
    return table


def label_map(labels: Iterable[str], restrict: dict[str, str] | None = None) -> dict[str, str]:
    """Backend label → canonical concept, for the labels the vocabulary knows.

    `restrict` (label → concept) replaces the synonym lookup when a label space is curated
    (LVIS): labels outside it are left out.
    """
    mapping: dict[str, str] = {}
    for label in labels:
        if restrict is not None:
            if label in restrict:
                mapping[label] = restrict[label]
            continue
        concept = canonical(label, strict=False)
        if concept in load_vocabulary().concepts:
            mapping[label] = concept
    return mapping


@lru_cache(maxsize=1)
def coverage() -> dict[str, tuple[str, ...]]:
    """Backend name → the canonical concepts it can find (vocabulary order).

    `annotations` covers every concept: ground truth can name anything, as long as the
    annotation files have it.
    """
    from pipeline.segment.cam_concepts import supported_concepts

    order = {name: i for i, name in enumerate(all_concepts())}
    vocabulary = load_vocabulary()

    def ordered(concepts: Iterable[str]) -> tuple[str, ...]:
        return tuple(sorted(set(concepts), key=order.__getitem__))

    coco_things = label_map(coco_thing_names()).values()
    panoptic = label_map(coco_thing_names() + coco_stuff_names()).values()
    lvis = lvis_subset().values()
    return {
        "detectron2": ordered([*panoptic, *lvis]),
        "torchvision-maskrcnn": ordered(coco_things),
        "cam": ordered(canonical(c) for c in supported_concepts()),
        # the default checkpoint's labels (COCO panoptic things and stuff)
        "transformers-panoptic": ordered(panoptic),
        # text prompts: any concept that is a region of the image
        "clipseg": tuple(c for c in all_concepts() if vocabulary.concepts[c].kind != "image"),
        "grounded-sam": tuple(c for c in all_concepts() if vocabulary.concepts[c].kind != "image"),
        "annotations": all_concepts(),
    }


def backends_for(concept: str) -> list[str]:
    """Backends that can find `concept` (any spelling), best first, `annotations` last."""
    name = canonical(concept)
    table = coverage()
    return [backend for backend in BACKEND_PREFERENCE if name in table.get(backend, ())]


__all__ = [
    "BACKEND_PREFERENCE",
    "Concept",
    "UnknownConceptError",
    "Vocabulary",
    "all_concepts",
    "backends_for",
    "canonical",
    "coco_categories",
    "coco_label_names",
    "coco_stuff_names",
    "coco_thing_names",
    "concept_kind",
    "coverage",
    "label_map",
    "load_vocabulary",
    "lvis_subset",
    "normalize",
]
