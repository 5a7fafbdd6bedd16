"""The dataset card (`README.md`) of an export: Hub metadata, columns, statistics, provenance.

The YAML front matter declares each config's data files and its features in the form `datasets`
reads back from a card (`dataset_info`), so `load_dataset` restores `Image()` and `ClassLabel`
from the card as well as from the Parquet / Arrow files (formats `hub` and `hf`; the plain
Parquet and WebDataset exports get the text only). The card's code blocks run as written
against the export they describe (a test executes them), with `location` the repo id or
folder. The text states the provenance (the resolved build config, model ids with weight
hashes, textures and their licenses) and the statistics.
Nothing in it depends on the clock, so an unchanged build gives the same card.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import yaml

from pipeline.publish.licenses import image_license
from pipeline.publish.rows import BuildView
from pipeline.publish.schema import UNLABELLED, UNLABELLED_NAME
from pipeline.publish.shards import ConfigExport
from pipeline.records import Counterfactual, SourceImage

EXPORT_MARKER = "conceptswap-export"  # last line of every card: marks a folder as an export


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


def _counts(rows: Sequence[Counterfactual], key: str) -> list[tuple[str, int, int]]:
    total = Counter(getattr(r, key) for r in rows)
    kept = Counter(getattr(r, key) for r in rows if r.kept)
    return [(name, total[name], kept[name]) for name in sorted(total)]


SENSITIVITY_COLUMNS = (
    "concept", "n", "n_images", "clean_acc", "cf_acc", "cf_flip", "ctrl_flip", "sens_flip",
    "sens_flip_low", "sens_flip_high",
)  # fmt: skip


def _sensitivity_section(build_dir: Path) -> str:
    """Per-concept sensitivity of every audit report of the build (none: no section)."""
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


DATA_FILES = {"hub": "data/{name}/train-*", "hf": "{name}/data-*.arrow"}


def _front_matter(
    name: str,
    configs: Sequence[tuple[ConfigExport, Any]],
    license_id: str,
    rows: int,
    format: str,
) -> str:
    """The card's YAML metadata: what the Hub shows and what `load_dataset` reads back."""
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
        "size_categories": [_size_category(rows)],
    }
    if format in DATA_FILES:
        metadata["configs"] = [
            {
                "config_name": config.name,
                "data_files": [
                    {"split": "train", "path": DATA_FILES[format].format(name=config.name)}
                ],
                **({"default": True} if config.name == "counterfactuals" else {}),
            }
            for config, _ in configs
        ]
        metadata["dataset_info"] = [_dataset_info_yaml(c, features) for c, features in configs]
    return yaml.safe_dump(metadata, sort_keys=False, allow_unicode=True, width=1000)


def usage(format: str, location: str, inline_images: bool) -> str:
    """The card's "Loading" section: code that runs as written against this export."""
    if format in ("hub", "hf"):
        inline = (
            'row["image"].size == original.size  # the source image is inline as well\n'
            if inline_images
            else ""
        )
        disk = (
            "from datasets import load_from_disk\n\n"
            f'dd = load_from_disk("{location}")  # a DatasetDict, one entry per config\n'
            'cfs = dd["counterfactuals"]\n'
            'print(cfs.features["cf_pred"].int2str(cfs[0]["cf_pred"]), len(dd["images"]))\n'
            if format == "hf"
            else ""
        )
        code = (
            "from datasets import load_dataset\n\n"
            f'ds = load_dataset("{location}", "counterfactuals", split="train")\n'
            "row = ds[0]\n"
            'print(ds.features["label"].int2str(row["label"]))  # "unlabelled": no ImageNet label\n'
            f'images = load_dataset("{location}", "images", split="train")  # each image once\n'
            'index = {image_id: i for i, image_id in enumerate(images["image_id"])}\n'
            'original = images[index[row["image_id"]]]["image"]  # joined by image_id\n'
            + inline
            + ("\n" + disk if disk else "")
        )
    elif format == "parquet":
        code = (
            "import io\n\nimport pyarrow.parquet as pq\nfrom PIL import Image\n\n"
            f'cfs = pq.read_table("{location}/counterfactuals.parquet").to_pylist()\n'
            f'images = pq.read_table("{location}/images.parquet").to_pylist()\n'
            'by_id = {image["image_id"]: image for image in images}\n'
            'original = Image.open(io.BytesIO(by_id[cfs[0]["image_id"]]["image"]))\n'
            'counterfactual = Image.open(io.BytesIO(cfs[0]["counterfactual"]))\n'
        )
    else:
        code = (
            "import glob\nimport json\nimport tarfile\n\n"
            f'shards = sorted(glob.glob("{location}/counterfactuals-*.tar"))\n'
            "with tarfile.open(shards[0]) as tar:\n"
            '    first = next(m for m in tar.getmembers() if m.name.endswith(".json"))\n'
            "    meta = json.load(tar.extractfile(first))\n"
            'print(meta["cf_id"], meta["label"], meta["concept"])\n'
        )
    return (
        "```python\n" + code + "```\n\n"
        f"Labels are ImageNet-1k class indices; index {UNLABELLED} (`{UNLABELLED_NAME}`) means "
        "the source image has no ImageNet label (or there is no prediction).\n"
    )


def render_card(
    view: BuildView,
    configs: Sequence[tuple[ConfigExport, Any]],
    license_id: str,
    images: Sequence[SourceImage],
    location: str | None,
    format: str = "hub",
    inline_images: bool = False,
) -> str:
    """The card's text for the written `configs` (each with its features); `location`: where
    the card's examples load the export from (a repo id, or the export folder)."""
    rows = view.counterfactuals
    build = view.store.resolved()
    resolved = build.get("resolved", {}) or {}
    name = build.get("name") or view.store.root.name
    source_licenses = Counter(image_license(i) or "unknown" for i in images)
    front = _front_matter(name, configs, license_id, len(rows), format)
    repo = location or "<namespace>/<name>"
    kept = sum(bool(r.kept) for r in rows)
    labelled = sum(i.label is not None for i in images)
    segmenters = sorted({m.segmenter_id for m in view.masks.values()})
    recorded = {k: v.split for k, v in view.styles.items()}  # the split, for older build.yaml
    styles = [
        {"split": recorded.get(str(style.get("style_id")), ""), **style}
        for style in resolved.get("styles") or []
    ] or [
        {"style_id": k, "license": v.license, "source": v.source, "split": v.split}
        for k, v in sorted(view.styles.items())
    ]
    textures: dict[str, list[dict[str, Any]]] = {}
    for style in styles:
        textures.setdefault(str(style.get("style_id", "")).split("/")[0], []).append(style)
    config_text = view.store.build_yaml.read_text(encoding="utf-8").rstrip()  # verbatim
    sections = [
        f"# conceptswap counterfactuals: {name}\n",
        "Synthetic counterfactual images for auditing and editing image classifiers, built with "
        "conceptswap after *Editing a Classifier by Rewriting Its "
        "Prediction Rules* (Santurkar et al., NeurIPS 2021). Each row takes one concept of a "
        "source image (its mask), re-renders the image in a texture and composites the "
        "re-textured pixels into the mask only, then records what a classifier predicts on the "
        "clean and the counterfactual image and whether the row passes the build's filters "
        "(`kept`).\n",
        "## Loading\n\n" + usage(format, repo, inline_images),
        "## Columns\n\n"
        "- config `counterfactuals`: `mask` and `counterfactual` PNG images (`Image()`), `mask` "
        "the 1-bit concept mask; the source image is in config `images`, joined by `image_id`"
        + (" (and inline, as `image`)" if inline_images else "")
        + ".\n"
        "- config `images`: each source image once: `image_id`, `image` (at the build's working "
        "resolution), `label`, `uri`, `width`/`height` (original size), `license`, "
        "`source_meta` (JSON).\n"
        "- `label`, `clean_pred`, `cf_pred`: ImageNet-1k `ClassLabel`s with one more name: "
        f"**{UNLABELLED} = `{UNLABELLED_NAME}`** (the source image has no ImageNet label: the "
        "clean prediction is then the reference).\n"
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
        )
        + (
            "- config `concept_scores`: TCAV scores of the audited classifiers, one row per "
            "(classifier, class, concept, layer), with the metrics that say whether to trust "
            "them (significance, std over seeds, CAV accuracy, location IoU and its baselines).\n"
            if any(c.name == "concept_scores" for c, _ in configs)
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
        + "\n\nStyle images, each with its own license and source (their sha256 are in "
        "`build.yaml` below; split: the texture's declared training or held-out styles):\n\n"
        + _table(
            ["style image", "split", "license", "source"],
            [
                [
                    str(s.get("style_id")),
                    str(s.get("split") or ""),
                    str(s.get("license")),
                    str(s.get("source", "")),
                ]
                for name, group in sorted(textures.items())
                for s in group
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


def is_export(folder: Path) -> bool:
    """Whether `folder` holds an earlier export (which a new export may replace)."""
    card = folder / "README.md"
    return card.is_file() and EXPORT_MARKER in card.read_text(encoding="utf-8", errors="replace")
