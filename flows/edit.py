"""`run_edits`: every editing method on every edit case of a build, then the comparison.

Orchestration only (the work is `pipeline.editing.runner` and `pipeline.report.edits`): one
task plans or loads the cases, one task per batch of cases runs every method on them (the first
batch also computes the key statistics C, later batches load them from `BUILD/edits/cache/`),
and a last task writes the comparison and publishes it as a Markdown artifact. Batches run one
after another in the flow's process, where `pipeline.classify.create_classifier` loads the
classifier once. Everything already computed (results with the same run key, saved deltas) is
skipped by the library, so a re-run is cheap.
"""

from __future__ import annotations

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

import flows  # noqa: F401  (Prefect defaults)
from pipeline.editing import runner
from pipeline.report import edits as edit_report
from pipeline.store.edits_layout import COMPARISON_MD, edits_dir


@task(name="edit-cases", cache_policy=NO_CACHE)
def cases_task(build: str, cases: list[str] | None = None, plan: str = "auto") -> list[str]:
    found = runner.resolve_cases(build, cases) if plan == "auto" else None
    found = found if found is not None else runner.resolve_cases(build, cases, plan=plan)
    return [case.case_id for case in found]


@task(name="edit-batch", cache_policy=NO_CACHE)
def edit_batch_task(
    build: str,
    model: str,
    layer: str | None,
    methods: list[str],
    case_ids: list[str],
    budget_pp: float,
    device: str,
    covariance: list[str] | None = None,
    covariance_views: str = "center",
) -> str:
    logger = get_run_logger()
    folder = runner.run_edits(
        build,
        model,
        layer,
        methods,
        cases=case_ids,
        budget_pp=budget_pp,
        device=device,
        covariance_images=covariance_spec(covariance),
        covariance_views=covariance_views,
        log=logger.info,
    )
    return str(folder)


def covariance_spec(covariance: list[str] | None) -> str | list[str] | None:
    """The runner's ``covariance_images`` for the flow's list of image sets (none: the build's
    own images no case uses; one: that build, image folder or ``hf:`` dataset; several: their
    equal-weight mix)."""
    if not covariance:
        return None
    return covariance[0] if len(covariance) == 1 else list(covariance)


@task(name="edit-comparison", cache_policy=NO_CACHE)
def comparison_task(build: str) -> str:
    edit_report.write_comparison(build)
    path = edits_dir(build) / COMPARISON_MD
    return path.read_text(encoding="utf-8") if path.is_file() else "No edit results.\n"


@flow(name="run_edits")
def run_edits(
    build: str,
    model: str = "timm:tf_efficientnet_lite0",
    layer: str | None = None,
    methods: list[str] | None = None,
    budget_pp: float = 1.0,
    device: str = "auto",
    cases_per_task: int = 8,
    cases: list[str] | None = None,
    plan: str = "auto",
    covariance: list[str] | None = None,
    covariance_views: str = "center",
) -> str:
    """Edit `model` at `layer` with each method on every case of `build`; returns the
    `BUILD/edits` folder (results.parquet, comparison.md/.parquet/.png, deltas).

    `layer`: default `pipeline.editing.runner.default_layer` (EfficientNet-Lite0:
    `blocks.6.0.conv_pwl`); `methods`: registry names of `pipeline.editing.methods` (default
    rewrite, rewrite-closed, finetune-local, finetune-global); `budget_pp`: the clean-accuracy
    budget of hyper-parameter selection; `cases`: case ids to run (default: every case of the
    build, planned by `plan` if there are none: `auto` (class cases, else error cases),
    `classes` or `errors`, see `pipeline.editing.runner.resolve_cases`; a build without any
    raises `NoCasesError`, a ValueError saying why); `covariance`: the image sets of the key
    statistics `C` (builds or image folders, mixed with equal weights; default: the build's
    images no case uses); `covariance_views`: `windows` adds every non-square image's two end
    squares to `C`.
    """
    logger = get_run_logger()
    chosen = list(methods or runner.DEFAULT_METHODS)
    case_ids = cases_task(build, cases, plan)
    logger.info("%d cases x %d methods (%s)", len(case_ids), len(chosen), ", ".join(chosen))
    size = max(1, cases_per_task)
    for start in range(0, len(case_ids), size):
        edit_batch_task(
            build,
            model,
            layer,
            chosen,
            case_ids[start : start + size],
            budget_pp,
            device,
            covariance,
            covariance_views,
        )
    markdown = comparison_task(build)
    folder = str(edits_dir(build))
    create_markdown_artifact(
        markdown=f"## Edit comparison\n\n{markdown}", key="edit-comparison", description=folder
    )
    logger.info("edit results: %s", folder)
    return folder
