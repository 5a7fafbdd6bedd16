"""Concept scores beside the counterfactual sensitivity: TCAV on a build's own masks (captum),
CRAFT-style concept discovery, and the metrics that say whether to trust a score.

```python
from pipeline.classify import create_classifier
from pipeline.concepts import TcavSettings, concept_scores, cross_layer_consistency, agreement

classifier = create_classifier("timm:tf_efficientnet_lite0", engine="eager")
scores = concept_scores("data/builds/camvid", classifier, ["blocks.4", "blocks.5"], classes=10)
```

See docs/results/concepts.md for the definitions and measured figures.
"""

from pipeline.concepts.discovery import (
    Discovery,
    discover_concepts,
    discovery_table,
    export_masks,
    factorize,
    sobol_total_indices,
)
from pipeline.concepts.location import iou, location_scores, pointing_game
from pipeline.concepts.records import ConceptScore
from pipeline.concepts.scores import (
    SCORES_FILE,
    concept_scores,
    concepts_dir,
    load_concept_scores,
)
from pipeline.concepts.settings import DiscoverySettings, TcavSettings
from pipeline.concepts.stats import adjust, agreement, cross_layer_consistency, significance
from pipeline.concepts.tcav import TcavData, TcavResult, run_tcav, summarize_runs

__all__ = [
    "SCORES_FILE",
    "ConceptScore",
    "Discovery",
    "DiscoverySettings",
    "TcavData",
    "TcavResult",
    "TcavSettings",
    "adjust",
    "agreement",
    "concept_scores",
    "concepts_dir",
    "cross_layer_consistency",
    "discover_concepts",
    "discovery_table",
    "export_masks",
    "factorize",
    "iou",
    "load_concept_scores",
    "location_scores",
    "pointing_game",
    "run_tcav",
    "significance",
    "sobol_total_indices",
    "summarize_runs",
]
