"""Declared style splits in the planner: which style images exemplars may come from.

A texture declares training and held-out styles (:mod:`pipeline.stylize.library`) and a build
records each style image's side in its styles manifest (`StyleImage.split`). An error plan with
`exemplar_styles: train` draws its exemplars across the training styles
(:func:`spread_exemplars`) and tests as "held-out" only the declared held-out styles, so a
held-out result is never on a style the edit saw. Builds made before splits were declared record
none; such a plan asks for a rebuild (:func:`require_splits`) rather than guessing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from pipeline.store import BuildStore

STYLE_SPLITS = ("train", "heldout")


def read_style_splits(store: BuildStore) -> dict[str, str]:
    """`style_id → split` ("train" | "heldout") from the build's styles manifest; "" for a style
    recorded before splits were declared, nothing for a build without the manifest."""
    path = store.manifest_path("styles")
    if not path.is_file():
        return {}
    has_split = "split" in pq.read_schema(path).names
    frame = store.frame("styles", ["style_id", "split"] if has_split else ["style_id"])
    splits = frame["split"].fillna("") if has_split else pd.Series("", index=frame.index)
    return dict(zip(frame["style_id"].astype(str), splits.astype(str), strict=True))


def require_splits(splits: Mapping[str, str] | None, styles: Iterable[str], where: str) -> None:
    """Raise unless every style image in `styles` has a declared split in `splits`.

    Raises:
        ValueError: naming `where` (the build) and the styles without a split, and the fix.
    """
    missing = sorted({str(s) for s in styles if (splits or {}).get(str(s)) not in STYLE_SPLITS})
    if missing:
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        shown = ", ".join(missing[:5]) + more
        raise ValueError(
            f"{where}: no declared train/heldout split for style image(s) {shown}; "
            "exemplar_styles: train needs the split of every style: rebuild it "
            "(`conceptswap build`) so that its styles manifest records them"
        )


def spread_exemplars(
    wrong: pd.DataFrame, styles: Sequence[str], n: int, rng: np.random.Generator
) -> pd.DataFrame | None:
    """`n` rows of `wrong`, each from a different photo, spread over as many of `styles` as
    possible; None when the photos are fewer than `n`.

    The styles take turns in an order drawn from `rng`, each with its photos in a random order.
    The first turn is a maximum matching of styles to distinct photos (a photo wrong in two
    styles goes to the one that has no other), so the number of different styles is the most
    the data allow; later turns go round the styles again until `n` photos are drawn.

    Args:
        wrong: candidate counterfactuals (`cf_id`, `image_id`, `style_image`).
        styles: the style images exemplars may come from.
        n: exemplars wanted.
        rng: the case's generator (the draw is deterministic from it).
    """
    order = [str(styles[i]) for i in rng.permutation(len(styles))]
    queue: dict[str, list[tuple[str, str]]] = {}  # style -> (photo, cf_id), random order
    for style in order:
        pool = wrong[wrong["style_image"] == style].sort_values("cf_id", kind="stable")
        pool = pool.drop_duplicates("image_id").sort_values("image_id", kind="stable")
        pairs = list(zip(pool["image_id"].astype(str), pool["cf_id"].astype(str), strict=True))
        queue[style] = [pairs[i] for i in rng.permutation(len(pairs))]
    owner: dict[str, str] = {}  # photo -> the style it is drawn in

    def augment(style: str, seen: set[str]) -> bool:
        for photo, _ in queue[style]:
            if photo in seen:
                continue
            seen.add(photo)
            if photo not in owner or augment(owner[photo], seen):
                owner[photo] = style
                return True
        return False

    for style in order:
        if len(owner) < n:
            augment(style, set())
    picked = {(style, photo) for photo, style in owner.items()}
    progress = True
    while len(picked) < n and progress:
        progress = False
        for style in order:
            used = {photo for _, photo in picked}
            free = next((photo for photo, _ in queue[style] if photo not in used), None)
            if free is not None and len(picked) < n:
                picked.add((style, free))
                progress = True
    if len(picked) < n:
        return None
    cf_of = {(style, photo): cf_id for style in order for photo, cf_id in queue[style]}
    chosen = {cf_of[pair] for pair in picked}
    return wrong[wrong["cf_id"].isin(chosen)].sort_values("cf_id", kind="stable")
