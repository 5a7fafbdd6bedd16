"""The `conceptswap` command line: the application layer on top of the flows.

It parses and checks the config once and hands the parsed objects down (`build_dataset`
receives a `BuildConfig`, never a path to parse again). `conceptswap build` with no arguments
builds the offline demo dataset from the built-in sample photos into `data/builds/demo/`.

Every command checks all its inputs before Prefect starts or a file is written: numeric options
by their declared range (`min=`/`max=`, and `finite` for floats), names and folders with
`pipeline.validate`, and the build it reads (`check_build_dir`: the folder, and each manifest
readable and of its declared schema). Every command takes the build as its first argument.
"""

from __future__ import annotations

import _thread
import os
import signal
import threading
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from flows.cli_data import register as register_data_commands
from flows.cli_support import (
    OneLineErrors,
    Options,
    build_argument,
    console,
    expected_errors,
    fail,
    finite,
    progress_bars,
    quiet_flow_logs,
    table,
)

app = typer.Typer(
    cls=OneLineErrors,
    add_completion=False,
    no_args_is_help=True,
    help="Synthetic counterfactual image datasets for auditing and editing image classifiers.",
)
# after Ctrl-C / SIGTERM: Prefect gets this long to record the run as crashed, then the process
# stops the temporary server and exits (a build stops within 10 s, whatever Prefect is doing)
STOP_GRACE_S = 4.0
register_data_commands(app)  # export and publish (flows/cli_data.py)


@app.callback()
def _global_options(
    debug: Annotated[bool, typer.Option("--debug", help="Show the traceback of an error.")] = False,
) -> None:
    Options.debug = debug


def _interrupt(signum: int, frame: object) -> None:
    """First Ctrl-C / SIGTERM: a watchdog that stops the process after STOP_GRACE_S, then a
    KeyboardInterrupt so that Prefect ends the run (and the shard loop stops submitting).

    Why the watchdog: a terminal's Ctrl-C reaches the whole process group, so Prefect's
    temporary server (a child process) stops at once, and Prefect's engine then retries
    reporting the crashed state to it for minutes; the shard in flight runs in a thread that
    the interpreter would wait for at exit. A second signal exits at once."""
    if getattr(_interrupt, "armed", False):
        _stop_now(130)
    _interrupt.armed = True  # type: ignore[attr-defined]
    watchdog = threading.Timer(STOP_GRACE_S, _stop_now, args=(130,))
    watchdog.daemon = True
    watchdog.start()
    raise KeyboardInterrupt(signal.Signals(signum).name)


def _watch_sigterm() -> None:
    """SIGTERM as Ctrl-C. Prefect replaces the SIGTERM handler while a flow runs and then
    spends minutes reporting the crash, so SIGTERM is taken out of signal handlers: blocked in
    every thread (and in the processes started from here) and received by a watcher thread,
    which interrupts the main thread as Ctrl-C does and arms the same watchdog."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})

    def watch() -> None:
        signal.sigwait({signal.SIGTERM})
        watchdog = threading.Timer(STOP_GRACE_S, _stop_now, args=(130,))
        watchdog.daemon = True
        watchdog.start()
        _thread.interrupt_main()
        signal.sigwait({signal.SIGTERM})  # a second one: at once
        _stop_now(130)

    threading.Thread(target=watch, name="sigterm-watch", daemon=True).start()


def _stop_now(code: int = 130) -> None:
    """Exit at once, abandoning the shard in flight: its writes are atomic, so it leaves at most
    `.tmp-*` files (swept by the next build), and the next build resumes at that shard. Threads
    running a shard cannot be stopped, and the interpreter would wait for them at exit."""
    from prefect.server.api.server import SubprocessASGIServer

    console.print("[yellow]interrupted[/yellow]: run the same command again to resume")
    try:
        for server in list(SubprocessASGIServer._instances.values()):
            process = getattr(server, "server_process", None)
            if process is not None:
                process.kill()  # it may have SIGTERM blocked (see _watch_sigterm)
            server.stop()
    finally:
        os._exit(code)


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
    from pipeline.config import DEFAULT_BUILDS_DIR, BuildConfig
    from pipeline.stages.build import up_to_date
    from pipeline.validate import Problem, check_build, load_build_config

    # everything is checked before Prefect starts or a file is written
    try:
        parse_runner(runner)
    except ValueError as error:
        fail([Problem("--runner", str(error))])
    if config is None:
        build_config = BuildConfig.demo()
    else:
        parsed, problems = load_build_config(config)
        fail(problems)
        assert parsed is not None
        build_config = parsed
    fail(check_build(build_config, out))
    target = out or DEFAULT_BUILDS_DIR / build_config.name
    with expected_errors():
        from pipeline.stages import Backends

        backends = Backends.of(build_config)  # fingerprints and styles, no model loaded
        if not force and up_to_date(target, backends):
            console.print(f"[green]up to date[/green] {target}: nothing to do (--force re-checks)")
            _summarise(target / "manifest.parquet")
            return
        from flows.build import build_dataset  # imports Prefect: only when there is work

        signal.signal(signal.SIGINT, _interrupt)  # SIGTERM: `_watch_sigterm`, from `main`
        try:
            with quiet_flow_logs(), progress_bars():
                manifest = build_dataset(
                    config=build_config, out=str(target) if out else None, runner=runner
                )
        except KeyboardInterrupt:
            _stop_now(130)
    _summarise(Path(manifest))


@app.command()
def textures(
    preview: Annotated[
        Path | None,
        typer.Option("--preview", help="Write a contact sheet PNG of every texture here."),
    ] = None,
) -> None:
    """List the texture library: style images, sources and licenses."""
    from pipeline.stylize.library import load_texture_library

    library = load_texture_library()
    if preview is not None:
        from pipeline.store.atomic import atomic_write_bytes
        from pipeline.stylize.preview import contact_sheet

        atomic_write_bytes(preview, contact_sheet(library))
        console.print(f"[green]wrote[/green] {preview}")
    listing = table("texture", "style images", "license", "source")
    for name in library.names():
        texture = library.texture(name)
        styles = library.styles([name])
        listing.add_row(
            name, ", ".join(s.style_id for s in styles), texture.license, texture.source
        )
    Console().print(listing)


# the build directory: the first argument of every command that reads a build; `--build/-b`,
# the old way of audit and edit, is still read (hidden, with a note)
BuildArgument = Annotated[
    Path | None,
    typer.Argument(metavar="BUILD", help="A build directory.", show_default=False),
]
OldBuildOption = Annotated[Path | None, typer.Option("--build", "-b", hidden=True)]


@app.command()
def audit(
    build_dir: BuildArgument = None,
    model: Annotated[
        list[str] | None,
        typer.Option("--model", "-m", help="Classifier, e.g. timm:tf_efficientnet_lite2; repeat."),
    ] = None,
    seed: Annotated[int, typer.Option(min=0, help="Seed of the control masks.")] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    concept_scores: Annotated[
        bool,
        typer.Option(
            "--concept-scores",
            help="Also score each model's concepts with TCAV and show them beside the "
            "counterfactual effects (docs/audit.md).",
        ),
    ] = False,
    concept_layers: Annotated[
        list[str] | None,
        typer.Option(
            "--concept-layers",
            help="Layer (module name) to score with --concept-scores; repeat; the last is "
            "compared with the counterfactuals (default: blocks.4, blocks.5: timm EfficientNets).",
        ),
    ] = None,
    concept_classes: Annotated[
        int | None,
        typer.Option(
            min=1, help="--concept-scores: the most frequent reference classes scored (default 10)."
        ),
    ] = None,
    concept_min_images: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="--concept-scores: a class with fewer images is not scored (default 3; the "
            "demo's photos are one per class: 1).",
        ),
    ] = None,
    build_option: OldBuildOption = None,
) -> None:
    """Counterfactual sensitivity report of one or more classifiers (BUILD/report/index.html)."""
    from pipeline.validate import Problem, check_build_dir, check_classifier_name, check_device

    build = build_argument(build_dir, build_option)
    problems = check_build_dir(build, "audit")
    problems += [p for name in model or () for p in check_classifier_name(name, "--model")]
    if not concept_scores:
        problems += [
            Problem(option, "needs --concept-scores")
            for option, value in (
                ("--concept-layers", concept_layers),
                ("--concept-classes", concept_classes),
                ("--concept-min-images", concept_min_images),
            )
            if value is not None
        ]
    fail(problems + check_device(device, "--device"))
    with expected_errors():
        # imports Prefect: only once the inputs are right
        from flows.audit import (
            DEFAULT_CONCEPT_CLASSES,
            DEFAULT_CONCEPT_LAYERS,
            DEFAULT_CONCEPT_MIN_IMAGES,
            audit_model,
        )

        layers = (concept_layers or list(DEFAULT_CONCEPT_LAYERS)) if concept_scores else None
        with quiet_flow_logs(), progress_bars():
            report = audit_model(
                str(build),
                model or None,
                seed=seed,
                device=device,
                concept_layers=layers,
                concept_classes=concept_classes or DEFAULT_CONCEPT_CLASSES,
                concept_min_images=concept_min_images or DEFAULT_CONCEPT_MIN_IMAGES,
            )
    console.print(f"[green]report[/green] {report}")
    typer.echo(report)


@app.command()
def edit(
    build_dir: BuildArgument = None,
    config_path: Annotated[
        Path | None,
        typer.Option(
            "--config", "-c", help="Edit config YAML (plan, methods, grids, budget, C, locality)."
        ),
    ] = None,
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="Classifier to edit (overrides the config).")
    ] = None,
    layer: Annotated[
        str | None,
        typer.Option(help="Module name of the layer (default: a late dense layer of the model)."),
    ] = None,
    method: Annotated[
        list[str] | None,
        typer.Option(
            "--method",
            help="rewrite, rewrite-closed, rewrite-multikey, finetune-local, finetune-global, "
            "where-to-edit (and its controls where-to-edit-random, where-to-edit-gradient); "
            "repeat (default: the config's, else the four rewrite and fine-tuning methods).",
        ),
    ] = None,
    case: Annotated[
        list[str] | None, typer.Option("--case", help="Only these case ids; repeat.")
    ] = None,
    budget_pp: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            callback=finite,
            help="Clean-accuracy drop allowed when choosing hyper-parameters (pp; default 1).",
        ),
    ] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu or cuda.")] = None,
    plan: Annotated[
        str | None,
        typer.Option("--plan", help="Case plan if BUILD/cases is empty: auto, classes or errors."),
    ] = None,
    covariance: Annotated[
        list[str] | None,
        typer.Option(
            "--covariance",
            help="Images for the key statistics C: a build, an image folder, or a Hugging Face "
            "dataset (hf:NAME_OR_PATH[@SPLIT][#COLUMN]); repeat to mix several with equal "
            "weights (default: the build's images no case uses).",
        ),
    ] = None,
    covariance_views: Annotated[
        str | None,
        typer.Option(
            help="center, or windows: also each non-square image's two end squares, in C."
        ),
    ] = None,
    curves: Annotated[
        bool | None,
        typer.Option(
            "--curves/--no-curves",
            help="Evaluate every grid candidate (each method's curve; the default) or only the "
            "selected one (faster).",
        ),
    ] = None,
    build_option: OldBuildOption = None,
) -> None:
    """Edit a classifier with each method on the build's cases; compare (BUILD/edits).

    The experiment is `--config` (configs/edit-*.yaml), or the defaults; options override it."""
    from pipeline.config import ConfigError
    from pipeline.editing.config import EditConfig
    from pipeline.store.edits_layout import COMPARISON_MD, edits_dir
    from pipeline.validate import (
        check_build_dir,
        check_classifier_name,
        check_covariance,
        check_device,
        check_layer,
        check_methods,
        check_plan,
        config_problems,
    )

    build = build_argument(build_dir, build_option)
    problems = check_build_dir(build, "edit") + check_methods(method)
    problems += check_plan(plan) if plan is not None else []
    fail(problems)
    try:
        config = EditConfig.from_yaml(config_path) if config_path else EditConfig()
        covariance_section = {
            "images": list(covariance) if covariance else config.covariance.images,
            "views": covariance_views or config.covariance.views,
        }
        config = config.overridden(
            model=model,
            layer=layer,
            methods=method,
            budget_pp=budget_pp,
            device=device,
            plan=plan,
            covariance=covariance_section,
            curves=curves,
        )
    except ConfigError as error:
        fail(config_problems(error, str(config_path or "the options")))
    key = "--model" if model else "model"
    problems = check_classifier_name(config.model, key) + check_device(config.device, "device")
    problems += check_covariance(config.covariance.images, config.covariance.views)
    fail(problems)
    with expected_errors():
        if config.layer is not None:
            from pipeline.classify import EAGER, create_classifier

            # the flow runs in this process: the model loaded here is the one it edits
            loaded = create_classifier(
                config.model, engine=EAGER, device=config.device, **config.model_options
            )
            fail(check_layer(loaded.model, config.layer, "--layer" if layer else "layer"))
        from flows.edit import run_edits  # imports Prefect: only once the inputs are right

        with quiet_flow_logs(), progress_bars():
            folder = run_edits(str(build), config, cases=case)
    table = edits_dir(build) / COMPARISON_MD
    if table.is_file():
        Console().print(table.read_text(encoding="utf-8"), markup=False, highlight=False)
    console.print(f"[green]edits[/green] {folder}")
    typer.echo(str(folder))


@app.command("train-locator")
def train_locator(
    config_path: Annotated[
        Path,
        typer.Option(
            "--config", "-c", help="Locator config YAML (builds, pairs, test pairs, loops, out)."
        ),
    ],
) -> None:
    """Meta-train a where-to-edit locator; prints its folder (methods: [{name: where-to-edit,
    settings: {locator: FOLDER}}] uses it)."""
    from pipeline.config import ConfigError
    from pipeline.editing.locate.config import LocatorConfig
    from pipeline.validate import Problem, check_device, config_problems

    try:
        config = LocatorConfig.from_yaml(config_path)
    except ConfigError as error:
        fail(config_problems(error, str(config_path)))
    problems = [
        Problem("builds", f"{build} is not a folder (in {config_path})")
        for build in config.builds
        if not Path(build).is_dir()
    ]
    fail(problems + check_device(config.device, "device"))
    with expected_errors():
        from flows.locator import train_locator as train_flow  # imports Prefect: inputs are right

        with quiet_flow_logs():
            folder = train_flow(config)
    console.print(f"[green]locator[/green] {folder}")
    typer.echo(str(folder))


@app.command()
def concepts(build_dir: BuildArgument = None) -> None:
    """Per-concept statistics of a build: images, kept and rejected masks, areas, scores."""
    from pipeline.validate import check_build_dir

    build = build_argument(build_dir, None)
    fail(check_build_dir(build, "concepts"))
    with expected_errors(usage=(FileNotFoundError,)):
        from pipeline.report.build_overview import build_concept_stats
        from pipeline.segment.stats import format_concept_stats

        rows = build_concept_stats(build)
    Console().print(format_concept_stats(rows, title=str(build)))


@app.command()
def doctor() -> None:
    """What is installed, which weights are present, and what each backend is missing."""
    from flows.doctor import run_checks

    checks = table("area", "name", "ok", "detail")
    for check in run_checks():
        mark = "[green]yes[/green]" if check.ok else "[yellow]no[/yellow]"
        checks.add_row(check.area, check.name, mark, check.detail)
    Console().print(checks)


@app.command()
def samples() -> None:
    """List the built-in sample photos and their labels."""
    from pipeline.sources.samples import SAMPLES

    listing = table("name", "ImageNet label", "license", "note")
    for sample in SAMPLES.values():
        listing.add_row(sample.name, sample.label or "(unlabelled)", sample.license, sample.note)
    Console().print(listing)


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
    _watch_sigterm()  # before anything starts a thread: each thread inherits the signal mask
    app()


if __name__ == "__main__":
    main()
