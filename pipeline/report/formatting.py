"""How the report writes its numbers: rates with intervals, signed differences, table cells.

Shared by the HTML page and the markdown summary, so both show a statistic the same way.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd


def _nan(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def format_rate(row: pd.Series | dict[str, Any], name: str) -> str:
    """A proportion as `63.9% (55.8–71.3)`; `–` when there was nothing to measure."""
    value, low, high = row[name], row[f"{name}_low"], row[f"{name}_high"]
    if _nan(value):
        return "–"
    if _nan(low):
        return f"{100 * value:.1f}%"
    return f"{100 * value:.1f}% ({100 * low:.1f}–{100 * high:.1f})"


def format_diff(row: pd.Series | dict[str, Any], name: str, points: bool = True) -> str:
    """A signed difference: percentage points (`+40.3 pp (+27.1, +52.1)`) or a probability."""
    value, low, high = row[name], row[f"{name}_low"], row[f"{name}_high"]
    if _nan(value):
        return "–"
    scale, unit, digits = (100.0, " pp", 1) if points else (1.0, "", 3)
    text = f"{scale * value:+.{digits}f}{unit}"
    if _nan(low):
        return text
    return f"{text} ({scale * low:+.{digits}f}, {scale * high:+.{digits}f})"


STAT_COLUMNS: list[tuple[str, str, str]] = [  # (header, column, kind) of the report's tables
    ("clean acc.", "clean_acc", "rate"),
    ("cf acc.", "cf_acc", "rate"),
    ("neutral acc.", "neutral_acc", "rate"),
    ("random-region acc.", "ctrl_acc", "rate"),
    ("cf flip rate", "cf_flip", "rate"),
    ("neutral flip rate", "neutral_flip", "rate"),
    ("random-region flip rate", "ctrl_flip", "rate"),
    ("Δ p(ref) cf", "cf_dprob", "prob"),
    ("texture effect: flip (cf − neutral)", "sens_texture_flip", "points"),
    ("region effect: flip (cf − random)", "sens_flip", "points"),
    ("texture effect: acc. drop", "sens_texture_acc_drop", "points"),
    ("region effect: acc. drop", "sens_acc_drop", "points"),
    ("texture effect: p(ref) drop", "sens_texture_prob_drop", "prob"),
    ("region effect: p(ref) drop", "sens_prob_drop", "prob"),
]
CONTROL_COLUMNS: list[tuple[str, str, str]] = [  # the compact tables: flips and both controls
    ("cf flip rate", "cf_flip", "rate"),
    ("neutral flip rate", "neutral_flip", "rate"),
    ("random-region flip rate", "ctrl_flip", "rate"),
    ("texture effect (cf − neutral)", "sens_texture_flip", "points"),
    ("region effect (cf − random)", "sens_flip", "points"),
]


def format_stat(row: pd.Series | dict[str, Any], column: str, kind: str) -> str:
    """A statistic of `STAT_COLUMNS` written as its kind says: rate, points or probability."""
    if kind == "rate":
        return format_rate(row, column)
    return format_diff(row, column, points=kind == "points")
