"""Where to edit (Yang et al. 2024): a meta-trained locator picks the parameter groups a case's
edit may change; only those are fine-tuned.

- :mod:`~pipeline.editing.locate.groups`: the groups per architecture (1x1-conv output channels
  of the last blocks, ViT FFN ``fc1`` rows / ``fc2`` columns) and the flat mask layout;
- :mod:`~pipeline.editing.locate.masks`: top-k masks at a sparsity, random controls, mask IoU
  and specificity;
- :mod:`~pipeline.editing.locate.locator`: the hypernetwork and its inputs;
- :mod:`~pipeline.editing.locate.inner`: the (differentiable) masked SGD steps;
- :mod:`~pipeline.editing.locate.edit`: one edit, locate then fine-tune;
- :mod:`~pipeline.editing.locate.artifact`: the trained locator on disk, with provenance;
- :mod:`~pipeline.editing.locate.episodes` and :mod:`~pipeline.editing.locate.train`:
  meta-training on counterfactual episodes (``train_locator(config)``);
- :mod:`~pipeline.editing.locate.specificity`: a trained locator's masks on held-out exemplar
  sets, within against across (concept, texture) pairs.

The method is registered as ``where-to-edit`` in :mod:`pipeline.editing.methods`, its control
masks as ``where-to-edit-random`` and ``where-to-edit-gradient``.
"""

from pipeline.editing.locate.artifact import LocatorArtifact, load_locator, save_locator
from pipeline.editing.locate.edit import LocatedEdit, choose_mask, exemplar_inputs, locate_and_edit
from pipeline.editing.locate.groups import (
    ARCHITECTURES,
    Architecture,
    GroupLayout,
    GroupSet,
    parameter_groups,
    register_architecture,
)
from pipeline.editing.locate.locator import Locator, LocatorInputs
from pipeline.editing.locate.masks import (
    Specificity,
    active_count,
    mask_iou,
    mask_specificity,
    random_mask,
    top_mask,
)

__all__ = [
    "ARCHITECTURES",
    "Architecture",
    "GroupLayout",
    "GroupSet",
    "LocatedEdit",
    "Locator",
    "LocatorArtifact",
    "LocatorInputs",
    "Specificity",
    "active_count",
    "choose_mask",
    "exemplar_inputs",
    "load_locator",
    "locate_and_edit",
    "mask_iou",
    "mask_specificity",
    "parameter_groups",
    "random_mask",
    "register_architecture",
    "save_locator",
    "top_mask",
]
