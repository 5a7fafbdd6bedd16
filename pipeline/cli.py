"""The `conceptswap` command line.

`conceptswap build` with no arguments builds the offline demo dataset from the built-in sample
photos into `data/builds/demo/`.
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
) -> None:
    """Build a counterfactual dataset (no arguments: the offline demo)."""
    from flows.build import build_dataset
    from pipeline.config import BuildConfig, ConfigError

    try:
        if config is not None:
            BuildConfig.from_yaml(config)  # fail fast with a clear message before Prefect starts
    except ConfigError as error:
        console.print(f"[red]error:[/red] {error}")
        raise typer.Exit(2) from None
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
                config_path=str(config) if config else None, out=str(out) if out else None
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
        from pipeline.stylize.preview import contact_sheet

        contact_sheet(library, preview)
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
def concepts(
    build_dir: Annotated[Path, typer.Argument(help="A build directory.")],
) -> None:
    """Per-concept statistics of a build: images, kept and rejected masks, areas, scores."""
    from pipeline.segment.stats import concept_stats, format_concept_stats

    try:
        rows = concept_stats(build_dir)
    except FileNotFoundError as error:
        console.print(f"[red]error:[/red] {error}")
        raise typer.Exit(2) from None
    Console().print(format_concept_stats(rows, title=str(build_dir)))


@app.command()
def doctor() -> None:
    """What is installed, which weights are present, and what each backend is missing."""
    from rich.table import Table

    from pipeline.doctor import run_checks

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
    import pyarrow.parquet as pq

    from pipeline.store import BuildStore

    table = pq.read_table(manifest, columns=["kept"]).to_pylist() if manifest.is_file() else []
    store = BuildStore(manifest.parent)
    console.print(
        f"[green]built[/green] {store.root}: {len(table)} counterfactuals "
        f"({sum(r['kept'] for r in table)} kept), {len(store.quarantined())} quarantined inputs"
    )
    typer.echo(str(manifest))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
