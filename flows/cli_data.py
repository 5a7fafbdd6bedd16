"""`conceptswap export` and `conceptswap publish`: getting a build's data out.

`register(app)` adds both commands to the CLI's typer app. Both check their inputs before any
file is written (the build and the manifests they export: `pipeline.validate.check_build_dir`;
the format; the shard size) and turn expected failures (a bad repo id, a source without a
license, a non-empty output folder) into one line and exit code 2, through the CLI's shared
handlers (`flows.cli_support`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flows.cli_support import console, expected_errors, fail, progress_bars

EXPORT_FORMATS = ("hf", "parquet", "webdataset")


def _check_inputs(build_dir: Path, max_shard_size: str, format: str | None = None) -> None:
    """Every input problem of export / publish, one line each, before a file is written."""
    from pipeline.publish import parse_size
    from pipeline.validate import Problem, check_build_dir

    problems = check_build_dir(build_dir, "export")
    if format is not None and format not in EXPORT_FORMATS:
        problems.append(Problem(f"--format {format!r}", f"use one of {', '.join(EXPORT_FORMATS)}"))
    try:
        parse_size(max_shard_size)
    except ValueError as error:
        problems.append(Problem("--max-shard-size", str(error)))
    fail(problems)


def export(
    build_dir: Annotated[Path, typer.Argument(metavar="BUILD", help="A build directory.")],
    out: Annotated[Path, typer.Option("--out", help="Folder to write (replaced if an export).")],
    format: Annotated[
        str,
        typer.Option("--format", help="hf (load_from_disk / load_dataset), parquet, webdataset."),
    ] = "hf",
    inline_images: Annotated[
        bool, typer.Option(help="Also store the source image in every counterfactual row.")
    ] = False,
    max_shard_size: Annotated[
        str, typer.Option(help="Largest shard (hf, webdataset), e.g. 500MB.")
    ] = "500MB",
) -> None:
    """Export a build for training: Hugging Face datasets, plain Parquet or WebDataset shards."""
    _check_inputs(build_dir, max_shard_size, format)
    with expected_errors(usage=(FileExistsError, FileNotFoundError, ValueError)):
        from pipeline.publish import export_build

        with progress_bars():
            result = export_build(
                build_dir,
                out,
                format=format,
                inline_images=inline_images,
                max_shard_size=max_shard_size,
                allow_unknown_license=True,  # a local copy redistributes nothing; the card says so
            )
    rows = ", ".join(f"{name}: {count} rows" for name, count in result.rows.items())
    console.print(f"[green]exported[/green] {format}: {len(result.files)} files ({rows})")
    typer.echo(str(result.root))


def publish(
    build_dir: Annotated[Path, typer.Argument(metavar="BUILD", help="A build directory.")],
    repo_id: Annotated[str, typer.Option("--repo-id", help="Dataset repo, ORG/NAME.")],
    private: Annotated[bool, typer.Option(help="Create the repo as private.")] = False,
    dry_run: Annotated[
        bool, typer.Option(help="Only write the folder that would be uploaded.")
    ] = False,
    allow_unknown_license: Annotated[
        bool,
        typer.Option(help="Publish even when some source images carry no license."),
    ] = False,
    out_dir: Annotated[
        Path | None,
        typer.Option("--out-dir", help="Where to write the export (default BUILD/publish/NAME)."),
    ] = None,
    revision: Annotated[
        str | None, typer.Option(help="Branch to commit to (created if missing).")
    ] = None,
    max_shard_size: Annotated[
        str, typer.Option(help="Largest Parquet shard, e.g. 500MB.")
    ] = "500MB",
    inline_images: Annotated[
        bool, typer.Option(help="Also store the source image in every counterfactual row.")
    ] = False,
) -> None:
    """Publish a build to the Hugging Face Hub (token: HF_TOKEN or `hf auth login`)."""
    from pipeline.publish import PublishError, UnknownLicenseError
    from pipeline.publish import publish as publish_build

    _check_inputs(build_dir, max_shard_size)
    refused = (UnknownLicenseError, PublishError, FileExistsError, ValueError)
    with expected_errors(usage=refused), progress_bars():
        result = publish_build(
            build_dir,
            repo_id,
            private=private,
            dry_run=dry_run,
            allow_unknown_license=allow_unknown_license,
            out_dir=out_dir,
            revision=revision,
            max_shard_size=max_shard_size,
            inline_images=inline_images,
        )
    rows = ", ".join(f"{name}: {count} rows" for name, count in result.rows.items())
    if result.dry_run:
        console.print(
            f"[green]dry run[/green] {len(result.files)} files ({rows}) in {result.folder}"
        )
        typer.echo(str(result.folder))
        return
    console.print(
        f"[green]published[/green] {result.repo_url or repo_id}: {result.files_uploaded} files "
        f"uploaded, {len(result.unchanged)} unchanged, {len(result.deleted)} deleted ({rows})"
    )
    typer.echo(result.commit_url or result.repo_url or repo_id)


def register(app: typer.Typer) -> None:
    """Add `export` and `publish` to the CLI."""
    app.command()(export)
    app.command()(publish)
