"""`train_locator`: meta-train a where-to-edit locator (orchestration only).

The work is `pipeline.editing.locate.train.train_locator`: one task runs it in the flow's
process (the classifier loads once) and a Markdown artifact records where the locator went and
its final losses.
"""

from __future__ import annotations

import json
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

import flows  # noqa: F401  (Prefect defaults)
from pipeline.editing.locate.artifact import RECORD_FILE
from pipeline.editing.locate.config import LocatorConfig
from pipeline.editing.locate.train import train_locator as train


@task(name="train-locator", cache_policy=NO_CACHE)
def train_task(config: LocatorConfig) -> str:
    logger = get_run_logger()
    return str(train(config, log=logger.info))


@flow(name="train_locator")
def train_locator(config: LocatorConfig | None = None, config_path: str | None = None) -> str:
    """Meta-train the locator `config` describes (or the one in `config_path`); returns the
    artifact's folder (locator.safetensors, locator.json, history.json, curves.png)."""
    if config is None:
        if config_path is None:
            raise ValueError("train_locator needs a config or a config_path")
        config = LocatorConfig.from_yaml(config_path)
    folder = train_task(config)
    record = json.loads((Path(folder) / RECORD_FILE).read_text(encoding="utf-8"))
    losses = ", ".join(f"{k} {v:.4g}" for k, v in sorted(record["final_losses"].items()))
    create_markdown_artifact(
        markdown=f"## Locator\n\n`{folder}`\n\npairs: {record['pairs']}\n\nfinal: {losses}\n",
        key="locator",
        description=folder,
    )
    return folder
