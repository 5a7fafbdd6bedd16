"""A build killed with SIGKILL resumes to exactly the uninterrupted result.

`build_dataset` runs in a child process (`python -c`, its own PREFECT_HOME). The main test
arms one named failpoint per run (`CONCEPTSWAP_FAILPOINTS=NAME:kill`, see
`pipeline/failpoints.py`): the child kills itself with SIGKILL at exactly that point, so the
test is the same on any machine at any speed. The runs follow each other in one build
directory, each resuming what the last one left, through every point of the build: inside each
stage (its files written, its manifest part not), between shards, in the middle of an atomic
write, and before, between and after every consolidated manifest. After each kill nothing torn
is visible and the build is not stamped up to date; a last run completes it, and the result
must equal an uninterrupted build (run in the test's own process): same manifests
(`table_digest`), same files with the same bytes, unique ids, no `.tmp-*` files.

A second test kills from outside by polling the build directory, as a check that a real signal
at an arbitrary moment behaves like the failpoints; a point it cannot catch (the child
finished first) is accepted and reported.

The children talk to the session's Prefect test server (`PREFECT_API_URL`) instead of starting
a temporary server each: a child killed with SIGKILL cannot stop the temporary server it
started, which would outlive the test (and every run would pay the server's start-up).
Segmentation uses the `annotations` backend (mask PNGs) so that the runs spend their time in
the stages' I/O and the classifier rather than in CAM, and 6 images in shards of 2 keep each
run short.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import skimage.data
from PIL import Image

from pipeline.failpoints import ENV, MANIFEST_KINDS
from pipeline.store import BuildStore
from pipeline.store.atomic import TEMP_PREFIX, atomic_write_bytes
from pipeline.store.manifest import ID_COLUMNS, table_digest
from pipeline.store.stamp import stamp_path

REPO = Path(__file__).resolve().parents[1]
PHOTOS = ("coffee", "chelsea", "astronaut", "rocket", "immunohistochemistry", "colorwheel")
MAX_SIDE = 64
RUN_TIMEOUT_S = 150
CHILD = (
    "import json, sys, torch\n"
    "torch.set_num_threads(int(sys.argv[3]))  # as in the test process: the same last bits\n"
    "from flows.build import build_dataset\n"
    "build_dataset(config=json.loads(sys.argv[1]), out=sys.argv[2])\n"
)
# the failpoints armed one per run, in order; each run resumes what the last one left
BUILD_POINTS = (
    "ingest.before_part",  # shard 1: images written, no part
    "segment.before_part",
    "stylize.before_part",
    "counterfactual.before_part",
    "shard.after",  # shard 1 complete, shard 2 not started
    "atomic.before_rename@2",  # shard 2's second image: complete temp file, not renamed
    "consolidate.before",  # every shard done
    *(f"consolidate.after_{kind}" for kind in MANIFEST_KINDS),
    "consolidate.after_stats",
    "build.before_stamp",
)
# (what to watch from outside, how many new entries trigger the kill)
POLL_POINTS = (
    ("stylized", 1),  # inside a stylize stage
    ("manifests/parts/counterfactuals", 1),  # right after a shard finished: between shards
    ("manifests/images.parquet", 1),  # while the manifests are consolidated
)
FILE_KINDS = ("images", "masks", "stylized", "counterfactuals")


def make_inputs(root: Path) -> dict:
    """6 photos and, per photo, `sky` and `road` masks; returns the build config."""
    images, masks = root / "images", root / "masks"
    images.mkdir()
    for index, name in enumerate(PHOTOS):
        photo = Image.fromarray(getattr(skimage.data, name)()).convert("RGB")
        photo.resize((96, 72), Image.Resampling.LANCZOS).save(images / f"photo{index}.png")
        rows = np.arange(72)[:, None] * np.ones((1, 96))
        horizon = 24 + 4 * index
        (masks / f"photo{index}").mkdir(parents=True)
        for concept, mask in (("sky", rows < horizon), ("road", rows >= horizon + 8)):
            Image.fromarray(mask.astype(np.uint8) * 255).save(
                masks / f"photo{index}" / f"{concept}.png"
            )
    return {
        "name": "crash",
        "shard_size": 2,
        "source": {"kind": "folder", "path": str(images)},
        "image": {"max_side": MAX_SIDE},
        "segment": {
            "backend": "annotations",
            "concepts": ["road", "sky"],
            "options": {"mask_dir": str(masks), "image_root": str(images), "max_side": MAX_SIDE},
        },
        "stylize": {"textures": ["snow", "wood"], "styles_per_texture": 1},
        "filter": {"require_clean_correct": False},
    }


def count(root: Path, what: str) -> int:
    """Finished (non-temp) files under `root/what`, or 1/0 for a single file."""
    target = root / what
    if target.suffix == ".parquet":
        return int(target.is_file())
    if not target.is_dir():
        return 0
    return sum(1 for p in target.rglob("*") if p.is_file() and not p.name.startswith(TEMP_PREFIX))


def run_build(
    config: dict,
    out: Path,
    env: dict[str, str],
    log: Path,
    *,
    failpoint: str | None = None,
    poll_kill: tuple[str, int] | None = None,
) -> int:
    """Run a build in a child process group; returns its exit code (-9 when killed).

    `failpoint`: arm it (`NAME[@HIT]`, action kill) in the child. `poll_kill`: SIGKILL the
    child's group from here once `out/what` has `count` new entries."""
    import torch

    threads = torch.get_num_threads()
    base = count(out, poll_kill[0]) if poll_kill else 0
    if failpoint:
        name, _, hit = failpoint.partition("@")
        env = {**env, ENV: f"{name}:kill" + (f"@{hit}" if hit else "")}
    with log.open("ab") as sink:
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, json.dumps(config), str(out), str(threads)],
            cwd=REPO,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the kill reaches its children too
        )
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while child.poll() is None:
            if poll_kill and count(out, poll_kill[0]) >= base + poll_kill[1]:
                os.killpg(child.pid, signal.SIGKILL)
                return child.wait()
            if time.monotonic() > deadline:
                os.killpg(child.pid, signal.SIGKILL)
                child.wait()
                pytest.fail(f"build ran over {RUN_TIMEOUT_S} s; log:\n{log.read_text()[-3000:]}")
            time.sleep(0.02)
    if failpoint and child.returncode != -signal.SIGKILL:
        pytest.fail(
            f"failpoint {failpoint} was never reached (exit {child.returncode}); "
            f"log:\n{log.read_text()[-3000:]}"
        )
    if not failpoint and child.returncode not in (0, -signal.SIGKILL):
        pytest.fail(f"build failed ({child.returncode}); log:\n{log.read_text()[-3000:]}")
    return child.returncode


def last_failpoint(log: Path) -> str | None:
    """The failpoint named by the last `failpoint NAME: kill` line of the log."""
    lines = [
        ln for ln in log.read_text(errors="replace").splitlines() if ln.startswith("failpoint ")
    ]
    return lines[-1].split()[1].rstrip(":") if lines else None


def progress(root: Path) -> dict[str, int]:
    """Finished files per kind, shard parts per stage, and temp files (left by the kill)."""
    state = {kind: count(root, kind) for kind in FILE_KINDS}
    parts = root / "manifests" / "parts"
    state |= {f"parts/{kind}": count(parts, kind) for kind in FILE_KINDS}
    state["tmp"] = len(list(root.rglob(f"{TEMP_PREFIX}*")))
    return state


def assert_nothing_torn(root: Path) -> None:
    """Every visible (non-temp) PNG decodes in full, every Parquet file and JSON line reads."""
    for path in root.rglob("*"):
        if not path.is_file() or path.name.startswith(TEMP_PREFIX):
            continue
        if path.suffix == ".png":
            with Image.open(path) as image:
                image.load()
        elif path.suffix == ".parquet":
            pq.read_table(path)
        elif path.suffix == ".jsonl":
            [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def file_digests(root: Path) -> dict[str, str]:
    """sha256 of every file under the content-addressed folders and the manifest parts."""
    folders = [root / kind for kind in FILE_KINDS] + [root / "manifests" / "parts"]
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for folder in folders
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def manifest_digests(root: Path) -> dict[str, str]:
    paths = [root / "manifest.parquet", *sorted((root / "manifests").glob("*.parquet"))]
    return {p.name: table_digest(p) for p in paths}


def differing_columns(left: Path, right: Path) -> dict[str, list[str]]:
    """Per manifest whose digest differs: the columns whose values differ (for the message)."""
    out = {}
    for name, digest in manifest_digests(left).items():
        if digest == manifest_digests(right)[name]:
            continue
        path = "manifest.parquet" if name == "manifest.parquet" else f"manifests/{name}"
        a, b = (pq.read_table(root / path).to_pandas() for root in (left, right))
        if a.shape != b.shape or list(a.columns) != list(b.columns):
            out[name] = [f"shape {a.shape} != {b.shape}"]
            continue
        out[name] = [c for c in a.columns if not a[c].astype(str).equals(b[c].astype(str))]
    return out


def all_files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


@pytest.fixture
def child_env(tmp_path: Path, prefect_harness: None) -> dict[str, str]:
    from prefect.settings import PREFECT_API_URL

    home = tmp_path / "prefect-home"
    home.mkdir()
    return {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_API_URL": str(PREFECT_API_URL.value()),
        "PREFECT_LOGGING_LEVEL": "WARNING",
        "PYTHONPATH": str(REPO),
    }


def assert_resumes_to(reference: Path, crashed: Path) -> None:
    """`crashed`, completed by resumed runs, equals the uninterrupted `reference`."""
    assert not [p for p in crashed.rglob(f"{TEMP_PREFIX}*")], "temp files left behind"
    assert_nothing_torn(crashed)
    assert manifest_digests(crashed) == manifest_digests(reference), differing_columns(
        crashed, reference
    )
    assert file_digests(crashed) == file_digests(reference)
    assert all_files(crashed) == all_files(reference)
    for kind, column in ID_COLUMNS.items():
        path = crashed / (
            "manifest.parquet" if kind == "counterfactuals" else f"manifests/{kind}.parquet"
        )
        ids = pq.read_table(path).column(column).to_pylist()
        assert ids and len(ids) == len(set(ids)), kind
    rows = pq.read_table(crashed / "manifest.parquet").num_rows
    assert rows == len(PHOTOS) * 2 * 2  # 2 concepts x 2 style images per photo
    assert (crashed / "quarantine.jsonl").read_text() == ""


def stamped(root: Path) -> bool:
    """Whether the build carries an up-to-date stamp (whatever its signature)."""
    return stamp_path(root).is_file()


@pytest.fixture
def reference(tmp_path: Path, prefect_harness: None) -> tuple[dict, Path]:
    """The inputs' config and an uninterrupted build of it, made in this process."""
    from flows.build import build_dataset

    config = make_inputs(tmp_path)
    out = tmp_path / "reference"
    build_dataset(config=config, out=str(out))
    return config, out


@pytest.mark.slow
def test_a_build_killed_at_every_failpoint_resumes_to_the_uninterrupted_result(
    tmp_path: Path, child_env: dict[str, str], reference: tuple[dict, Path]
) -> None:
    config, uninterrupted = reference
    log = tmp_path / "builds.log"
    crashed = tmp_path / "crashed"
    for point in BUILD_POINTS:
        run_build(config, crashed, child_env, log, failpoint=point)
        assert last_failpoint(log) == point.partition("@")[0]
        assert_nothing_torn(crashed)
        assert not stamped(crashed), f"stamped up to date after a kill at {point}"
    run_build(config, crashed, child_env, log)
    assert_resumes_to(uninterrupted, crashed)


@pytest.mark.slow
def test_a_build_killed_from_outside_resumes_to_the_uninterrupted_result(
    tmp_path: Path, child_env: dict[str, str], reference: tuple[dict, Path]
) -> None:
    """Real SIGKILLs at moments found by polling; a moment the child outran is reported."""
    config, uninterrupted = reference
    log = tmp_path / "builds.log"
    crashed = tmp_path / "crashed"
    for point in POLL_POINTS:
        code = run_build(config, crashed, child_env, log, poll_kill=point)
        state = progress(crashed)
        if code == 0:
            print(f"{point}: the build finished before the kill; not caught ({state})")
            break
        print(f"killed at {point}: {state}")  # where the kill landed (pytest -s)
        assert_nothing_torn(crashed)
    run_build(config, crashed, child_env, log)
    assert_resumes_to(uninterrupted, crashed)


# -- the mechanisms the resume relies on, in process -------------------------------------------


class Crash(BaseException):
    """Stands in for the process dying (not an Exception: nothing may catch and carry on)."""


def test_a_write_interrupted_before_its_rename_leaves_the_old_file_and_no_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "images" / "ab" / "ab12.png"
    atomic_write_bytes(target, b"old complete content")

    def die(fd: int) -> None:
        raise Crash

    monkeypatch.setattr(os, "fsync", die)
    with pytest.raises(Crash):
        atomic_write_bytes(target, b"new content, never complete")
    assert target.read_bytes() == b"old complete content"
    assert [p.name for p in target.parent.iterdir()] == ["ab12.png"]


def test_temp_files_of_a_killed_writer_are_swept(tmp_path: Path) -> None:
    store = BuildStore(tmp_path / "build")
    leftovers = [
        store.root / "images" / "ab" / f"{TEMP_PREFIX}x1",
        store.root / "manifests" / "parts" / "masks" / f"{TEMP_PREFIX}x2",
        store.root / f"{TEMP_PREFIX}x3",
    ]
    for path in leftovers:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"half a file")
    (store.root / "images" / "ab" / "ab12.png").write_bytes(b"kept")
    assert store.sweep() == 3
    assert all_files(store.root) == {"images/ab/ab12.png"}
