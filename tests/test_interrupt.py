"""Ctrl-C and SIGTERM stop a running `conceptswap build` within 10 s, and the next build
resumes to the result of an uninterrupted one.

The signal goes to the build's whole process group, as a terminal's Ctrl-C does: it reaches
Prefect's temporary server too, which used to leave the engine retrying the stopped server for
minutes (2 min 47 s) before exiting.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from pipeline.store.manifest import table_digest

REPO = Path(__file__).resolve().parents[1]
STOP_LIMIT_S = 10.0
RUN_TIMEOUT_S = 900
CONFIG = {
    "name": "interrupt",
    "shard_size": 1,
    "source": {"kind": "samples", "names": ["coffee", "chelsea", "rocket", "camera"]},
    "segment": {"concepts": ["object", "background"]},
    "stylize": {"textures": ["snow"], "styles_per_texture": 1},
}


def start(config: Path, out: Path, env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "flows.cli", "build", "-c", str(config), "--out", str(out)],
        cwd=REPO,
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own group: the signal reaches the server, as Ctrl-C does
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def finish(child: subprocess.Popen, log: Path) -> int:
    try:
        return child.wait(timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        pytest.fail(f"build ran over {RUN_TIMEOUT_S} s; log:\n{log.read_text()[-3000:]}")


def manifest_digests(root: Path) -> dict[str, str]:
    """Content digests of the consolidated manifests (as `tests/test_crash_resume.py`)."""
    paths = [root / "manifest.parquet", *sorted(root.glob("manifests/*.parquet"))]
    return {p.name: table_digest(p) for p in paths}


def parts(out: Path) -> int:
    folder = out / "manifests" / "parts" / "counterfactuals"
    return len(list(folder.glob("*.parquet"))) if folder.is_dir() else 0


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["sigint", "sigterm"])
def test_a_signal_stops_the_build_quickly_and_the_next_build_resumes(tmp_path, signum) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect"), "PYTHONPATH": str(REPO)}
    env.pop("PREFECT_API_URL", None)  # the temporary server: the case that used to hang
    log = tmp_path / "log.txt"

    reference = tmp_path / "reference"
    assert finish(start(config, reference, env, log), log) == 0

    interrupted = tmp_path / "interrupted"
    child = start(config, interrupted, env, log)
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while parts(interrupted) < 1 and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)  # the first shard is done, the second in flight
    assert child.poll() is None, log.read_text()[-3000:]
    os.killpg(child.pid, signum)
    sent = time.monotonic()
    code = finish(child, log)
    stopped_in = time.monotonic() - sent
    assert stopped_in < STOP_LIMIT_S, (stopped_in, log.read_text()[-3000:])
    assert code == 130
    assert not (interrupted / ".complete.json").exists()
    assert parts(interrupted) < len(CONFIG["source"]["names"])  # it did stop early

    assert finish(start(config, interrupted, env, log), log) == 0
    assert manifest_digests(interrupted) == manifest_digests(reference)
    assert not list(interrupted.rglob(".tmp-*"))
