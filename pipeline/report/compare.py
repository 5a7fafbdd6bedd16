"""The models compared on the same counterfactuals: per-concept effects, agreement, examples.

Rendered by the report page when it shows two or more classifiers; `sections` are the report's
`ModelSection`s (classifier id, predictions, per-concept table).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from pipeline.report.formatting import format_diff


def _short_id(classifier_id: str) -> str:
    return classifier_id.split("@")[0]


def _pred(row: pd.Series, which: str) -> str:
    return f"{row[f'{which}_pred_name']} {row[f'{which}_pred_prob']:.2f}".replace("_", " ")


def _class(row: pd.Series, which: str) -> str:
    return "ok" if row[f"{which}_pred"] == row["clean_pred"] else "broken"


def _share(flags: pd.Series) -> str:
    return f"{100 * flags.mean():.1f}%" if len(flags) else "–"


def comparison(sections: Sequence[Any], example_ids: Sequence[str]) -> dict[str, Any]:
    concepts = sorted(set().union(*(set(s.by_concept["concept"]) for s in sections)))
    by_concept_rows = []
    for concept in concepts:
        cells = []
        for section in sections:
            match = section.by_concept[section.by_concept["concept"] == concept]
            for column in ("sens_texture_flip", "sens_flip"):
                cells.append(format_diff(match.iloc[0], column) if len(match) else "–")
        by_concept_rows.append([concept, *cells])
    agreement = []
    indexed = [s.predictions.set_index("cf_id") for s in sections]
    for i in range(len(sections)):
        for j in range(i + 1, len(sections)):
            a, b = indexed[i], indexed[j]
            common = a.index.intersection(b.index)
            a, b = a.loc[common], b.loc[common]
            flip_a, flip_b = a["cf_pred"] != a["clean_pred"], b["cf_pred"] != b["clean_pred"]
            agreement.append(
                [
                    f"{_short_id(sections[i].classifier_id)} / "
                    f"{_short_id(sections[j].classifier_id)} (n={len(common)})",
                    _share(a["clean_pred"] == b["clean_pred"]),
                    _share(a["cf_pred"] == b["cf_pred"]),
                    _share(flip_a & flip_b),
                    _share(flip_a & ~flip_b),
                    _share(~flip_a & flip_b),
                ]
            )
    examples = []
    for cf_id in example_ids:
        first = indexed[0].loc[cf_id]
        cells = []
        for frame in indexed:
            if cf_id not in frame.index:
                cells.append(
                    {
                        "clean": "–",
                        "cf": "–",
                        "neutral": "–",
                        "ctrl": "–",
                        "cf_class": "",
                        "neutral_class": "",
                        "ctrl_class": "",
                    }
                )
                continue
            row = frame.loc[cf_id]
            cells.append(
                {
                    "clean": _pred(row, "clean"),
                    "cf": _pred(row, "cf"),
                    "neutral": _pred(row, "neutral"),
                    "ctrl": _pred(row, "ctrl"),
                    "cf_class": _class(row, "cf"),
                    "neutral_class": _class(row, "neutral"),
                    "ctrl_class": _class(row, "ctrl"),
                }
            )
        examples.append(
            {
                "cf_id": cf_id[:10],
                "reference": str(first["reference_name"]).replace("_", " "),
                "edit": f"{first['concept']} → {first['style_image']}",
                "models": cells,
            }
        )
    agreement_header = [
        "models (n shared)",
        "clean predictions agree",
        "cf predictions agree",
        "both flip",
        "only first flips",
        "only second flips",
    ]
    return {
        "concepts": {
            "header": ["concept"]
            + [
                f"{_short_id(s.classifier_id)}: {what}"
                for s in sections
                for what in ("texture effect", "region effect")
            ],
            "rows": by_concept_rows,
        },
        "agreement": {"header": agreement_header, "rows": agreement},
        "examples": examples,
    }
