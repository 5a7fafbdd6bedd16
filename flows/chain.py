"""`counterfactual_pipeline`: build → audit → edits → publish, as one flow run.

Each step is the flow that runs it alone, called as a subflow so each shows in the UI:
`build_dataset` (`flows/build.py`), `audit_model` (`flows/audit.py`), `run_edits`
(`flows/edit.py`) and `publish_dataset` (`flows/publish.py`). Publishing runs only when
`publish_repo_id` is given. (This module is not called `pipeline.py`: Prefect loads a file
entrypoint with `flows/` first on `sys.path`, where that name would shadow the library.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger

import flows  # noqa: F401  (Prefect defaults)
from flows.audit import audit_model
from flows.build import build_dataset
from flows.edit import run_edits as run_edits_flow
from flows.publish import publish_dataset
from pipeline.config import BuildConfig
from pipeline.editing.config import EditConfig
from pipeline.store import BuildStore

DEFAULT_CLASSIFIER = "timm:tf_efficientnet_lite0"


def build_classifier(build: Path) -> str:
    """The classifier a build filtered with (its config's `classifier.name`)."""
    store = BuildStore(build)
    return store.config().classifier.name if store.build_yaml.is_file() else DEFAULT_CLASSIFIER


def edit_config(build: Path, path: str | None, overrides: dict[str, Any]) -> EditConfig:
    """The edit config of the pipeline's edit step: the file's, with the flow's overrides;
    without a file, the defaults with the build's classifier as the model."""
    if path:
        return EditConfig.from_yaml(path).overridden(**overrides)
    return EditConfig().overridden(**{"model": build_classifier(build), **overrides})


@flow(name="counterfactual_pipeline")
def counterfactual_pipeline(
    config: BuildConfig | None = None,
    config_path: str | None = None,
    out: str | None = None,
    runner: str = "local",
    audit_models: list[str] | None = None,
    edit_config_path: str | None = None,
    edit_model: str | None = None,
    edit_layer: str | None = None,
    edit_methods: list[str] | None = None,
    run_audit: bool = True,
    run_edits: bool = True,
    publish_repo_id: str | None = None,
    private: bool = False,
    dry_run: bool = False,
    allow_unknown_license: bool = False,
) -> dict[str, Any]:
    """Build a dataset, audit classifiers on it, run the editing methods, optionally publish.

    `audit_models` and `edit_model` default to the build's classifier; the edits run with the
    edit config at `edit_config_path` (default: the defaults), `edit_model`, `edit_layer` and
    `edit_methods` overriding it. `runner` picks where the
    build's shard tasks run (`local`, `dask`, `dask:N`, `dask=ADDRESS`; see `flows/runners.py`).
    Returns what each step returned, or why it was skipped.
    """
    logger = get_run_logger()
    manifest = build_dataset(config=config, config_path=config_path, out=out, runner=runner)
    build = Path(manifest).parent
    classifier = build_classifier(build)
    summary: dict[str, Any] = {"build": str(build), "manifest": str(manifest)}
    summary["audit"] = (
        audit_model(build=str(build), models=audit_models or [classifier])
        if run_audit
        else "skipped: run_audit=False"
    )
    overrides = {"model": edit_model, "layer": edit_layer, "methods": edit_methods}
    summary["edits"] = (
        run_edits_flow(build=str(build), config=edit_config(build, edit_config_path, overrides))
        if run_edits
        else "skipped: run_edits=False"
    )
    summary["publish"] = (
        publish_dataset(
            build=str(build),
            repo_id=publish_repo_id,
            private=private,
            dry_run=dry_run,
            allow_unknown_license=allow_unknown_license,
        )
        if publish_repo_id
        else "skipped: no publish_repo_id"
    )
    logger.info("pipeline done: %s", summary)
    return summary
