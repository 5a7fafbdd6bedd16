"""ImageNet-1k class names and synsets, from the tables timm ships (no download).

The tables are read as files, without importing timm (5 s on a small machine): a re-run of a
finished build needs the class names but never loads a model.
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path


def _timm_info_file(name: str) -> Path:
    spec = importlib.util.find_spec("timm")  # finds the package without running its __init__
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("timm is not installed: it ships the ImageNet class tables")
    return Path(spec.submodule_search_locations[0]) / "data" / "_info" / name


@lru_cache(maxsize=1)
def _lemmas() -> dict[str, str]:
    text = _timm_info_file("imagenet_synset_to_lemma.txt").read_text(encoding="utf-8")
    pairs = (line.split("\t", 1) for line in text.splitlines() if line.strip())
    return {synset: lemma for synset, lemma in pairs}


@lru_cache(maxsize=1)
def class_names() -> list[str]:
    """Unique short names in class-index order, e.g. index 817 → `sports_car`.

    The first synonym of each class; the two names WordNet uses twice (`crane`, `maillot`) get
    their synset appended on the second use so that names stay unique.
    """
    lemmas = _lemmas()
    names: list[str] = []
    for synset in synsets():
        name = lemmas[synset].split(",")[0].strip().replace(" ", "_")
        names.append(f"{name}_{synset}" if name in names else name)
    return names


@lru_cache(maxsize=1)
def synsets() -> list[str]:
    """WordNet ids in class-index order, e.g. index 817 → `n04285008`."""
    path = _timm_info_file("imagenet_synsets.txt")
    found = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if len(found) != 1000:
        raise ValueError(f"{path}: {len(found)} synsets, not 1000")
    return found


def class_index(name: str) -> int:
    """Index of a class given its short name (`car_wheel`), synset (`n02974003`) or number."""
    if name.isdigit():
        return int(name)
    if name in synsets():
        return synsets().index(name)
    key = name.strip().replace(" ", "_").lower()
    lowered = [n.lower() for n in class_names()]
    if key not in lowered:
        raise KeyError(f"no ImageNet class named {name!r}")
    return lowered.index(key)
