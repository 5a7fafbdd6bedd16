"""`concept_scores` on a tiny build: the declared record, and a cached second run."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest
from concept_fixtures import TinyClassifier, make_build

from pipeline.concepts import (
    ConceptScore,
    TcavSettings,
    concept_scores,
    concepts_dir,
    load_concept_scores,
)

SETTINGS = TcavSettings(n_random=4, n_examples=6, random_pool=24, max_inputs=6, min_inputs=2)


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    return make_build(tmp_path_factory.mktemp("build"))


def _count_forwards(model) -> list[int]:
    calls = [0]
    model.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


def test_scores_are_stored_as_the_declared_record(build):
    # given a build with two concepts and a classifier
    classifier = TinyClassifier()
    # when its concepts are scored at two layers
    table = concept_scores(build, classifier, ["0", "2"], settings=SETTINGS)
    # then every (class, concept, layer) has a row with the record's columns and types
    stored = pq.read_table(concepts_dir(build, classifier.id) / "concept_scores.parquet")
    assert stored.schema.remove_metadata() == ConceptScore.arrow_schema()
    assert list(table.columns) == [c.name for c in ConceptScore.columns()]
    assert set(table["concept"]) == {"blue", "red"} and set(table["layer"]) == {"0", "2"}
    assert table["score"].between(0, 1).all() and table["p_adjusted"].between(0, 1).all()
    assert (table["n_random"] == 4).all() and table["n_located"].gt(0).all()
    # and the location baselines are there beside the CAV map's IoU
    assert table[["iou", "iou_whole", "iou_ellipse"]].notna().all().all()
    assert load_concept_scores(build, classifier.id).equals(table)


def test_a_cached_second_run_recomputes_nothing(build):
    # given a first run's table and CAVs on disk
    classifier = TinyClassifier()
    first = concept_scores(build, classifier, ["0", "2"], settings=SETTINGS)
    forwards = _count_forwards(classifier.model)
    # when the same run is asked for again
    again = concept_scores(build, classifier, ["0", "2"], settings=SETTINGS)
    # then the model is not called once: not for crops, CAVs, gradients nor the unlabelled
    # images' reference classes (kept from the first run)
    assert again.attrs["computed"] == {"activations": 0, "cavs": 0, "cached": True}
    assert again.equals(first)
    assert forwards[0] == 0


def test_cavs_are_reused_when_the_table_must_be_rebuilt(build):
    # given the CAV store of an earlier run, and the table removed
    classifier = TinyClassifier()
    concept_scores(build, classifier, ["0", "2"], settings=SETTINGS)
    (concepts_dir(build, classifier.id) / "concept_scores.parquet").unlink()
    # when the scores are computed again, with one layer fewer
    table = concept_scores(build, classifier, ["2"], settings=SETTINGS)
    # then no crop activation is computed and no CAV is trained: only the class gradients
    assert table.attrs["computed"] == {"activations": 0, "cavs": 0, "cached": False}
    assert set(table["layer"]) == {"2"}


def test_a_concept_with_one_mask_is_skipped_unless_named(tmp_path):
    from pipeline.records import ConceptMask
    from pipeline.store import BuildStore
    from pipeline.store.manifest import records_to_table, write_table

    # given a build whose third concept ("green") has a single mask
    root = make_build(tmp_path / "build")
    store = BuildStore(root)
    masks = store.read("masks")
    first = masks[0]
    rare = ConceptMask("ab" * 32, first.image_id, "green", 1.0, first.area_frac, "gt", first.path)
    write_table(store.manifest_path("masks"), records_to_table("masks", [*masks, rare]))
    classifier = TinyClassifier()
    # when every concept of the build is scored, the rare one is left out
    table = concept_scores(root, classifier, ["2"], settings=SETTINGS)
    assert set(table["concept"]) == {"blue", "red"}
    # and naming it is an error that names it
    with pytest.raises(ValueError, match="fewer than 2 usable masks of \\['green'\\]"):
        concept_scores(root, classifier, ["2"], concepts=["green", "red"], settings=SETTINGS)
