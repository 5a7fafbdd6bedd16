"""Near-name suggestions for every "unknown name" message (concepts, textures, models, keys).

One helper so that every error says "did you mean ..." the same way and with the same
threshold: a typo (`wheell`, `tf_efficientnet_lite9`, `backnd`) is one edit away from the name
the user meant, and a list of every choice is only useful when it is short.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

CUTOFF = 0.6  # difflib ratio: `wheell`/`wheel` 0.91, `resnet50`/`resnet` 0.86, `cat`/`car` 0.67
LIST_AT_MOST = 12  # with no close name, list the choices when there are at most this many


def close_names(name: str, choices: Iterable[str], n: int = 3) -> list[str]:
    """Up to `n` choices close to `name`, closest first (case-insensitive)."""
    by_lower: dict[str, str] = {}
    for choice in choices:
        by_lower.setdefault(str(choice).lower(), str(choice))
    found = difflib.get_close_matches(str(name).lower(), list(by_lower), n=n, cutoff=CUTOFF)
    return [by_lower[match] for match in found]


def did_you_mean(name: str, choices: Iterable[str], what: str = "") -> str:
    """`"; did you mean X or Y?"`, or `"; known <what>: a, b, c"` for a short list, or `""`.

    Appended to a message that already names the unknown value: `f"unknown texture
    {name!r}{did_you_mean(name, names, 'textures')}"`.
    """
    options = list(dict.fromkeys(str(c) for c in choices))
    close = close_names(name, options)
    if close:
        return f"; did you mean {' or '.join(close)}?"
    if what and 0 < len(options) <= LIST_AT_MOST:
        return f"; known {what}: {', '.join(options)}"
    return ""


__all__ = ["close_names", "did_you_mean"]
