"""Build records -> export rows: one `counterfactuals` row per counterfactual, one `cases` row
per edit case, in the shape the features of `pipeline.publish.schema` declare.

Rows are made one at a time (a row holds the PNG bytes of its images), and each comes with a
size estimate from the files on disk so that shards can be planned before any is read. The source
image is exported once per image (`image_row`, the `images` config); a counterfactual row carries
it only when asked to (`inline_images`).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from pipeline.cases import EditCase, load_cases
from pipeline.publish.licenses import image_license
from pipeline.publish.schema import UNLABELLED
from pipeline.records import ConceptMask, Counterfactual, SourceImage, StyleImage
from pipeline.store.build_store import BuildStore

ROW_OVERHEAD_BYTES = 2048  # estimated metadata bytes per row, for shard planning


def _label(value: int | None) -> int:
    return UNLABELLED if value is None else int(value)


@dataclass
class BuildView:
    """The records an export reads (metadata only: pixels are read row by row)."""

    store: BuildStore
    counterfactuals: list[Counterfactual]  # sorted by cf_id
    images: dict[str, SourceImage]
    masks: dict[str, ConceptMask]
    styles: dict[str, StyleImage]

    @classmethod
    def load(cls, build_dir: str | Path) -> BuildView:
        store = BuildStore(build_dir)
        if not store.has_manifest("counterfactuals"):
            manifest = store.manifest_path("counterfactuals")
            raise FileNotFoundError(f"{manifest} not found: is {store.root} a finished build?")
        counterfactuals = cast(list[Counterfactual], store.read("counterfactuals"))
        images = cast(list[SourceImage], store.read("images"))
        masks = cast(list[ConceptMask], store.read("masks"))
        styles = cast(list[StyleImage], store.read("styles"))
        return cls(
            store,
            sorted(counterfactuals, key=lambda r: r.cf_id),
            {r.image_id: r for r in images},
            {r.mask_id: r for r in masks},
            {r.style_id: r for r in styles},
        )

    def used_images(self) -> list[SourceImage]:
        """The source images of the counterfactuals, sorted by id."""
        ids = sorted({r.image_id for r in self.counterfactuals})
        missing = [i for i in ids if i not in self.images]
        if missing:
            raise ValueError(
                f"{len(missing)} counterfactual rows refer to images missing from "
                "manifests/images.parquet; re-run the build to rewrite the manifests"
            )
        return [self.images[i] for i in ids]

    def verdict_names(self) -> list[str]:
        """Every filter that gave a verdict on some counterfactual, sorted."""
        names: set[str] = set()
        for row in self.counterfactuals:
            names.update(row.verdicts or {})
        return sorted(names)


def _png(store: BuildStore, relpath: str) -> dict[str, Any]:
    path = store.path(relpath)
    if not path.is_file():
        raise FileNotFoundError(
            f"{relpath} is missing from the build; re-run the build to repair it"
        )
    return {"bytes": path.read_bytes(), "path": path.name}


def _file_size(store: BuildStore, relpath: str) -> int:
    path = store.path(relpath)
    return path.stat().st_size if path.is_file() else 0


def _topk(value: list[list[float]] | None) -> list[dict[str, Any]]:
    return [{"class": int(c), "prob": float(p)} for c, p in value or []]


def counterfactual_row(
    view: BuildView, row: Counterfactual, verdict_names: list[str], inline_images: bool = False
) -> dict[str, Any]:
    """The export row of one counterfactual, with the PNG bytes of its mask and counterfactual
    (and of its source image when `inline_images`)."""
    image = view.images[row.image_id]
    mask = view.masks.get(row.mask_id)
    style = view.styles.get(row.style_image)
    verdicts = row.verdicts or {}
    return {
        "cf_id": row.cf_id,
        "image_id": row.image_id,
        **({"image": _png(view.store, image.path)} if inline_images else {}),
        "mask": _png(view.store, mask.path) if mask else None,
        "counterfactual": _png(view.store, row.path),
        "label": _label(row.label),
        "clean_pred": _label(row.clean_pred),
        "cf_pred": _label(row.cf_pred),
        "concept": row.concept,
        "texture": row.texture,
        "style_image": row.style_image,
        "blend": row.blend,
        "kept": bool(row.kept),
        "mask_info": {
            "mask_id": row.mask_id,
            "segmenter_id": mask.segmenter_id if mask else None,
            "score": mask.score if mask else None,
            "area_frac": row.area_frac,
        },
        "style": {
            "style_id": row.style_image,
            "sha256": style.sha256 if style else None,
            "license": style.license if style else None,
        },
        "stylized_id": row.stylized_id,
        "classifier_id": row.classifier_id,
        "clean_topk": _topk(row.clean_topk),
        "cf_topk": _topk(row.cf_topk),
        "clean_true_prob": row.clean_true_prob,
        "cf_true_prob": row.cf_true_prob,
        "verdicts": {
            name: (
                {"ok": bool(verdicts[name].get("ok")), "reason": verdicts[name].get("reason")}
                if name in verdicts
                else None
            )
            for name in verdict_names
        },
    }


def counterfactual_size(view: BuildView, row: Counterfactual, inline_images: bool = False) -> int:
    """Estimated bytes of a counterfactual's export row: its files on disk plus metadata."""
    image = view.images[row.image_id]
    mask = view.masks.get(row.mask_id)
    paths = [row.path, *([image.path] if inline_images else []), *([mask.path] if mask else [])]
    return ROW_OVERHEAD_BYTES + sum(_file_size(view.store, p) for p in paths)


def image_row(view: BuildView, image: SourceImage) -> dict[str, Any]:
    """The export row of one source image (the `images` config), with its PNG bytes."""
    return {
        "image_id": image.image_id,
        "image": _png(view.store, image.path),
        "label": _label(image.label),
        "uri": image.uri,
        "width": image.width,
        "height": image.height,
        "license": image_license(image),
        "source_meta": json.dumps(image.source_meta or {}, sort_keys=True),
    }


def image_size(view: BuildView, image: SourceImage) -> int:
    """Estimated bytes of a source image's export row."""
    return ROW_OVERHEAD_BYTES + _file_size(view.store, image.path)


def read_cases(store: BuildStore) -> list[EditCase]:
    """The build's edit cases, sorted by case id."""
    return sorted(load_cases(store.root), key=lambda c: c.case_id)


def case_row(case: EditCase, group_names: list[str]) -> dict[str, Any]:
    """The export row of one edit case; `params` becomes a JSON string."""
    groups = case.test_groups or {}
    return {
        "case_id": case.case_id,
        "concept": case.concept,
        "texture": case.texture,
        "target_class": _label(case.target_class),
        "train_style": case.train_style,
        "train": list(case.train or []),
        "test_groups": {name: list(groups.get(name) or []) for name in group_names},
        "validation": list(case.validation or []),
        "heldout": list(case.heldout or []),
        "seed": case.seed,
        "params": json.dumps(case.params or {}, sort_keys=True),
    }


def case_size(case: EditCase) -> int:
    """Estimated bytes of a case's export row: the length of its JSON."""
    return len(json.dumps(dataclasses.asdict(case)))


CONCEPT_SCORES_GLOB = "concepts/*/concept_scores.parquet"  # pipeline.concepts' cache layout


def read_concept_scores(store: BuildStore) -> list[dict[str, Any]]:
    """Every classifier's concept scores stored in the build (TCAV, with the trust metrics),
    one row per (classifier, class, concept, layer) sorted by those, each with a `score_id`
    (the export's row key); empty when none were computed."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    paths = sorted(store.root.glob(CONCEPT_SCORES_GLOB))
    if not paths:
        return []
    table = pa.concat_tables([pq.read_table(p) for p in paths], promote_options="default")
    rows = table.to_pylist()
    order = ("classifier_id", "class_index", "concept", "layer")
    rows.sort(key=lambda r: tuple(str(r[k]) if k != "class_index" else r[k] for k in order))
    return [
        {"score_id": f"{r['classifier_id']}|{r['class_index']}|{r['concept']}|{r['layer']}", **r}
        for r in rows
    ]
