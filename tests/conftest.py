"""Shared fixtures. Prefect gets a private home and one test harness for the whole session."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

_PREFECT_HOME = tempfile.mkdtemp(prefix="conceptswap-prefect-")
os.environ["PREFECT_HOME"] = _PREFECT_HOME  # before anything imports prefect
# exported ONNX models go to a session folder, not the user's cache
os.environ.setdefault("CONCEPTSWAP_CACHE", tempfile.mkdtemp(prefix="conceptswap-cache-"))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

SHARED_IMAGENET = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "imagenet-samples"


@pytest.fixture(scope="session")
def prefect_harness():
    """One Prefect test server for the session, started only by tests that run flows."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def classifier():
    """The real offline classifier (EfficientNet-Lite0, packaged ImageNet weights), loaded once;
    torch eager, as Grad-CAM and editing use it (no engine probe at load)."""
    from pipeline.classify import create_classifier

    return create_classifier("timm:tf_efficientnet_lite0", device="cpu", engine="eager")


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture
def flow_calls(monkeypatch) -> list[str]:
    """Every flow and library entry point a command may start, replaced by a recorder."""
    import flows.audit
    import flows.build
    import flows.edit
    import pipeline.publish
    import pipeline.report.build_overview

    calls: list[str] = []
    for owner, name in (
        (flows.audit, "audit_model"),
        (flows.edit, "run_edits"),
        (flows.build, "build_dataset"),
        (pipeline.publish, "export_build"),
        (pipeline.publish, "publish"),
        (pipeline.report.build_overview, "build_concept_stats"),
    ):
        monkeypatch.setattr(owner, name, lambda *a, _name=name, **k: calls.append(_name))
    return calls
