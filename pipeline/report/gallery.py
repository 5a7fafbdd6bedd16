"""The gallery of failures: every counterfactual some model flips, as a filterable card.

A card shows a strip of four thumbnails (clean · counterfactual · neutral control · random
control) and each model's clean → cf / neutral / random predictions. Cards carry their concept,
texture, models and targets as `data-` attributes; a few lines of inline JavaScript in the page
filter them (no library, no network), and `#concept=road&texture=snow` in the address presets
the filters, so a link can point at one slice. Thumbnails are JPEGs under
`BUILD/report/gallery/` (named by counterfactual id, re-used across reports), or data URIs when
the report embeds its images.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd

from pipeline.report.controls import control_mask, neutral_fill
from pipeline.report.sensitivity import build_feather, classifier_slug, report_root
from pipeline.store import BuildStore
from pipeline.store.atomic import atomic_write_bytes
from pipeline.transform import composite

GALLERY_DIR = "gallery"
GALLERY_VERSION = "g1"  # part of the thumbnail names: bump when the strip's layout changes
THUMB_HEIGHT = 96
MAX_CARDS = 300


def _short_id(classifier_id: str) -> str:
    return classifier_id.split("@")[0]


def failures(predictions: Sequence[pd.DataFrame], limit: int = MAX_CARDS) -> list[str]:
    """Counterfactual ids that at least one model flips, most telling first, at most `limit`.

    Order: flips the controls do not explain (both controls keep the clean top-1) before the
    rest, then by the first flipping model's drop of p(reference) against the random control,
    then by id, so the choice is deterministic.
    """
    scores: dict[str, tuple[int, float]] = {}
    for frame in predictions:
        flips = frame[frame["cf_pred"] != frame["clean_pred"]]
        held = (flips["neutral_pred"] == flips["clean_pred"]) & (
            flips["ctrl_pred"] == flips["clean_pred"]
        )
        gain = flips["ctrl_ref_prob"] - flips["cf_ref_prob"]
        for cf_id, tier, score in zip(flips["cf_id"], ~held, gain, strict=True):
            scores.setdefault(cf_id, (int(tier), -float(score)))
    order = sorted(scores, key=lambda cf_id: (*scores[cf_id], cf_id))
    return order[:limit]


def _thumbnail(image: np.ndarray, height: int = THUMB_HEIGHT) -> np.ndarray:
    width = max(1, round(image.shape[1] * height / image.shape[0]))
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)


def strip(store: BuildStore, row: pd.Series, feather: float) -> np.ndarray:
    """clean · counterfactual · neutral control · random control, side by side (uint8 RGB)."""
    image = store.load_image(row["image_path"])
    concept = store.load_mask(row["mask_path"])
    stylized = store.load_image(row["stylized_path"])
    blend = float(row["blend"])
    counterfactual = (
        store.load_image(row["cf_path"])
        if store.exists(row["cf_path"])
        else composite(image, stylized, concept, blend, feather)
    )
    fill = neutral_fill(image, concept, row["neutral"])
    neutral = composite(image, fill, concept, blend, feather)
    control = control_mask(concept, int(row["seed"]), row["mask_id"], row["placement"])
    random_region = composite(image, stylized, control, blend, feather)
    gap = np.full((THUMB_HEIGHT, 3, 3), 255, np.uint8)
    panels = [_thumbnail(p) for p in (image, counterfactual, neutral, random_region)]
    return np.concatenate([panels[0], gap, panels[1], gap, panels[2], gap, panels[3]], axis=1)


def _jpeg(pixels: np.ndarray) -> bytes:
    ok, data = cv2.imencode(
        ".jpg", cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 82]
    )
    if not ok:
        raise RuntimeError("could not encode a gallery thumbnail as JPEG")
    return data.tobytes()


def _prediction(row: pd.Series, which: str) -> dict[str, Any]:
    name = str(row[f"{which}_pred_name"]).replace("_", " ")
    return {
        "text": f"{name} {row[f'{which}_pred_prob']:.2f}",
        "broken": bool(row[f"{which}_pred"] != row["clean_pred"]),
    }


def gallery_cards(
    build_dir: str | Path,
    predictions: Sequence[pd.DataFrame],
    embed: bool = False,
    limit: int = MAX_CARDS,
) -> list[dict[str, Any]]:
    """The cards of the gallery, thumbnails written (or embedded); see the module docstring."""
    if not predictions:
        return []
    store = BuildStore(build_dir)
    root = report_root(build_dir)
    feather = build_feather(store)
    indexed = [p.set_index("cf_id") for p in predictions]
    cards = []
    for cf_id in failures(predictions, limit):
        first = next(frame.loc[cf_id] for frame in indexed if cf_id in frame.index)
        key = f"{cf_id[:24]}-{first['neutral']}-{first['placement']}-{GALLERY_VERSION}"
        path = root / GALLERY_DIR / f"{key}.jpg"
        if embed or not path.is_file():
            data = _jpeg(strip(store, first.rename(cf_id), feather))
            if not embed:
                atomic_write_bytes(path, data)
        else:
            data = b""
        source = (
            "data:image/jpeg;base64," + base64.b64encode(data).decode("ascii")
            if embed
            else path.relative_to(root).as_posix()
        )
        models, flip_models, held_models, targets = [], [], [], set()
        for frame, prediction in zip(indexed, predictions, strict=True):
            if cf_id not in frame.index:
                continue
            row = frame.loc[cf_id]
            classifier_id = str(prediction["classifier_id"].iloc[0])
            slug = classifier_slug(classifier_id)
            cells = {w: _prediction(row, w) for w in ("clean", "cf", "neutral", "ctrl")}
            models.append({"model": _short_id(classifier_id), **cells})
            if cells["cf"]["broken"]:
                flip_models.append(slug)
                targets.add(str(row["cf_pred_name"]).replace("_", " "))
                if not (cells["neutral"]["broken"] or cells["ctrl"]["broken"]):
                    held_models.append(slug)
        cards.append(
            {
                "cf_id": cf_id,
                "src": source,
                "concept": str(first["concept"]),
                "texture": str(first["texture"]),
                "style_image": str(first["style_image"]),
                "reference": str(first["reference_name"]).replace("_", " "),
                "image_id": str(first["image_id"])[:10],
                "models": models,
                "flip_models": " ".join(flip_models),
                "held_models": " ".join(held_models),
                "targets": "|".join(sorted(targets)),
            }
        )
    return cards
