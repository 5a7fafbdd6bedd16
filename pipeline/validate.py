"""Check a whole build (config, output folder, models, vocabulary) before any work is done.

Every mistake a user can make in a config is found here, in a second, before an orchestrator
starts or a file is written, and reported as one `Problem(key, message)` per mistake: the key
names where it is (`segment.concepts[2]`, `source.path`, `--out`) and the message says what is
wrong and the fix, with "did you mean ..." for near names (`pipeline.names.did_you_mean`). The
functions here never print and never raise on bad input: front ends (the CLI) print the list.

What is checked, and against what:

* the YAML and its schema (pydantic: unknown keys, types, ranges) - `load_build_config`, which
  parses with `BuildConfig.from_yaml` (the one config parser) and splits its errors per key;
* the source: the kind's fields only (a field another kind uses is refused: it would be
  silently ignored), the folder exists and holds images, the sample names;
* the backends by registry name, each concept against what the segmenter can find
  (`pipeline.segment.vocabulary.coverage`), the textures against the texture library;
* the classifier: `backend:model`, a known backend, a known timm model (`timm.is_model`);
* the device: `cuda` needs a visible GPU;
* the output folder: not a file, writable (or creatable);
* for `edit`: method names and the layer on the loaded model;
* a finished build that a command reads (`check_build_dir`): the folder, and each manifest the
  command reads (`MANIFESTS_READ`) present where needed, readable Parquet, of the declared
  schema (`pipeline.records`), so a truncated file is one line, not a traceback from a flow.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from pipeline.config import BuildConfig, ConfigError, SourceConfig
from pipeline.names import did_you_mean


@dataclass(frozen=True)
class Problem:
    """One mistake: where it is (`key`: a config key path or a command-line option) and what to
    do about it (`message`, one line)."""

    key: str
    message: str

    def __str__(self) -> str:
        return f"{self.key}: {self.message}"


def _key(location: Iterable[Any]) -> str:
    text = ""
    for part in location:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(config)"


def _schema_problems(error: ValidationError) -> list[Problem]:
    """Pydantic's errors as one line each; an unknown key gets the near known key."""
    problems = []
    for item in error.errors():
        location = [part for part in item["loc"] if not str(part).startswith("function-")]
        key = _key(location)
        if item["type"] == "extra_forbidden" and location:
            known = _known_fields(location[:-1])
            hint = did_you_mean(str(location[-1]), known, "keys")
            problems.append(Problem(key, f"unknown key{hint}"))
            continue
        message = str(item["msg"]).removeprefix("Value error, ")
        if item["type"] not in ("missing", "value_error"):
            message += f" (got {item.get('input')!r})"
        problems.append(Problem(key, message))
    return problems


def _known_fields(location: Sequence[Any]) -> list[str]:
    model: Any = BuildConfig
    for part in location:
        field = model.model_fields.get(str(part)) if hasattr(model, "model_fields") else None
        model = field.annotation if field is not None else None
    return list(getattr(model, "model_fields", {}))


def load_build_config(path: str | Path) -> tuple[BuildConfig | None, list[Problem]]:
    """Parse a config file: (the config, []) or (None, the problems, one per mistake).

    The parsing is `BuildConfig.from_yaml`'s; only its errors are reported differently: one
    `Problem` per key, with the near known key for a typo."""
    try:
        return BuildConfig.from_yaml(path), []
    except ConfigError as error:
        return None, config_problems(error, str(path))


def config_problems(error: ConfigError, where: str, key: str = "--config") -> list[Problem]:
    """A config error as problems: one per invalid key (`where`: the file or the options it
    came from), or the error itself under `key` when the file did not even parse."""
    if error.validation is None:
        return [Problem(key, str(error))]
    return [Problem(p.key, f"{p.message} (in {where})") for p in _schema_problems(error.validation)]


# -- the parts of a build config ---------------------------------------------------------------
def check_source(source: SourceConfig) -> list[Problem]:
    """The kind's own fields only, and a source with at least one image (where cheap to tell)."""
    from pipeline.sources import SOURCE_FIELDS
    from pipeline.sources.samples import SAMPLES

    problems = []
    used = SOURCE_FIELDS[source.kind]
    for field in sorted(source.model_fields_set - {"kind"} - set(used)):
        problems.append(
            Problem(
                f"source.{field}",
                f"not used by source kind {source.kind!r} (it uses {', '.join(used)}); remove it",
            )
        )
    if source.kind == "samples":
        for index, name in enumerate(source.names or []):
            if name not in SAMPLES:
                hint = did_you_mean(name, SAMPLES, "samples")
                problems.append(
                    Problem(f"source.names[{index}]", f"no built-in sample {name!r}{hint}")
                )
    if source.kind == "folder" and source.path:
        problems += _check_folder(Path(source.path).expanduser())
    local = source.path and not source.dataset
    if source.kind == "huggingface" and local and not Path(str(source.path)).expanduser().exists():
        problems.append(Problem("source.path", f"no dataset folder at {source.path}"))
    return problems


def _check_folder(root: Path) -> list[Problem]:
    from pipeline.sources.folder import IMAGE_SUFFIXES, FolderSource

    if not root.exists():
        parent = root.parent
        hint = did_you_mean(root.name, _children(parent)) if parent.is_dir() else ""
        return [Problem("source.path", f"no folder {root}{hint}")]
    if not root.is_dir():
        return [Problem("source.path", f"{root} is a file; give the folder that holds the images")]
    if next(iter(FolderSource(root).refs()), None) is None:
        suffixes = ", ".join(sorted(IMAGE_SUFFIXES))
        return [Problem("source.path", f"no image files under {root} (looked for {suffixes})")]
    return []


def _children(folder: Path) -> list[str]:
    try:
        return sorted(entry.name for entry in folder.iterdir())
    except OSError:
        return []


def check_backends(config: BuildConfig) -> list[Problem]:
    """Segmenter and stylizer by registry name, concepts against what the segmenter finds."""
    from pipeline.segment import segmenters
    from pipeline.stylize import stylizers

    problems = []
    for key, registry, name in (
        ("segment.backend", segmenters, config.segment.backend),
        ("stylize.backend", stylizers, config.stylize.backend),
    ):
        if name not in registry:
            hint = did_you_mean(name, registry.names(), "backends")
            problems.append(Problem(key, f"unknown {registry.stage} backend {name!r}{hint}"))
    problems += check_concepts(config.segment.concepts, config.segment.backend)
    problems += check_textures(config.stylize.textures)
    return problems


def check_concepts(concepts: Sequence[str], backend: str) -> list[Problem]:
    """Each concept known to the vocabulary and findable by `backend` (when the vocabulary
    knows the backend's label space; a plug-in backend's concepts are its own business)."""
    from pipeline.segment.vocabulary import canonical, coverage, load_vocabulary

    vocabulary = load_vocabulary()
    table = coverage()
    findable = table.get(backend)
    problems = []
    for index, concept in enumerate(concepts):
        key = f"segment.concepts[{index}]"
        try:
            name = canonical(concept)
        except KeyError:
            choices = list(findable) if findable is not None else list(vocabulary.concepts)
            hint = did_you_mean(concept, choices) or did_you_mean(concept, vocabulary.lookup)
            problems.append(Problem(key, f"unknown concept {concept!r}{hint}"))
            continue
        if findable is not None and name not in findable:
            others = [b for b, found in table.items() if name in found and b != "annotations"]
            fix = f"use segment.backend {' or '.join(others)}" if others else "use annotations"
            hint = did_you_mean(concept, findable)
            problems.append(
                Problem(key, f"{backend!r} cannot find {name!r}{hint or ''}; {fix}".strip())
            )
    return problems


def check_textures(textures: Sequence[str]) -> list[Problem]:
    from pipeline.stylize.library import load_texture_library

    names = load_texture_library().names()
    return [
        Problem(f"stylize.textures[{i}]", f"no texture {t!r}{did_you_mean(t, names, 'textures')}")
        for i, t in enumerate(textures)
        if t not in names
    ]


def check_classifier_name(name: str, key: str = "classifier.name") -> list[Problem]:
    """`backend:model` with a registered backend; timm models must be known to timm."""
    from pipeline.classify import classifiers

    backend, _, model = name.partition(":")
    if not model:
        hint = f"; did you mean timm:{name}?" if _is_timm_model(name) else ""
        return [Problem(key, f"{name!r} must be backend:model{hint or ' (e.g. timm:NAME)'}")]
    if backend not in classifiers:
        hint = did_you_mean(backend, classifiers.names(), "classifier backends")
        return [Problem(key, f"unknown classifier backend {backend!r}{hint}")]
    if backend == "timm" and not _is_timm_model(model):
        import timm

        hint = did_you_mean(model, timm.list_models())
        return [Problem(key, f"timm has no model {model!r}{hint}")]
    if backend == "checkpoint" and not Path(model).expanduser().is_file():
        return [Problem(key, f"no checkpoint file {model}")]
    return []


def _is_timm_model(model: str) -> bool:
    import timm

    return bool(timm.is_model(model))


def check_device(device: str, key: str = "classifier.device") -> list[Problem]:
    """`cuda` (or `cuda:N`) needs a visible GPU; `auto` and `cpu` always work."""
    if device in ("auto", "cpu"):
        return []
    if not device.startswith("cuda"):
        return [Problem(key, f"unknown device {device!r}; use auto, cpu or cuda")]
    import torch

    if not torch.cuda.is_available():
        return [Problem(key, "cuda asked for but no GPU is visible; use auto or cpu")]
    index = device.partition(":")[2]
    if index and (not index.isdigit() or int(index) >= torch.cuda.device_count()):
        return [Problem(key, f"no GPU {device!r}: {torch.cuda.device_count()} visible")]
    return []


def check_output_dir(path: str | Path, key: str = "--out") -> list[Problem]:
    """The build folder: a folder (or creatable), writable; never an existing file."""
    target = Path(path).expanduser()
    if target.exists() and not target.is_dir():
        return [Problem(key, f"{target} is a file; give a folder for the build")]
    existing = target
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        return [Problem(key, f"{existing} is a file, so {target} cannot be created")]
    if not os.access(existing, os.W_OK | os.X_OK):
        return [Problem(key, f"{existing} is not writable; choose another folder")]
    return []


def check_build(config: BuildConfig, out: str | Path | None) -> list[Problem]:
    """Every problem of a build of `config` into `out` (None: the default folder)."""
    from pipeline.config import DEFAULT_BUILDS_DIR

    problems = check_source(config.source)
    problems += check_backends(config)
    problems += check_classifier_name(config.classifier.name)
    classifier_option = config.segment.options.get("classifier")
    if isinstance(classifier_option, str):
        problems += check_classifier_name(classifier_option, "segment.options.classifier")
    problems += check_device(config.classifier.device)
    problems += check_output_dir(out or DEFAULT_BUILDS_DIR / config.name)
    return problems


# -- editing ----------------------------------------------------------------------------------
def check_methods(methods: Sequence[str] | None, key: str = "--method") -> list[Problem]:
    from pipeline.editing.methods import available_methods

    known = available_methods()
    return [
        Problem(key, f"unknown edit method {m!r}{did_you_mean(m, known, 'methods')}")
        for m in methods or ()
        if m not in known
    ]


def check_plan(plan: str, key: str = "--plan") -> list[Problem]:
    """A case plan `resolve_cases` knows (`auto`, `classes`, `errors`)."""
    from pipeline.editing.run_inputs import PLANS

    if plan in PLANS:
        return []
    return [Problem(key, f"unknown case plan {plan!r}{did_you_mean(plan, PLANS, 'plans')}")]


def check_covariance(
    specs: Sequence[str] | None, views: str, key: str = "--covariance"
) -> list[Problem]:
    """The image sets of the key statistics: each a folder (a build or images) or an `hf:`
    dataset, read only when the edit runs; `views` center or windows."""
    from pipeline.editing.key_sources import is_hf_spec

    problems = [
        Problem(key, f"{spec} is not a folder (a build or a folder of images)")
        for spec in specs or ()
        if not is_hf_spec(spec) and not Path(spec).expanduser().is_dir()
    ]
    if views not in ("center", "windows"):
        problems.append(Problem(f"{key}-views", f"{views!r}: use center or windows"))
    return problems


def check_layer(model: Any, layer: str, key: str = "--layer") -> list[Problem]:
    """`layer` names a dense conv or linear layer of `model` (a torch module)."""
    from torch import nn

    from pipeline.editing.layers import UnsupportedLayerError
    from pipeline.editing.layers import check_layer as check_module

    modules = dict(model.named_modules())
    if layer not in modules:
        editable = [
            name
            for name, module in modules.items()
            if isinstance(module, nn.Linear)
            or (isinstance(module, nn.Conv2d) and module.groups == 1)
        ]
        hint = did_you_mean(layer, editable) or f"; e.g. {', '.join(editable[-3:])}"
        return [Problem(key, f"the model has no layer {layer!r}{hint}")]
    try:
        check_module(modules[layer], layer)
    except UnsupportedLayerError as error:
        return [Problem(key, str(error).splitlines()[0])]
    return []


# -- a finished build that a command reads -----------------------------------------------------
# the manifests each operation reads: the first must exist; the others are read when present
# (an absent one reads as an empty table) and must then be readable too
MANIFESTS_READ: dict[str, tuple[str, ...]] = {
    "audit": ("counterfactuals", "images", "masks", "stylized"),
    "edit": ("counterfactuals", "images", "masks"),
    "concepts": ("masks",),
    "export": ("counterfactuals", "images", "masks", "styles"),
}
REBUILD = "rewrite it with `conceptswap build --force` and the build's config"


def check_build_dir(build_dir: str | Path, reads: str, key: str = "BUILD") -> list[Problem]:
    """The build folder, and the manifests operation `reads` (a key of `MANIFESTS_READ`) reads.

    Every file is read once here, in well under a second for a build's manifests, so that a
    truncated or foreign file is one line naming it rather than a traceback from inside a flow.
    """
    from pipeline.store import BuildStore

    root = Path(build_dir).expanduser()
    if not root.is_dir():
        state = "is a file" if root.exists() else "does not exist"
        return [Problem(key, f"{root} {state}; give a build directory (conceptswap build)")]
    store = BuildStore(root)
    required, *optional = MANIFESTS_READ[reads]
    path = store.manifest_path(required)
    if not path.is_file():
        return [Problem(key, f"{root} has no {path.relative_to(store.root)}; build it first")]
    problems = check_manifest(path, required, key)
    for kind in optional:
        if store.manifest_path(kind).is_file():
            problems += check_manifest(store.manifest_path(kind), kind, key)
    return problems


def check_manifest(path: str | Path, kind: str, key: str = "BUILD") -> list[Problem]:
    """`path` is readable Parquet whose columns cast to the types `RECORD_TYPES[kind]` declares
    (the cast `BuildStore.table` makes when a stage or report reads it). A column whose field
    has a default may be absent: builds made before the field was declared lack it."""
    import dataclasses

    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipeline.records import RECORD_TYPES

    record = RECORD_TYPES[kind]
    declared = record.arrow_schema()
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as error:
        return [Problem(key, f"{path} is not readable Parquet ({_arrow_reason(error)}); {REBUILD}")]
    missing = [
        field.name
        for field in dataclasses.fields(record)
        if field.name not in table.column_names
        and field.default is dataclasses.MISSING
        and field.default_factory is dataclasses.MISSING
    ]
    if missing:
        columns = ", ".join(missing)
        return [Problem(key, f"{path} lacks the {kind} columns {columns}; {REBUILD}")]
    for field in declared:
        if field.name not in table.column_names:
            continue
        column = table.column(field.name)
        if column.type == field.type:
            continue
        try:
            column.cast(field.type)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            found = f"column {field.name} is {column.type}, not {field.type}"
            return [Problem(key, f"{path}: {found} as a {kind} manifest declares; {REBUILD}")]
    return []


def _arrow_reason(error: Exception) -> str:
    """The first sentence of pyarrow's message, without the path it repeats."""
    text = re.sub(r"^Could not open Parquet input source '[^']*':\s*", "", str(error))
    return " ".join(text.split()).split(". ")[0].rstrip(".") or type(error).__name__


__all__ = [
    "MANIFESTS_READ",
    "Problem",
    "check_backends",
    "check_build",
    "check_build_dir",
    "check_classifier_name",
    "check_concepts",
    "check_covariance",
    "check_device",
    "check_layer",
    "check_manifest",
    "check_methods",
    "check_output_dir",
    "check_plan",
    "check_source",
    "check_textures",
    "load_build_config",
]
