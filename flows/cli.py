"""The `conceptswap` command line: the application layer on top of the flows.

It parses and checks the config once and hands the parsed objects down (`build_dataset`
receives a `BuildConfig`, never a path to parse again). `conceptswap build` with no arguments
builds the offline demo dataset from the built-in sample photos into `data/builds/demo/`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from pipeline import progress

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Synthetic counterfactual image datasets for auditing and editing image classifiers.",
)
console = Console(stderr=True)


def _rich_reporter(bar: Progress) -> progress.Reporter:
    tasks: dict[str, int] = {}

    def report(stage: str, amount: int, total: int | None) -> None:
        if stage not in tasks:
            tasks[stage] = bar.add_task(stage, total=total)
        elif total is not None:
            bar.update(tasks[stage], total=total)
        bar.advance(tasks[stage], amount)

    return report


@app.command()
def build(
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="Build config YAML (default: demo).")
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Build directory (default data/builds/NAME).")
    ] = None,
    runner: Annotated[
        str,
        typer.Option(
            help="Where shards run: local, dask, dask:N, dask:N:T or dask=ADDRESS "
            "(needs the dask extra; see docs/operations.md)."
        ),
    ] = "local",
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Run the flow even when the build is up to date (stages still skip "
            "their finished work).",
        ),
    ] = False,
) -> None:
    """Build a counterfactual dataset (no arguments: the offline demo).

    A build that finished with the same config, models, source files and style images, and
    still has all its files, is up to date: the command says so and starts nothing.
    """
    from flows.runners import parse_runner
    from pipeline.config import DEFAULT_BUILDS_DIR, BuildConfig, ConfigError
    from pipeline.stages import Backends
    from pipeline.stages.build import up_to_date

    try:
        parse_runner(runner)
        # fail fast with a clear message before Prefect starts
        build_config = BuildConfig.from_yaml(config) if config else BuildConfig.demo()
        backends = Backends.of(build_config)  # fingerprints and styles, no model loaded
    except (ConfigError, ValueError) as error:
        console.print(f"[red]error:[/red] {error}")
        raise typer.Exit(2) from None
    target = out or DEFAULT_BUILDS_DIR / build_config.name
    if not force and up_to_date(target, backends):
        console.print(f"[green]up to date[/green] {target}: nothing to do (--force re-checks)")
        _summarise(target / "manifest.parquet")
        return
    from flows.build import build_dataset  # imports Prefect: only when there is work to check

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, disable=not sys.stderr.isatty()) as bar:
        progress.set_reporter(_rich_reporter(bar))
        try:
            manifest = build_dataset(
                config=build_config, out=str(target) if out else None, runner=runner
            )
        finally:
            progress.set_reporter(None)
    _summarise(Path(manifest))


@app.command()
def textures(
    preview: Annotated[
        Path | None,
        typer.Option("--preview", help="Write a contact sheet PNG of every texture here."),
    ] = None,
) -> None:
    """List the texture library: style images, sources and licenses."""
    from rich.table import Table

    from pipeline.stylize.library import load_texture_library

    library = load_texture_library()
    if preview is not None:
        from pipeline.store.atomic import atomic_write_bytes
        from pipeline.stylize.preview import contact_sheet

        atomic_write_bytes(preview, contact_sheet(library))
        console.print(f"[green]wrote[/green] {preview}")
    table = Table("texture", "style images", "license")
    table.add_column("source", max_width=60, no_wrap=True, overflow="ellipsis")
    for name in library.names():
        texture = library.texture(name)
        styles = library.styles([name])
        table.add_row(name, ", ".join(s.style_id for s in styles), texture.license, texture.source)
    Console().print(table)


@app.command()
def audit(
    build_dir: Annotated[Path, typer.Option("--build", "-b", help="A build directory.")],
    model: Annotated[
        list[str] | None,
        typer.Option("--model", "-m", help="Classifier, e.g. timm:tf_efficientnet_lite2; repeat."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the control masks.")] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
) -> None:
    """Counterfactual sensitivity report of one or more classifiers (BUILD/report/index.html)."""
    from flows.audit import audit_model

    if not (build_dir / "manifest.parquet").is_file():
        console.print(f"[red]error:[/red] {build_dir} has no manifest.parquet; build it first")
        raise typer.Exit(2)
    report = audit_model(str(build_dir), model or None, seed=seed, device=device)
    console.print(f"[green]report[/green] {report}")
    typer.echo(report)


@app.command()
def edit(
    build_dir: Annotated[Path, typer.Option("--build", "-b", help="A build with edit cases.")],
    model: Annotated[
        str, typer.Option("--model", "-m", help="Classifier to edit.")
    ] = "timm:tf_efficientnet_lite0",
    layer: Annotated[
        str | None,
        typer.Option(help="Module name of the layer (default: a late dense layer of the model)."),
    ] = None,
    method: Annotated[
        list[str] | None,
        typer.Option(
            "--method",
            help="rewrite, rewrite-closed, rewrite-multikey, finetune-local or "
            "finetune-global; repeat (default: all but rewrite-multikey).",
        ),
    ] = None,
    case: Annotated[
        list[str] | None, typer.Option("--case", help="Only these case ids; repeat.")
    ] = None,
    budget_pp: Annotated[
        float, typer.Option(help="Clean-accuracy drop allowed when choosing hyper-parameters (pp).")
    ] = 1.0,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
) -> None:
    """Edit a classifier with each method on the build's cases; compare (BUILD/edits)."""
    from flows.edit import run_edits
    from pipeline.store.edits_layout import COMPARISON_MD, edits_dir

    if not (build_dir / "manifest.parquet").is_file():
        console.print(f"[red]error:[/red] {build_dir} has no manifest.parquet; build it first")
        raise typer.Exit(2)
    folder = run_edits(
        str(build_dir), model, layer, method, budget_pp=budget_pp, device=device, cases=case
    )
    table = edits_dir(build_dir) / COMPARISON_MD
    if table.is_file():
        Console().print(table.read_text(encoding="utf-8"), markup=False, highlight=False)
    console.print(f"[green]edits[/green] {folder}")
    typer.echo(str(folder))


@app.command()
def publish(
    build_dir: Annotated[Path, typer.Argument(help="A build directory.")],
    repo_id: Annotated[str, typer.Option("--repo-id", help="Dataset repo, ORG/NAME.")],
    private: Annotated[bool, typer.Option(help="Create the repo as private.")] = False,
    dry_run: Annotated[
        bool, typer.Option(help="Only write the folder that would be uploaded.")
    ] = False,
    allow_unknown_license: Annotated[
        bool,
        typer.Option(help="Publish even when some source images carry no license."),
    ] = False,
) -> None:
    """Publish a build to the Hugging Face Hub (token: HF_TOKEN or `hf auth login`)."""
    from pipeline.publish import PublishError, UnknownLicenseError
    from pipeline.publish import publish as publish_build

    if not (build_dir / "manifest.parquet").is_file():
        console.print(f"[red]error:[/red] {build_dir} has no manifest.parquet; build it first")
        raise typer.Exit(2)
    try:
        result = publish_build(
            build_dir,
            repo_id,
            private=private,
            dry_run=dry_run,
            allow_unknown_license=allow_unknown_license,
        )
    except (UnknownLicenseError, PublishError, ValueError) as error:
        console.print(f"[red]error:[/red] {error}")
        raise typer.Exit(2) from None
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


@app.command()
def concepts(
    build_dir: Annotated[Path, typer.Argument(help="A build directory.")],
) -> None:
    """Per-concept statistics of a build: images, kept and rejected masks, areas, scores."""
    from pipeline.report.build_overview import build_concept_stats
    from pipeline.segment.stats import format_concept_stats

    try:
        rows = build_concept_stats(build_dir)
    except FileNotFoundError as error:
        console.print(f"[red]error:[/red] {error}")
        raise typer.Exit(2) from None
    Console().print(format_concept_stats(rows, title=str(build_dir)))


@app.command()
def doctor() -> None:
    """What is installed, which weights are present, and what each backend is missing."""
    from rich.table import Table

    from flows.doctor import run_checks

    table = Table("area", "name", "ok", "detail")
    for check in run_checks():
        mark = "[green]yes[/green]" if check.ok else "[yellow]no[/yellow]"
        table.add_row(check.area, check.name, mark, check.detail)
    Console().print(table)


@app.command()
def samples() -> None:
    """List the built-in sample photos and their labels."""
    from rich.table import Table

    from pipeline.sources.samples import SAMPLES

    table = Table("name", "ImageNet label", "license", "note")
    for sample in SAMPLES.values():
        table.add_row(sample.name, sample.label or "(unlabelled)", sample.license, sample.note)
    Console().print(table)


def _summarise(manifest: Path) -> None:
    from pipeline.store import BuildStore

    store = BuildStore(manifest.parent)
    kept = store.table("counterfactuals", ["kept"]).column("kept").to_pylist()
    console.print(
        f"[green]built[/green] {store.root}: {len(kept)} counterfactuals "
        f"({sum(kept)} kept), {len(store.quarantined())} quarantined inputs"
    )
    typer.echo(str(manifest))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
