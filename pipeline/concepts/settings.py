"""Settings of the concept scores: one pydantic model per job (TCAV, discovery), YAML-ready.

Every field that changes a CAV is part of the CAV cache key (`pipeline.concepts.cache`), so a
changed setting recomputes what depends on it and nothing else.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

CavMethod = Literal["linear", "mean-difference"]
Negatives = Literal["random", "concepts"]
Correction = Literal["holm", "bonferroni", "fdr_bh"]


class TcavSettings(BaseModel):
    """How TCAV scores are computed and tested.

    `n_random` CAVs of the concept against random sets give the score's distribution; as many
    CAVs of a random "concept" against the same random sets give the null it is tested
    against (two-sided t-test, `correction` over every (class, concept, layer) tested).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    n_random: int = Field(10, ge=2, description="random runs (negative sets) per concept")
    seeds: tuple[int, ...] = Field((0,), min_length=1, description="repeat everything per seed")
    n_examples: int = Field(30, ge=4, description="crops per concept and per random set")
    random_pool: int = Field(120, ge=8, description="random crops the random sets draw from")
    negatives: Negatives = Field("random", description="random crops, or the other concepts")
    cav: CavMethod = Field("linear", description="linear classifier, or FastCAV mean difference")
    test_split: float = Field(0.33, gt=0.0, lt=1.0, description="held-out share of CAV data")
    max_inputs: int = Field(16, ge=1, description="images per class whose gradients are tested")
    min_inputs: int = Field(3, ge=1, description="a class with fewer images is not tested")
    min_area: float = Field(0.01, ge=0.0, lt=1.0, description="smallest mask used as example")
    crop_margin: float = Field(0.1, ge=0.0, description="context around a mask's box")
    alpha: float = Field(0.05, gt=0.0, lt=1.0)
    correction: Correction = "holm"
    map_threshold: float = Field(0.5, gt=0.0, lt=1.0, description="of the min-max map, for IoU")
    batch_size: int = Field(32, ge=1)


class DiscoverySettings(BaseModel):
    """CRAFT-style discovery: crops of a class's images, NMF of their pooled activations."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    n_concepts: int = Field(5, ge=1, description="k, the NMF rank per class")
    patch_frac: float = Field(0.4, gt=0.0, le=1.0, description="crop side / image side")
    stride_frac: float = Field(0.8, gt=0.0, le=1.0, description="crop stride / crop side")
    max_images: int = Field(16, ge=1, description="images per class")
    min_images: int = Field(2, ge=1)
    importance: Literal["sobol", "occlusion"] = "sobol"
    n_designs: int = Field(32, ge=4, description="Sobol designs per concept (CRAFT: 32)")
    top_patches: int = Field(6, ge=1)
    map_threshold: float = Field(0.5, gt=0.0, lt=1.0, description="of the max, for masks")
    seed: int = 0
    batch_size: int = Field(32, ge=1)
