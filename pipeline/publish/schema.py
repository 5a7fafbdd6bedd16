"""The `datasets.Features` of an export, derived from the record declarations.

Every plain column an export carries (ids, names, numbers, flags) takes its type from the field
of the record it comes from (`Record.columns()`, the same declaration that gives the manifests'
Arrow schema), so a field whose type changes changes the export with it. What only the export
has is declared here: the `Image()` columns, the ImageNet `ClassLabel`s (with one more name,
`unlabelled`, at index `UNLABELLED` = 1000, so that `int2str` works on every row), and the
nested values the manifests keep as JSON strings (top-k lists, filter verdicts), which the
export decodes into lists and structs.

Edit cases are JSON files, not manifest records, so the `cases` config is declared here in full.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pipeline.records import ConceptMask, Counterfactual, Record, SourceImage, StyleImage

UNLABELLED = 1000  # the `ClassLabel` value of an unlabelled source image, or of no prediction
UNLABELLED_NAME = "unlabelled"
IMAGE_COLUMNS = ("image", "mask", "counterfactual")  # `Image()` columns (PNG bytes)


def record_values(record_type: type[Record]) -> dict[str, Any]:
    """`datasets.Value` of every plain (non-JSON) column of a record type, by column name."""
    from datasets import Value

    return {c.name: Value(c.dtype) for c in record_type.columns() if not c.json}


def label_names() -> list[str]:
    """The 1000 ImageNet class names, then `unlabelled` (index `UNLABELLED`)."""
    from pipeline.classify.imagenet import class_names

    names = class_names()
    assert len(names) == UNLABELLED, len(names)
    return [*names, UNLABELLED_NAME]


def _imagenet_label() -> Any:
    from datasets import ClassLabel

    return ClassLabel(names=label_names())


def counterfactual_features(verdict_names: Sequence[str], inline_images: bool = False) -> Any:
    """`datasets.Features` of the `counterfactuals` config (verdict names: the build's filters).

    The source image is stored once, in the `images` config, and joined by `image_id`;
    `inline_images` adds it to every row as the `image` column as well.
    """
    from datasets import Features, Image, Value

    cf = record_values(Counterfactual)
    mask = record_values(ConceptMask)
    style = record_values(StyleImage)
    label = _imagenet_label()
    topk = [{"class": Value("int64"), "prob": Value("float64")}]  # a list of structs
    verdict = {"ok": Value("bool"), "reason": Value("string")}
    inline = {"image": Image()} if inline_images else {}
    return Features(
        {
            "cf_id": cf["cf_id"],
            "image_id": cf["image_id"],
            **inline,
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


def image_features() -> Any:
    """`datasets.Features` of the `images` config: each source image once, by `image_id`."""
    from datasets import Features, Image, Value

    image = record_values(SourceImage)
    return Features(
        {
            "image_id": image["image_id"],
            "image": Image(),
            "label": _imagenet_label(),
            "uri": image["uri"],
            "width": image["width"],
            "height": image["height"],
            "license": Value("string"),
            "source_meta": Value("string"),  # JSON
        }
    )


def concept_score_features(rows: Sequence[dict[str, Any]]) -> Any:
    """`datasets.Features` of the `concept_scores` config: the stored record's columns, typed
    from the rows (`score_id` first)."""
    import pyarrow as pa
    from datasets import Features

    return Features.from_arrow_schema(pa.Table.from_pylist(list(rows)).schema)


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
