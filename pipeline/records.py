"""Typed records passed between stages and written to the Parquet manifests.

Records are frozen dataclasses of plain values (ids, paths relative to the build, numbers) so a
manifest row is `dataclasses.asdict(record)` and a record is `Record(**row)`. Pixel data never
lives in a record: it lives in content-addressed files named by the ids below.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from functools import cache
from typing import Any, ClassVar, TypeVar

import pyarrow as pa

T = TypeVar("T", bound="Record")

# the column types a record field may have, by Python annotation; JSON fields are strings
_DTYPES: dict[Any, str] = {str: "string", int: "int64", float: "float64", bool: "bool"}


@dataclass(frozen=True)
class Column:
    """One manifest column as declared by a record field: the single source of both the Arrow
    schema of the Parquet manifests and the Hugging Face `Features` of an export."""

    name: str
    dtype: str  # "string" | "int64" | "float64" | "bool"
    nullable: bool
    json: bool  # stored as a JSON string (nested values)

    def arrow_type(self) -> pa.DataType:
        return {"string": pa.string(), "int64": pa.int64(), "float64": pa.float64()}.get(
            self.dtype, pa.bool_()
        )


@dataclass(frozen=True)
class Record:
    """Base: conversion to and from flat manifest rows (nested values are stored as JSON)."""

    kind: ClassVar[str] = "record"
    json_fields: ClassVar[tuple[str, ...]] = ()

    def to_row(self) -> dict[str, Any]:
        row = dataclasses.asdict(self)
        for name in self.json_fields:
            row[name] = json.dumps(row[name], sort_keys=True)
        return row

    @classmethod
    def from_row(cls: type[T], row: dict[str, Any]) -> T:
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in row.items() if k in names}
        for name in cls.json_fields:
            if isinstance(values.get(name), str):
                values[name] = json.loads(values[name])
        return cls(**values)

    @classmethod
    def columns(cls) -> tuple[Column, ...]:
        """The manifest columns of this record type, in field order."""
        return _columns(cls)

    @classmethod
    def arrow_schema(cls) -> pa.Schema:
        """The declared Arrow schema: an empty table keeps its column types."""
        return pa.schema(
            [pa.field(c.name, c.arrow_type(), nullable=c.nullable) for c in cls.columns()]
        )


@cache
def _columns(cls: type[Record]) -> tuple[Column, ...]:
    hints = typing.get_type_hints(cls)
    columns = []
    for item in dataclasses.fields(cls):
        annotation = hints[item.name]
        is_json = item.name in cls.json_fields
        args = typing.get_args(annotation)
        nullable = isinstance(annotation, types.UnionType) and type(None) in args
        base = (
            next((a for a in args if a is not type(None)), annotation) if nullable else annotation
        )
        if is_json:
            dtype = "string"
        elif base in _DTYPES:
            dtype = _DTYPES[base]
        else:
            raise TypeError(f"{cls.__name__}.{item.name}: no column type for {annotation!r}")
        columns.append(Column(item.name, dtype, nullable, is_json))
    return tuple(columns)


@dataclass(frozen=True)
class SourceImage(Record):
    """One usable input image. `image_id` is the sha256 of its decoded RGB pixels."""

    kind: ClassVar[str] = "images"
    json_fields: ClassVar[tuple[str, ...]] = ("source_meta",)

    image_id: str
    uri: str
    width: int
    height: int
    label: int | None
    label_name: str | None
    path: str  # working-resolution RGB PNG, relative to the build directory
    source_meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ConceptMask(Record):
    """A binary mask of one concept in one image, as found by one segmenter."""

    kind: ClassVar[str] = "masks"

    mask_id: str
    image_id: str
    concept: str
    score: float
    area_frac: float
    segmenter_id: str
    path: str  # 1-bit PNG relative to the build directory
    kept: bool = True
    reject_reason: str | None = None


@dataclass(frozen=True)
class StyleImage(Record):
    """One style image of a texture, addressed as `texture/index`, with its own licence and
    source and the side of the texture's style split it is on."""

    kind: ClassVar[str] = "styles"

    style_id: str  # "snow/0"
    texture: str
    index: int
    sha256: str
    path: str  # absolute path of the texture file
    license: str  # of this file
    source: str  # of this file
    # "train" | "heldout": the texture's declared split (pipeline.stylize.library); "" in
    # builds made before splits were declared
    split: str = ""


@dataclass(frozen=True)
class Stylized(Record):
    """An image re-rendered in one style image by one stylizer."""

    kind: ClassVar[str] = "stylized"

    stylized_id: str
    image_id: str
    style_id: str
    stylizer_id: str
    path: str


@dataclass(frozen=True)
class Counterfactual(Record):
    """A concept of an image re-textured, with the classifier's verdicts on it."""

    kind: ClassVar[str] = "counterfactuals"
    json_fields: ClassVar[tuple[str, ...]] = ("clean_topk", "cf_topk", "verdicts")

    cf_id: str
    image_id: str
    mask_id: str
    stylized_id: str
    concept: str
    texture: str
    style_image: str
    blend: float
    area_frac: float
    label: int | None
    path: str
    classifier_id: str = ""
    clean_topk: list[list[float]] = field(default_factory=list)  # [[class, prob], ...]
    cf_topk: list[list[float]] = field(default_factory=list)
    clean_pred: int | None = None
    cf_pred: int | None = None
    clean_true_prob: float | None = None
    cf_true_prob: float | None = None
    verdicts: dict[str, dict[str, Any]] = field(default_factory=dict)  # filter -> {ok, reason}
    kept: bool = False


@dataclass(frozen=True)
class QuarantineEntry(Record):
    """An input that could not be used, and why."""

    kind: ClassVar[str] = "quarantine"

    uri: str
    stage: str
    reason: str


RECORD_TYPES: dict[str, type[Record]] = {
    cls.kind: cls for cls in (SourceImage, ConceptMask, StyleImage, Stylized, Counterfactual)
}
