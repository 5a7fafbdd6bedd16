"""`run_edits`: every editing method on every edit case of a build, then the comparison.

Orchestration only (the work is `pipeline.editing.runner` and `pipeline.report.edits`): one
task plans or loads the cases, one task per batch of cases runs every method on them (the first
batch also computes the key statistics C, later batches load them from `BUILD/edits/cache/`),
and a last task writes the comparison of this run's cases and methods (not other experiments'
results the build holds) and publishes it as a Markdown artifact. Batches run one
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
from pipeline.editing.config import EditConfig
from pipeline.report import edits as edit_report
from pipeline.store.edits_layout import COMPARISON_MD, edits_dir


@task(name="edit-cases", cache_policy=NO_CACHE)
def cases_task(build: str, config: EditConfig, cases: list[str] | None = None) -> list[str]:
    found = runner.resolve_cases(build, cases if cases is not None else config.cases, config.plan)
    return [case.case_id for case in found]


@task(name="edit-batch", cache_policy=NO_CACHE)
def edit_batch_task(build: str, config: EditConfig, case_ids: list[str]) -> str:
    logger = get_run_logger()
    return str(runner.run_edits(build, config, cases=case_ids, log=logger.info))


@task(name="edit-comparison", cache_policy=NO_CACHE)
def comparison_task(build: str, case_ids: list[str], methods: list[str]) -> str:
    edit_report.write_comparison(build, cases=case_ids, methods=methods)
    path = edits_dir(build) / COMPARISON_MD
    return path.read_text(encoding="utf-8") if path.is_file() else "No edit results.\n"


@flow(name="run_edits")
def run_edits(
    build: str,
    config: EditConfig | None = None,
    config_path: str | None = None,
    cases: list[str] | None = None,
    cases_per_task: int = 8,
) -> str:
    """Edit the model of `config` with each of its methods on every case of `build`; returns
    the `BUILD/edits` folder (results.parquet, comparison.md/.parquet/.png, curves, deltas).

    `config`: the experiment (`pipeline.editing.config.EditConfig`: plan, model and layer,
    methods and grids, budget, key-statistics images, locality sets); deployments that keep it
    in a file pass `config_path` instead; neither: the defaults. `cases`: case ids to run
    (default: every case, planned by the config's plan when there are none; a build without
    any raises `NoCasesError`, a ValueError saying why). Cases run in batches of
    `cases_per_task`, one after another in this process, where the classifier loads once; the
    first batch computes the key statistics, later ones load them from `BUILD/edits/cache/`.
    """
    logger = get_run_logger()
    if config is None:
        config = EditConfig.from_yaml(config_path) if config_path else EditConfig()
    case_ids = cases_task(build, config, cases)
    logger.info(
        "%d cases x %d methods (%s)",
        len(case_ids),
        len(config.methods),
        ", ".join(config.method_names),
    )
    size = max(1, cases_per_task)
    for start in range(0, len(case_ids), size):
        edit_batch_task(build, config, case_ids[start : start + size])
    markdown = comparison_task(build, case_ids, config.method_names)
    folder = str(edits_dir(build))
    create_markdown_artifact(
        markdown=f"## Edit comparison\n\n{markdown}", key="edit-comparison", description=folder
    )
    logger.info("edit results: %s", folder)
    return folder
