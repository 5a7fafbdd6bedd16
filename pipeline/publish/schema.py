"""The `datasets.Features` of an export, derived from the record declarations.

Every plain column an export carries (ids, names, numbers, flags) takes its type from the field
of the record it comes from (`Record.columns()`, the same declaration that gives the manifests'
Arrow schema), so a field whose type changes changes the export with it. What only the export
has is declared here: the `Image()` columns, the ImageNet `ClassLabel`s (where -1 means "no
label"), and the nested values the manifests keep as JSON strings (top-k lists, filter verdicts),
which the export decodes into lists and structs.

Edit cases are JSON files, not manifest records, so the `cases` config is declared here in full.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pipeline.records import ConceptMask, Counterfactual, Record, StyleImage

NO_LABEL = -1  # a `ClassLabel` value: unlabelled source image, or no prediction


def record_values(record_type: type[Record]) -> dict[str, Any]:
    """`datasets.Value` of every plain (non-JSON) column of a record type, by column name."""
    from datasets import Value

    return {c.name: Value(c.dtype) for c in record_type.columns() if not c.json}


def _imagenet_label() -> Any:
    from datasets import ClassLabel

    from pipeline.classify.imagenet import class_names

    return ClassLabel(names=class_names())


def counterfactual_features(verdict_names: Sequence[str]) -> Any:
    """`datasets.Features` of the `counterfactuals` config (verdict names: the build's filters)."""
    from datasets import Features, Image, Value

    cf = record_values(Counterfactual)
    mask = record_values(ConceptMask)
    style = record_values(StyleImage)
    label = _imagenet_label()
    topk = [{"class": Value("int64"), "prob": Value("float64")}]  # a list of structs
    verdict = {"ok": Value("bool"), "reason": Value("string")}
    return Features(
        {
            "cf_id": cf["cf_id"],
            "image_id": cf["image_id"],
            "image": Image(),
            "mask": Image(),
            "counterfactual": Image(),
            "label": label,
            "clean_pred": label,
            "cf_pred": label,
            "concept": cf["concept"],
            "texture": cf["texture"],
            "style_image": cf["style_image"],
            "blend": cf["blend"],
            "kept": cf["kept"],
            "mask_info": {
                "mask_id": cf["mask_id"],
                "segmenter_id": mask["segmenter_id"],
                "score": mask["score"],
                "area_frac": cf["area_frac"],
            },
            "style": {
                "style_id": style["style_id"],
                "sha256": style["sha256"],
                "license": style["license"],
            },
            "stylized_id": cf["stylized_id"],
            "classifier_id": cf["classifier_id"],
            "clean_topk": topk,
            "cf_topk": topk,
            "clean_true_prob": cf["clean_true_prob"],
            "cf_true_prob": cf["cf_true_prob"],
            "verdicts": {name: verdict for name in verdict_names},
        }
    )


def case_features(group_names: Sequence[str]) -> Any:
    """`datasets.Features` of the `cases` config (group names: the cases' test groups)."""
    from datasets import Features, Value

    ids = [Value("string")]  # a list of strings (`[x]` works with datasets 2.x to 5.x)
    return Features(
        {
            "case_id": Value("string"),
            "concept": Value("string"),
            "texture": Value("string"),
            "target_class": _imagenet_label(),
            "train_style": Value("string"),
            "train": ids,
            "test_groups": {name: ids for name in group_names},
            "validation": ids,
            "heldout": ids,
            "seed": Value("int64"),
            "params": Value("string"),
        }
    )
