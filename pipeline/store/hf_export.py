"""Export a build as a Hugging Face dataset: sharded Parquet with `Image()` columns and a card.

```
<out>/README.md                                            dataset card (YAML metadata + text)
<out>/data/counterfactuals/train-00000-of-00001.parquet    one row per counterfactual
<out>/data/cases/train-00000-of-00001.parquet              one row per edit case (if any)
```

Configs (one per record kind):

- `counterfactuals` (default): `image` (the original at the build's working resolution), `mask`
  and `counterfactual` as `Image()` columns (PNG bytes exactly as stored in the build); `label`,
  `clean_pred` and `cf_pred` as ImageNet-1k `ClassLabel`s where **-1 means "no label"** (an
  unlabelled source image, or no prediction); `concept`, `texture`, `style_image`, `kept`; nested
  metadata: `mask_info` {mask_id, segmenter_id, score, area_frac}, `style` {style_id, sha256,
  license}, `clean_topk` / `cf_topk` as lists of {class, prob} (`class` indexes the same ImageNet
  names as `label`), `verdicts` as a struct of {ok, reason} per filter.
- `cases` (when `BUILD/cases/*.json` exist): one row per edit case; counterfactual ids refer to
  `cf_id` in `counterfactuals`, image ids to `image_id`; `params` is a JSON string.

Rows are streamed: a shard is written one row group (at most 100 rows) at a time, so at most one
row group of images is in memory. Shard boundaries are planned from the file sizes on disk
(`max_shard_size`, default 500 MB). The export is deterministic: rows sorted by id, no timestamps
in the Parquet files or the card, so the same build gives the same bytes and a re-publish uploads
nothing. Features are declared twice: in the card's `dataset_info` YAML and in each Parquet
file's `huggingface` schema metadata (as `datasets` writes them), so `load_dataset` restores
`Image()` and `ClassLabel` either way.

Sources without a license (folder and Hugging Face sources usually have none in
`images.parquet` `source_meta`) are refused unless `allow_unknown_license=True`.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from pipeline.store.build_store import BuildStore

DEFAULT_MAX_SHARD_SIZE = 500 * 1000 * 1000  # bytes (500 MB)
ROW_GROUP_ROWS = 100
ROW_GROUP_BYTES = 64 * 1000 * 1000
NO_LABEL = -1
ROW_OVERHEAD_BYTES = 2048  # estimated metadata bytes per row, for shard planning
EXPORT_MARKER = "conceptswap-export"
UNKNOWN_LICENSES = {"", "unknown", "none", "null", "n/a"}
# SPDX-ish licence names of sources -> Hugging Face license ids (lower case)
HUB_LICENSES = {
    "cc0-1.0": "cc0-1.0",
    "cc-by-4.0": "cc-by-4.0",
    "cc-by-sa-4.0": "cc-by-sa-4.0",
    "cc-by-nc-4.0": "cc-by-nc-4.0",
    "cc-by-3.0": "cc-by-3.0",
    "cc-by-2.0": "cc-by-2.0",
    "apache-2.0": "apache-2.0",
    "mit": "mit",
    "odc-by": "odc-by",
    "pddl": "pddl",
}
SIZE_UNITS = {"": 1, "b": 1, "kb": 1000, "mb": 1000**2, "gb": 1000**3, "kib": 1024, "mib": 1024**2}
SIZE_UNITS["gib"] = 1024**3


class UnknownLicenseError(ValueError):
    """Some exported source images have no license; publishing them needs an explicit opt-in."""


@dataclass(frozen=True)
class ConfigExport:
    """One config (record kind) of an export."""

    name: str
    rows: int
    files: tuple[str, ...]  # relative to the export root
    num_bytes: int  # Arrow (in-memory) size, as `datasets` reports `dataset_size`
    download_size: int  # Parquet bytes


@dataclass(frozen=True)
class ExportResult:
    root: Path
    configs: tuple[ConfigExport, ...]
    license: str
    unknown_license_images: int

    @property
    def files(self) -> tuple[str, ...]:
        """Every file of the export, relative to its root, sorted."""
        names = ["README.md", *(f for config in self.configs for f in config.files)]
        return tuple(sorted(names))


def parse_size(value: int | str) -> int:
    """`500MB`, `1.5GB`, `64MiB` or a number of bytes -> bytes."""
    if isinstance(value, int):
        size = value
    else:
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(value))
        if not match or match.group(2).lower() not in SIZE_UNITS:
            raise ValueError(f"cannot read size {value!r}: use bytes or e.g. '500MB', '2GB'")
        size = int(float(match.group(1)) * SIZE_UNITS[match.group(2).lower()])
    if size < 1:
        raise ValueError(f"size must be positive, got {value!r}")
    return size


# -- features ----------------------------------------------------------------------------------
def _features(spec: dict[str, Any]) -> Any:
    from datasets import Features

    return Features(spec)


def counterfactual_features(verdict_names: Sequence[str]) -> Any:
    """`datasets.Features` of the `counterfactuals` config (verdict names: the build's filters)."""
    from datasets import ClassLabel, Image, Value

    from pipeline.classify.imagenet import class_names

    names = class_names()
    topk = [{"class": Value("int64"), "prob": Value("float64")}]  # a list of structs
    verdict = {"ok": Value("bool"), "reason": Value("string")}
    return _features(
        {
            "cf_id": Value("string"),
            "image_id": Value("string"),
            "image": Image(),
            "mask": Image(),
            "counterfactual": Image(),
            "label": ClassLabel(names=names),
            "clean_pred": ClassLabel(names=names),
            "cf_pred": ClassLabel(names=names),
            "concept": Value("string"),
            "texture": Value("string"),
            "style_image": Value("string"),
            "blend": Value("float64"),
            "kept": Value("bool"),
            "mask_info": {
                "mask_id": Value("string"),
                "segmenter_id": Value("string"),
                "score": Value("float64"),
                "area_frac": Value("float64"),
            },
            "style": {
                "style_id": Value("string"),
                "sha256": Value("string"),
                "license": Value("string"),
            },
            "stylized_id": Value("string"),
            "classifier_id": Value("string"),
            "clean_topk": topk,
            "cf_topk": topk,
            "clean_true_prob": Value("float64"),
            "cf_true_prob": Value("float64"),
            "verdicts": {name: verdict for name in verdict_names},
        }
    )


def case_features(group_names: Sequence[str]) -> Any:
    from datasets import ClassLabel, Value

    from pipeline.classify.imagenet import class_names

    ids = [Value("string")]  # a list of strings (`[x]` works with datasets 2.x to 5.x)
    return _features(
        {
            "case_id": Value("string"),
            "concept": Value("string"),
            "texture": Value("string"),
            "target_class": ClassLabel(names=class_names()),
            "train_style": Value("string"),
            "train": ids,
            "test_groups": {name: ids for name in group_names},
            "validation": ids,
            "heldout": ids,
            "seed": Value("int64"),
            "params": Value("string"),
        }
    )


# -- reading the build -------------------------------------------------------------------------
def _read_rows(path: Path) -> list[dict[str, Any]]:
    return pq.read_table(path).to_pylist() if path.is_file() else []


def _json(value: Any, default: Any) -> Any:
    if isinstance(value, str):
        return json.loads(value) if value else default
    return default if value is None else value


def _label(value: Any) -> int:
    return NO_LABEL if value is None else int(value)


def image_license(image: dict[str, Any]) -> str | None:
    """The `license` of a source image's `source_meta`, or None when it has none."""
    meta = _json(image.get("source_meta"), {})
    value = meta.get("license") if isinstance(meta, dict) else None
    text = str(value).strip() if value is not None else ""
    return None if text.lower() in UNKNOWN_LICENSES else text


def hub_license(licenses: Iterable[str | None]) -> str:
    """A Hugging Face `license:` id for a set of source licenses (`other` when mixed)."""
    found = set(licenses)
    if not found or found == {None}:
        return "unknown"
    if len(found) > 1:
        return "other"
    (only,) = found
    assert only is not None
    return HUB_LICENSES.get(only.lower(), "other")


@dataclass
class _BuildView:
    """The build's manifests (metadata only: no pixels)."""

    store: BuildStore
    build: dict[str, Any]
    counterfactuals: list[dict[str, Any]]
    images: dict[str, dict[str, Any]]
    masks: dict[str, dict[str, Any]]
    styles: dict[str, dict[str, Any]]

    @classmethod
    def load(cls, build_dir: str | Path) -> _BuildView:
        store = BuildStore(build_dir)
        manifest = store.manifest_path("counterfactuals")
        if not manifest.is_file():
            raise FileNotFoundError(f"{manifest} not found: is {store.root} a finished build?")
        build_yaml = store.root / "build.yaml"
        build = (
            yaml.safe_load(build_yaml.read_text(encoding="utf-8")) if build_yaml.is_file() else {}
        )
        rows = sorted(_read_rows(manifest), key=lambda r: r["cf_id"])
        by_id = {
            kind: {r[key]: r for r in _read_rows(store.manifest_path(kind))}
            for kind, key in (("images", "image_id"), ("masks", "mask_id"), ("styles", "style_id"))
        }
        return cls(store, build or {}, rows, by_id["images"], by_id["masks"], by_id["styles"])

    def used_images(self) -> list[dict[str, Any]]:
        ids = sorted({r["image_id"] for r in self.counterfactuals})
        missing = [i for i in ids if i not in self.images]
        if missing:
            raise ValueError(
                f"{len(missing)} counterfactual rows refer to images missing from "
                "manifests/images.parquet; re-run the build to rewrite the manifests"
            )
        return [self.images[i] for i in ids]

    def verdict_names(self) -> list[str]:
        names: set[str] = set()
        for row in self.counterfactuals:
            names.update(_json(row.get("verdicts"), {}))
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


def _topk(value: Any) -> list[dict[str, Any]]:
    return [{"class": int(c), "prob": float(p)} for c, p in _json(value, [])]


def _counterfactual_row(view: _BuildView, row: dict[str, Any], verdict_names: list[str]):
    image = view.images[row["image_id"]]
    mask = view.masks.get(row["mask_id"], {})
    style = view.styles.get(row["style_image"], {})
    verdicts = _json(row.get("verdicts"), {})
    return {
        "cf_id": row["cf_id"],
        "image_id": row["image_id"],
        "image": _png(view.store, image["path"]),
        "mask": _png(view.store, mask["path"]) if mask else None,
        "counterfactual": _png(view.store, row["path"]),
        "label": _label(row.get("label")),
        "clean_pred": _label(row.get("clean_pred")),
        "cf_pred": _label(row.get("cf_pred")),
        "concept": row["concept"],
        "texture": row["texture"],
        "style_image": row["style_image"],
        "blend": row.get("blend"),
        "kept": bool(row.get("kept")),
        "mask_info": {
            "mask_id": row["mask_id"],
            "segmenter_id": mask.get("segmenter_id"),
            "score": mask.get("score"),
            "area_frac": row.get("area_frac", mask.get("area_frac")),
        },
        "style": {
            "style_id": row["style_image"],
            "sha256": style.get("sha256"),
            "license": style.get("license"),
        },
        "stylized_id": row.get("stylized_id"),
        "classifier_id": row.get("classifier_id"),
        "clean_topk": _topk(row.get("clean_topk")),
        "cf_topk": _topk(row.get("cf_topk")),
        "clean_true_prob": row.get("clean_true_prob"),
        "cf_true_prob": row.get("cf_true_prob"),
        "verdicts": {
            name: (
                {"ok": bool(verdicts[name].get("ok")), "reason": verdicts[name].get("reason")}
                if name in verdicts
                else None
            )
            for name in verdict_names
        },
    }


def _counterfactual_size(view: _BuildView, row: dict[str, Any]) -> int:
    image = view.images[row["image_id"]]
    mask = view.masks.get(row["mask_id"], {})
    paths = [image["path"], row["path"], *([mask["path"]] if mask else [])]
    return ROW_OVERHEAD_BYTES + sum(_file_size(view.store, p) for p in paths)


def _load_cases(build_dir: Path) -> list[dict[str, Any]]:
    cases = []
    for path in sorted((build_dir / "cases").glob("*.json")):
        cases.append(json.loads(path.read_text(encoding="utf-8")))
    return sorted(cases, key=lambda c: c["case_id"])


def _case_row(case: dict[str, Any], group_names: list[str]) -> dict[str, Any]:
    groups = case.get("test_groups") or {}
    return {
        "case_id": case["case_id"],
        "concept": case["concept"],
        "texture": case["texture"],
        "target_class": _label(case.get("target_class")),
        "train_style": case.get("train_style"),
        "train": list(case.get("train") or []),
        "test_groups": {name: list(groups.get(name) or []) for name in group_names},
        "validation": list(case.get("validation") or []),
        "heldout": list(case.get("heldout") or []),
        "seed": case.get("seed"),
        "params": json.dumps(case.get("params") or {}, sort_keys=True),
    }


# -- Parquet shards ----------------------------------------------------------------------------
def plan_shards(sizes: Sequence[int], max_shard_bytes: int) -> list[range]:
    """Consecutive row ranges whose estimated sizes stay under the limit (one row at least)."""
    shards: list[range] = []
    start, total = 0, 0
    for index, size in enumerate(sizes):
        if index > start and total + size > max_shard_bytes:
            shards.append(range(start, index))
            start, total = index, 0
        total += size
    shards.append(range(start, len(sizes)))
    return shards


def _row_groups(rows: Iterable[dict[str, Any]], sizes: Sequence[int]) -> Iterator[list[dict]]:
    group: list[dict[str, Any]] = []
    total = 0
    for row, size in zip(rows, sizes, strict=True):
        if group and (len(group) >= ROW_GROUP_ROWS or total + size > ROW_GROUP_BYTES):
            yield group
            group, total = [], 0
        group.append(row)
        total += size
    if group:
        yield group


def _parquet_writer(sink: Any, schema: pa.Schema) -> pq.ParquetWriter:
    options: dict[str, Any] = {"compression": "zstd"}
    try:  # content-defined chunking (pyarrow >= 21): unchanged pages dedupe on the Hub's Xet store
        return pq.ParquetWriter(sink, schema, use_content_defined_chunking=True, **options)
    except TypeError:
        return pq.ParquetWriter(sink, schema, **options)


def write_config(
    root: Path,
    name: str,
    features: Any,
    count: int,
    make_row: Callable[[int], dict[str, Any]],
    sizes: Sequence[int],
    max_shard_bytes: int,
) -> ConfigExport:
    """Write `data/<name>/train-XXXXX-of-YYYYY.parquet` from rows made one at a time."""
    schema = features.arrow_schema
    shards = plan_shards(sizes, max_shard_bytes) if count else [range(0)]
    files: list[str] = []
    num_bytes = download_size = 0
    for number, rows in enumerate(shards):
        relpath = f"data/{name}/train-{number:05d}-of-{len(shards):05d}.parquet"
        target = root / relpath
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("wb") as sink, _parquet_writer(sink, schema) as writer:
            row_sizes = [sizes[i] for i in rows]
            if not rows:
                writer.write_table(schema.empty_table())
            for group in _row_groups((make_row(i) for i in rows), row_sizes):
                table = pa.Table.from_pylist(group, schema=schema)
                num_bytes += table.nbytes
                writer.write_table(table, row_group_size=len(group))
        download_size += target.stat().st_size
        files.append(relpath)
    return ConfigExport(name, count, tuple(files), num_bytes, download_size)


# -- the dataset card --------------------------------------------------------------------------
def _size_category(rows: int) -> str:
    for limit, label in (
        (1_000, "n<1K"),
        (10_000, "1K<n<10K"),
        (100_000, "10K<n<100K"),
        (1_000_000, "100K<n<1M"),
        (10_000_000, "1M<n<10M"),
    ):
        if rows < limit:
            return label
    return "10M<n<100M"


def _dataset_info_yaml(config: ConfigExport, features: Any) -> dict[str, Any]:
    from datasets import DatasetInfo, SplitDict, SplitInfo

    splits = SplitDict()
    splits.add(SplitInfo(name="train", num_bytes=config.num_bytes, num_examples=config.rows))
    info = DatasetInfo(
        features=features,
        splits=splits,
        download_size=config.download_size,
        dataset_size=config.num_bytes,
        config_name=config.name,
    )
    data = info._to_yaml_dict()  # the exact form `datasets` reads back from a card
    for split in data.get("splits", []):
        split.pop("dataset_name", None)
    return data


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return "" if value != value else f"{value:.3f}"  # NaN -> empty
    return str(value).replace("|", "\\|").replace("\n", " ")


def _counts(rows: list[dict[str, Any]], key: str) -> list[tuple[str, int, int]]:
    total = Counter(r[key] for r in rows)
    kept = Counter(r[key] for r in rows if r.get("kept"))
    return [(name, total[name], kept[name]) for name in sorted(total)]


SENSITIVITY_COLUMNS = (
    "concept", "n", "n_images", "clean_acc", "cf_acc", "cf_flip", "ctrl_flip", "sens_flip",
    "sens_flip_low", "sens_flip_high",
)  # fmt: skip


def _sensitivity_section(build_dir: Path) -> str:
    parts = []
    for path in sorted((build_dir / "report").glob("*/by_concept.parquet")):
        table = pq.read_table(path)
        columns = [c for c in SENSITIVITY_COLUMNS if c in table.column_names]
        rows = [[row[c] for c in columns] for row in table.select(columns).to_pylist()]
        parts.append(f"Classifier report `{path.parent.name}`:\n\n{_table(columns, rows)}")
    if not parts:
        return ""
    intro = (
        "Per concept, pooled over classes and textures: `cf_flip` is how often the prediction "
        "changes when the concept is re-textured, `ctrl_flip` the same for an area-matched "
        "random mask in the same image, `sens_flip` their difference (95% interval in "
        "`_low`/`_high`).\n\n"
    )
    return "## Sensitivity summary\n\n" + intro + "\n\n".join(parts) + "\n"


def render_card(
    view: _BuildView,
    configs: Sequence[tuple[ConfigExport, Any]],
    license_id: str,
    images: list[dict[str, Any]],
    repo_id: str | None,
) -> str:
    rows = view.counterfactuals
    build, resolved = view.build, view.build.get("resolved", {}) or {}
    name = build.get("name") or view.store.root.name
    source_licenses = Counter(image_license(i) or "unknown" for i in images)
    metadata: dict[str, Any] = {
        "license": license_id,
        # `other`: the card's Licenses section says which licenses apply to what
        **(
            {"license_name": "mixed-source-licenses", "license_link": "README.md"}
            if license_id == "other"
            else {}
        ),
        "pretty_name": f"conceptswap counterfactuals: {name}",
        "task_categories": ["image-classification"],
        "tags": ["conceptswap", "counterfactual", "synthetic", "robustness", "model-editing"],
        "size_categories": [_size_category(len(rows))],
        "configs": [
            {
                "config_name": config.name,
                "data_files": [{"split": "train", "path": f"data/{config.name}/train-*"}],
                **({"default": True} if config.name == "counterfactuals" else {}),
            }
            for config, _ in configs
        ],
        "dataset_info": [_dataset_info_yaml(config, features) for config, features in configs],
    }
    front = yaml.safe_dump(metadata, sort_keys=False, allow_unicode=True, width=1000)
    repo = repo_id or "<namespace>/<name>"
    kept = sum(bool(r.get("kept")) for r in rows)
    labelled = sum(i.get("label") is not None for i in images)
    segmenters = sorted({m.get("segmenter_id") for m in view.masks.values()} - {None})
    styles = resolved.get("styles") or [
        {"style_id": k, "license": v.get("license"), "source": v.get("source")}
        for k, v in sorted(view.styles.items())
    ]
    textures: dict[str, list[dict[str, Any]]] = {}
    for style in styles:
        textures.setdefault(str(style.get("style_id", "")).split("/")[0], []).append(style)
    config_text = (view.store.root / "build.yaml").read_text(encoding="utf-8").rstrip()
    sections = [
        f"# conceptswap counterfactuals: {name}\n",
        "Synthetic counterfactual images for auditing and editing image classifiers, built with "
        "conceptswap after *Editing a Classifier by Rewriting Its "
        "Prediction Rules* (Santurkar et al., NeurIPS 2021). Each row takes one concept of a "
        "source image (its mask), re-renders the image in a texture and composites the "
        "re-textured pixels into the mask only, then records what a classifier predicts on the "
        "clean and the counterfactual image and whether the row passes the build's filters "
        "(`kept`).\n",
        "```python\nfrom datasets import load_dataset\n\n"
        f'ds = load_dataset("{repo}", "counterfactuals", split="train")\n'
        'ds.features["label"].int2str(ds[0]["label"])  # -1 means unlabelled\n```\n',
        "## Columns\n\n"
        "- `image`, `mask`, `counterfactual`: PNG images (`Image()`); `image` is the source image "
        "at the build's working resolution, `mask` the 1-bit concept mask.\n"
        "- `label`, `clean_pred`, `cf_pred`: ImageNet-1k `ClassLabel`s; **-1 means no label** "
        "(the source image is unlabelled: the clean prediction is then the reference).\n"
        "- `concept`, `texture`, `style_image`, `blend`, `kept`; `mask_info` {mask_id, "
        "segmenter_id, score, area_frac}; `style` {style_id, sha256, license}.\n"
        "- `clean_topk`, `cf_topk`: lists of {class, prob} (`class` indexes the `label` names); "
        "`clean_true_prob`, `cf_true_prob`: probability of the reference class.\n"
        "- `verdicts`: one {ok, reason} per filter; `kept` is true when every filter passed.\n"
        "- ids (`cf_id`, `image_id`, `mask_info.mask_id`, `stylized_id`) are content hashes; "
        "`image_id` is the sha256 of the decoded source pixels.\n"
        + (
            "- config `cases`: edit test cases (concept, texture, target class, train exemplars, "
            "test groups) referring to `cf_id` and `image_id`; `params` is JSON.\n"
            if any(c.name == "cases" for c, _ in configs)
            else ""
        ),
        "## Statistics\n\n"
        + _table(
            ["", "count"],
            [
                ["source images", len(images)],
                ["labelled source images", labelled],
                ["counterfactual rows", len(rows)],
                ["kept rows", kept],
                *[[f"`{c.name}` rows", c.rows] for c, _ in configs if c.name != "counterfactuals"],
            ],
        )
        + "\n\nPer concept:\n\n"
        + _table(["concept", "rows", "kept"], _counts(rows, "concept"))
        + "\n\nPer texture:\n\n"
        + _table(["texture", "rows", "kept"], _counts(rows, "texture"))
        + "\n",
        _sensitivity_section(view.store.root),
        "## How it was built\n\n"
        + _table(
            ["component", "id (with weights hash)"],
            [
                ["classifier", f"`{resolved.get('classifier', '')}`"],
                ["segmenter", f"`{resolved.get('segmenter', '')}`"],
                *[["segmenter (masks)", f"`{s}`"] for s in segmenters],
                ["stylizer", f"`{resolved.get('stylizer', '')}`"],
            ],
        )
        + "\n\nTextures and their licenses (style images with their sha256 are in `build.yaml` "
        "below):\n\n"
        + _table(
            ["texture", "style images", "license", "source"],
            [
                [
                    name,
                    ", ".join(str(s.get("style_id")) for s in group),
                    ", ".join(sorted({str(s.get("license")) for s in group})),
                    group[0].get("source", ""),
                ]
                for name, group in sorted(textures.items())
            ],
        )
        + "\n\nThe resolved build configuration (`build.yaml`: versions, model ids and weight "
        "hashes, style images, seed):\n\n```yaml\n" + config_text + "\n```\n",
        "## Licenses\n\n"
        f"Dataset license: `{license_id}`. Each row is derived from a source image and a "
        "texture; both licenses apply.\n\nSource images:\n\n"
        + _table(["license", "images"], sorted(source_licenses.items()))
        + "\n\nTextures: see the table above. Model weights are not part of this dataset.\n",
    ]
    body = "\n".join(s for s in sections if s)
    return f"---\n{front}---\n\n{body}<!-- {EXPORT_MARKER} -->\n"


# -- entry point -------------------------------------------------------------------------------
def _is_export(folder: Path) -> bool:
    card = folder / "README.md"
    return card.is_file() and EXPORT_MARKER in card.read_text(encoding="utf-8", errors="replace")


def export_build(
    build_dir: str | Path,
    out_dir: str | Path,
    *,
    max_shard_size: int | str = DEFAULT_MAX_SHARD_SIZE,
    allow_unknown_license: bool = False,
    repo_id: str | None = None,
) -> ExportResult:
    """Write the Hugging Face dataset folder of a build to `out_dir` (replacing an old export).

    Raises `UnknownLicenseError` when exported source images have no license, unless
    `allow_unknown_license`; `FileExistsError` when `out_dir` is a non-empty folder that is not
    an earlier export.
    """
    view = _BuildView.load(build_dir)
    out = Path(out_dir).resolve()
    if out.exists() and any(out.iterdir()) and not _is_export(out):
        raise FileExistsError(f"{out} is not empty and not a conceptswap export; choose another")
    images = view.used_images()
    rows = view.counterfactuals
    unknown = sum(image_license(i) is None for i in images)
    if unknown and not allow_unknown_license:
        raise UnknownLicenseError(
            f"{unknown} of {len(images)} source images have no license (no `license` key in "
            "manifests/images.parquet source_meta); folder and Hugging Face sources carry none. "
            "Check that you may redistribute them, then pass allow_unknown_license=True "
            "(--allow-unknown-license)."
        )
    # every row derives from a source image and a texture: both licenses count
    style_licenses = [view.styles.get(r["style_image"], {}).get("license") for r in rows]
    license_id = hub_license(
        [image_license(i) for i in images]
        + [None if str(x or "").lower() in UNKNOWN_LICENSES else str(x) for x in style_licenses]
    )
    max_bytes = parse_size(max_shard_size)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".tmp-export-", dir=out.parent))
    try:
        verdicts = view.verdict_names()
        features = counterfactual_features(verdicts)
        configs = [
            (
                write_config(
                    staging,
                    "counterfactuals",
                    features,
                    len(rows),
                    lambda i: _counterfactual_row(view, rows[i], verdicts),
                    [_counterfactual_size(view, r) for r in rows],
                    max_bytes,
                ),
                features,
            )
        ]
        cases = _load_cases(view.store.root)
        if cases:
            groups = sorted({g for c in cases for g in (c.get("test_groups") or {})})
            case_feats = case_features(groups)
            sizes = [len(json.dumps(c)) for c in cases]
            export = write_config(
                staging,
                "cases",
                case_feats,
                len(cases),
                lambda i: _case_row(cases[i], groups),
                sizes,
                max_bytes,
            )
            configs.append((export, case_feats))
        card = render_card(view, configs, license_id, images, repo_id)
        (staging / "README.md").write_text(card, encoding="utf-8")
        staging.chmod(0o755)
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return ExportResult(out, tuple(c for c, _ in configs), license_id, unknown)


def read_export_bytes(root: str | Path) -> dict[str, bytes]:
    """Every file of an export folder by relative path (for tests and comparisons)."""
    base = Path(root)
    return {
        str(p.relative_to(base)): p.read_bytes() for p in sorted(base.rglob("*")) if p.is_file()
    }


__all__ = [
    "DEFAULT_MAX_SHARD_SIZE",
    "NO_LABEL",
    "ConfigExport",
    "ExportResult",
    "UnknownLicenseError",
    "case_features",
    "counterfactual_features",
    "export_build",
    "hub_license",
    "image_license",
    "parse_size",
    "plan_shards",
    "render_card",
]
