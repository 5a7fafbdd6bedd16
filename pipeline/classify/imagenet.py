"""ImageNet-1k class names and synsets, from the tables timm ships (no download)."""

from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=1)
def _info():  # type: ignore[no-untyped-def]
    from timm.data import ImageNetInfo

    return ImageNetInfo("imagenet-1k")


@lru_cache(maxsize=1)
def class_names() -> list[str]:
    """Unique short names in class-index order, e.g. index 817 → `sports_car`.

    The first synonym of each class; the two names WordNet uses twice (`crane`, `maillot`) get
    their synset appended on the second use so that names stay unique.
    """
    info = _info()
    names: list[str] = []
    for i in range(1000):
        name = info.index_to_description(i).split(",")[0].strip().replace(" ", "_")
        names.append(f"{name}_{info.index_to_label_name(i)}" if name in names else name)
    return names


@lru_cache(maxsize=1)
def synsets() -> list[str]:
    """WordNet ids in class-index order, e.g. index 817 → `n04285008`."""
    info = _info()
    return [info.index_to_label_name(i) for i in range(1000)]


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
