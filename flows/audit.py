"""`audit_model`: the counterfactual sensitivity report of one or more classifiers on a build,
optionally with each classifier's concept scores (TCAV) beside its counterfactual effects."""

from __future__ import annotations

from collections.abc import Sequence

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

import flows  # noqa: F401  (Prefect defaults)
from pipeline.classify import create_classifier
from pipeline.concepts import TcavSettings, concept_scores
from pipeline.report import audit_predictions, run_audit, summary_markdown

DEFAULT_CONCEPT_LAYERS = ("blocks.4", "blocks.5")  # timm EfficientNets: 14x14 and 7x7 maps
DEFAULT_CONCEPT_CLASSES = 10
DEFAULT_CONCEPT_MIN_IMAGES = TcavSettings().min_inputs
BATCH_SIZE = 32  # the audit's: the concept task then shares its loaded torch model


@task(name="audit-predictions", cache_policy=NO_CACHE)
def predictions_task(build: str, models: list[str], seed: int, device: str) -> int:
    # cached per (build, classifier id) by the library: the report task reads them back
    predictions = audit_predictions(build, models, seed=seed, batch_size=BATCH_SIZE, device=device)
    return sum(len(p) for p in predictions)


@task(name="concept-scores", cache_policy=NO_CACHE)
def concept_scores_task(
    build: str, model: str, layers: list[str], classes: int, min_images: int, device: str
) -> int:
    # gradients need the torch model: the eager engine; cached under BUILD/concepts/<slug>/
    classifier = create_classifier(model, engine="eager", device=device, batch_size=BATCH_SIZE)
    settings = TcavSettings(min_inputs=min_images)
    return len(concept_scores(build, classifier, layers, classes=classes, settings=settings))


@task(name="audit", cache_policy=NO_CACHE)
def audit_task(
    build: str, models: list[str], seed: int, device: str, concept_layer: str | None = None
) -> str:
    # predictions are cached per (build, classifier id) by the library: a re-audit is instant
    report = run_audit(
        build,
        models,
        seed=seed,
        batch_size=BATCH_SIZE,
        device=device,
        concepts=concept_layer is not None,
        concept_layer=concept_layer,
    )
    return str(report)


@flow(name="audit_model")
def audit_model(
    build: str,
    models: list[str] | None = None,
    seed: int = 0,
    device: str = "auto",
    concept_layers: Sequence[str] | None = None,
    concept_classes: int = DEFAULT_CONCEPT_CLASSES,
    concept_min_images: int = DEFAULT_CONCEPT_MIN_IMAGES,
) -> str:
    """Audit classifiers on a build's counterfactuals; returns the HTML report's path.

    With `concept_layers`, each model's TCAV concept scores at those layers (of its torch
    model, e.g. `blocks.4`, `blocks.5`) for its `concept_classes` most frequent reference
    classes (those with at least `concept_min_images` images) are computed once its predictions
    exist, and the report shows them beside the counterfactual effects, compared at the last
    layer.
    """
    chosen = models or ["timm:tf_efficientnet_lite0"]
    layers = list(concept_layers or ())
    if layers:
        predictions_task(build, chosen, seed, device)
        for model in dict.fromkeys(chosen):
            rows = concept_scores_task(
                build, model, layers, concept_classes, concept_min_images, device
            )
            get_run_logger().info("concept scores of %s: %d rows", model, rows)
    report = audit_task(build, chosen, seed, device, layers[-1] if layers else None)
    get_run_logger().info("report: %s", report)
    create_markdown_artifact(
        markdown=summary_markdown(build), key="sensitivity-summary", description=report
    )
    return report
