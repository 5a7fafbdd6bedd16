"""Concept discovery (NMF, Sobol importance), location metrics, agreement and consistency."""

from __future__ import annotations

import numpy as np
import pandas as pd
from concept_fixtures import TinyClassifier, make_build

from pipeline.concepts import (
    DiscoverySettings,
    adjust,
    agreement,
    cross_layer_consistency,
    discover_concepts,
    discovery_table,
    export_masks,
    factorize,
    iou,
    location_scores,
    pointing_game,
    sobol_total_indices,
)
from pipeline.concepts.discovery import sobol_designs


def test_nmf_recovers_planted_factors():
    # given activations made of 3 planted non-negative parts with sparse coefficients
    rng = np.random.default_rng(0)
    bank = np.zeros((3, 12))
    bank[0, :4], bank[1, 4:8], bank[2, 8:] = 1.0, 1.0, 1.0
    bank += 0.05 * rng.random(bank.shape)
    coefficients = rng.random((200, 3)) * (rng.random((200, 3)) < 0.5)
    activations = coefficients @ bank
    # when they are factorised into 3 concepts
    _, found, _ = factorize(activations, 3, seed=0)
    # then every planted part is one discovered concept (cosine >= 0.99, one to one)
    unit = lambda m: m / np.linalg.norm(m, axis=1, keepdims=True)  # noqa: E731
    cosine = unit(bank) @ unit(found).T
    assert cosine.max(1).min() >= 0.99
    assert sorted(cosine.argmax(1)) == [0, 1, 2]


def test_sobol_total_index_ranks_the_concept_the_output_depends_on():
    # given an output that depends strongly on concept 0, weakly on 1, not at all on 2
    masks = sobol_designs(3, 64, seed=0)
    outputs = 5.0 * masks[:, 0] + 1.0 * masks[:, 1]
    # when Jansen's total indices are estimated
    totals = sobol_total_indices(outputs, 3, 64)
    # then they rank 0 > 1 > 2 and the third is zero (the analytic values: 25/26, 1/26, 0)
    assert totals[0] > 0.85 and 0.01 < totals[1] < 0.1 and totals[2] == 0.0


def test_location_on_hand_made_maps():
    # given a 20 x 20 mask of the top-left quarter of a 40 x 40 image
    truth = np.zeros((40, 40), bool)
    truth[:20, :20] = True
    on_target = np.zeros((40, 40))
    on_target[:20, :20] = 1.0
    half_on = np.zeros((40, 40))
    half_on[:20, :40] = 1.0
    # then a map on the mask scores IoU 1, half on it 0.5, and the pointing game follows argmax
    assert location_scores(on_target, truth)["iou"] == 1.0
    assert location_scores(half_on, truth)["iou"] == 0.5
    assert pointing_game(on_target, truth) == 1.0 and pointing_game(-on_target, truth) == 0.0
    # and the trivial maps: the whole image has IoU = the mask's area share (0.25); the
    # centred ellipse covers half the image and the centre pixel is outside the mask
    scores = location_scores(on_target, truth)
    assert scores["iou_whole"] == 0.25 and scores["pointing_centre"] == 0.0
    assert 0.05 < scores["iou_ellipse"] < 0.25
    assert iou(np.zeros((4, 4)), np.zeros((4, 4))) != iou(np.zeros((4, 4)), np.zeros((4, 4)))


def test_holm_and_bonferroni_corrections():
    p = [0.01, 0.04, 0.03, np.nan]
    assert np.allclose(adjust(p, "bonferroni")[:3], [0.03, 0.12, 0.09])
    assert np.allclose(adjust(p, "holm")[:3], [0.03, 0.06, 0.06])
    assert np.isnan(adjust(p, "holm")[3])


def test_agreement_and_cross_layer_consistency():
    # given scores on two layers that rank 6 pairs alike, and effects that rank them alike
    pairs = [(c, k) for c in (1, 2, 3) for k in ("road", "sky")]
    values = np.arange(6) / 6
    scores = pd.DataFrame(
        [
            {"class_index": c, "concept": k, "layer": layer, "score": v}
            for layer in ("a", "b")
            for (c, k), v in zip(pairs, values, strict=True)
        ]
    )
    effects = pd.DataFrame(
        [
            {"class": c, "concept": k, "sens_texture_flip": 2 * v}
            for (c, k), v in zip(pairs, values, strict=True)
        ]
    )
    effects.loc[0, "sens_texture_flip"] = 5.0  # one pair disagrees: lowest score, top effect
    # when their agreement is measured
    found = agreement(scores, effects, layer="b", n_boot=200)
    consistency = cross_layer_consistency(scores)
    # then rho is positive, with an interval, and the planted disagreement is listed first
    assert found["n_pairs"] == 6 and 0 < found["rho"] < 1 and found["low"] <= found["rho"]
    first = found["disagreements"].iloc[0]
    assert (first["class_index"], first["concept"]) == (1, "road")
    assert consistency.iloc[0]["rho"] == 1.0 and consistency.iloc[0]["n_pairs"] == 6


def test_discovered_concepts_export_as_a_mask_folder(tmp_path):
    # given a tiny build and classifier, discovering at a post-ReLU layer
    build = make_build(tmp_path / "build")
    settings = DiscoverySettings(n_concepts=2, max_images=6, n_designs=8, top_patches=3)
    found = discover_concepts(build, TinyClassifier(), "1", classes=[0], settings=settings)
    # then each class has k concepts with an importance and top patches
    table = discovery_table(found)
    assert len(table) == 2 and table["importance"].notna().all()
    assert all(len(p) == 3 for p in table["top_patches"])
    # and exporting writes <image stem>/<concept>.png masks at the original image size
    out = export_masks(found, build, tmp_path / "masks")
    written = sorted(out.glob("*/*.png"))
    assert written and all(p.name.startswith("discovered-0-") for p in written)
    from pipeline.imageio import load_png

    assert load_png(written[0], mask=True).shape == (48, 64)
