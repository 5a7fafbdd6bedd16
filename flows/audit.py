"""`audit_model`: the counterfactual sensitivity report of one or more classifiers on a build."""

from __future__ import annotations

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

import flows  # noqa: F401  (Prefect defaults)
from pipeline.report import run_audit, summary_markdown


@task(name="audit", cache_policy=NO_CACHE)
def audit_task(build: str, models: list[str], seed: int, device: str) -> str:
    # predictions are cached per (build, classifier id) by the library: a re-audit is instant
    return str(run_audit(build, models, seed=seed, device=device))


@flow(name="audit_model")
def audit_model(
    build: str, models: list[str] | None = None, seed: int = 0, device: str = "auto"
) -> str:
    """Audit classifiers on a build's counterfactuals; returns the HTML report's path."""
    chosen = models or ["timm:tf_efficientnet_lite0"]
    report = audit_task(build, chosen, seed, device)
    get_run_logger().info("report: %s", report)
    create_markdown_artifact(
        markdown=summary_markdown(build), key="sensitivity-summary", description=report
    )
    return report
