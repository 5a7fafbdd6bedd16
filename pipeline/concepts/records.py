"""`concept_scores.parquet`: one declared row per (classifier, class, concept, layer)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from pipeline.records import Record


@dataclass(frozen=True)
class ConceptScore(Record):
    """A TCAV score with what says whether to trust it (docs/results/concepts.md).

    `score` is the share of the class's images whose class logit rises along the concept's
    CAV, averaged over random runs and seeds; `random_score` the same for random concepts (the
    null); `p_adjusted` the two-sided t-test of the two, corrected over every row of the run;
    `score_std_seeds` the stability, `cav_accuracy` the learnability (held-out accuracy of the
    CAVs), `iou` / `pointing` the location of the CAV's map on the concept's masks in the
    class's images, beside the trivial maps (`iou_whole`, `iou_ellipse`, `pointing_centre`).
    """

    kind: ClassVar[str] = "concept_scores"

    classifier_id: str
    class_index: int
    class_name: str
    concept: str
    layer: str
    cav_method: str
    score: float
    score_std_runs: float
    score_std_seeds: float | None
    random_score: float
    random_score_std: float
    magnitude: float
    p_value: float
    p_adjusted: float
    significant: bool
    cav_accuracy: float
    cav_accuracy_std: float
    n_random: int
    n_seeds: int
    n_inputs: int
    n_examples: int
    n_located: int
    iou: float | None
    pointing: float | None
    iou_whole: float | None
    iou_ellipse: float | None
    pointing_centre: float | None
