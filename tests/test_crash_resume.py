"""A build killed with SIGKILL at several points resumes to exactly the uninterrupted result.

`build_dataset` runs in a child process (`python -c`, its own PREFECT_HOME). The test watches the
build directory and kills the child's whole process group when a stage has written its first
new files (inside a shard), when a shard's part appears (between shards) and while the
manifests are consolidated. Each kill is followed by a check that nothing torn is visible, then
the next run resumes in the same directory; a last run completes it. The result must equal an
uninterrupted build (run in the test's own process): same manifests (`table_digest`), same
files with the same bytes, unique ids, no `.tmp-*` files.

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

from pipeline.store import BuildStore
from pipeline.store.atomic import TEMP_PREFIX, atomic_write_bytes
from pipeline.store.manifest import ID_COLUMNS, table_digest

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
# (what to watch, how many new entries trigger the kill): in order, each run resumes the last
KILL_POINTS = (
    ("images", 1),  # inside the first shard's ingest
    ("stylized", 1),  # inside a stylize stage (its masks just written)
    ("counterfactuals", 1),  # inside a transform-and-filter stage
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
    kill_at: tuple[str, int] | None = None,
) -> int:
    """Run a build in a child process group; with `kill_at`, SIGKILL it at that point.

    Returns the exit code (-9 when killed)."""
    import torch

    threads = torch.get_num_threads()
    base = count(out, kill_at[0]) if kill_at else 0
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
            if kill_at and count(out, kill_at[0]) >= base + kill_at[1]:
                os.killpg(child.pid, signal.SIGKILL)
                return child.wait()
            if time.monotonic() > deadline:
                os.killpg(child.pid, signal.SIGKILL)
                child.wait()
                pytest.fail(f"build ran over {RUN_TIMEOUT_S} s; log:\n{log.read_text()[-3000:]}")
            time.sleep(0.02)
    if child.returncode != 0:
        pytest.fail(f"build failed ({child.returncode}); log:\n{log.read_text()[-3000:]}")
    return child.returncode


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


@pytest.mark.slow
def test_killed_builds_resume_to_the_uninterrupted_result(
    tmp_path: Path, child_env: dict[str, str]
) -> None:
    from flows.build import build_dataset

    config = make_inputs(tmp_path)
    log = tmp_path / "builds.log"
    reference, crashed = tmp_path / "reference", tmp_path / "crashed"
    build_dataset(config=config, out=str(reference))  # uninterrupted, in this process

    codes, states = [], []
    for kill_at in KILL_POINTS:
        codes.append(run_build(config, crashed, child_env, log, kill_at))
        states.append(progress(crashed))
        print(f"killed at {kill_at}: {states[-1]}")  # where the kill landed (pytest -s)
        assert_nothing_torn(crashed)
    assert codes == [-signal.SIGKILL] * len(KILL_POINTS), f"a kill point was missed: {states}"
    assert not (crashed / "manifest.parquet").exists()  # every run so far died before the end
    run_build(config, crashed, child_env, log)

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
