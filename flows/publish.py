"""`publish_dataset`: export a build as a Hugging Face dataset and upload what changed.

The token is never a flow parameter (parameters are stored by the Prefect API and shown in the
UI): it comes from the worker's environment (`HF_TOKEN`, or the token file of `hf auth login`),
or from a Prefect `Secret` block named by `token_secret`. It is never logged.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

import flows  # noqa: F401  (Prefect defaults)
from pipeline.publish import publish


def _secret_token(name: str) -> str:
    from prefect.blocks.system import Secret

    value = Secret.load(name).get()
    return str(value)


@task(name="export-and-upload", cache_policy=NO_CACHE)
def publish_task(
    build: str,
    repo_id: str,
    private: bool,
    dry_run: bool,
    allow_unknown_license: bool,
    token_secret: str | None,
    max_shard_size: str,
    out_dir: str | None,
    revision: str | None,
    inline_images: bool,
) -> dict[str, Any]:
    token = _secret_token(token_secret) if token_secret and not dry_run else None
    result = publish(
        build,
        repo_id,
        private=private,
        dry_run=dry_run,
        allow_unknown_license=allow_unknown_license,
        token=token,
        max_shard_size=max_shard_size,
        out_dir=out_dir,
        revision=revision,
        inline_images=inline_images,
    )
    return result.to_dict()


@flow(name="publish_dataset")
def publish_dataset(
    build: str,
    repo_id: str,
    private: bool = False,
    dry_run: bool = False,
    allow_unknown_license: bool = False,
    token_secret: str | None = None,
    max_shard_size: str = "500MB",
    out_dir: str | None = None,
    revision: str | None = None,
    inline_images: bool = False,
) -> dict[str, Any]:
    """Publish the build directory `build` to the dataset repo `repo_id`; returns a summary.

    `dry_run` writes the folder that would be uploaded (`out_dir`, default
    `BUILD/publish/<repo-name>/`) and sends nothing. `revision`: the branch to commit to.
    `inline_images`: the source image in every counterfactual row too.
    `token_secret`: name of a Prefect Secret block holding the Hugging Face token
    (default: `HF_TOKEN` / the token file on the machine that runs the flow).
    """
    logger = get_run_logger()
    summary = publish_task(
        build, repo_id, private, dry_run, allow_unknown_license, token_secret, max_shard_size,
        out_dir, revision, inline_images,
    )  # fmt: skip
    if dry_run:
        logger.info("dry run: %d files in %s", len(summary["files"]), summary["folder"])
    else:
        logger.info(
            "%s: %d files uploaded, %d unchanged, %d deleted%s",
            repo_id,
            summary["files_uploaded"],
            len(summary["unchanged"]),
            len(summary["deleted"]),
            f" ({summary['commit_url']})" if summary["commit_url"] else "",
        )
    return summary
