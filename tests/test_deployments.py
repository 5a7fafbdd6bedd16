"""Scheduled deployments: `prefect.yaml` is valid, registers with cron schedules, and one runs.

The registration goes to the session's Prefect test server (`prefect_harness`): every deployment
of `prefect.yaml` whose flow exists in this checkout is registered with `Flow.to_deployment`
(its cron schedules, parameters and a process work pool) and read back. Then the
`weekly-pipeline` deployment is run once, for real: `run_deployment` creates a flow run (with a
tiny config: one photo, one texture, publish as a dry run) and a `ProcessWorker` polls the pool
once and runs it in a subprocess, as `prefect worker start --pool ...` would.
"""

from __future__ import annotations

import asyncio
import importlib.util
import inspect
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
POOL = "conceptswap-test-pool"
REQUIRED = {"build_dataset", "audit_model", "counterfactual_pipeline"}
TINY = {
    "name": "deployed",
    "source": {"kind": "samples", "names": ["coffee"]},
    "image": {"max_side": 64},
    "segment": {"concepts": ["background"]},
    "stylize": {"textures": ["snow"], "styles_per_texture": 1},
    "filter": {"require_clean_correct": False},
}


def deployments() -> list[dict[str, Any]]:
    return yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]


def flow_exists(deployment: dict[str, Any]) -> bool:
    return importlib.util.find_spec(deployment["entrypoint"].split(":")[0]) is not None


def test_prefect_yaml_is_well_formed(monkeypatch: pytest.MonkeyPatch) -> None:
    from prefect.flows import load_flow_from_entrypoint
    from prefect.schedules import Cron

    monkeypatch.chdir(ROOT)

    data = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    try:
        from prefect.cli.deploy._models import PrefectYamlModel
    except ImportError:  # internal to Prefect: skip the schema check on other versions
        pass
    else:
        PrefectYamlModel.model_validate(data)
    scheduled = {d["entrypoint"].split(":")[1] for d in deployments() if d.get("schedules")}
    assert scheduled >= REQUIRED
    for deployment in deployments():
        for schedule in deployment.get("schedules", []):
            Cron(schedule["cron"], timezone=schedule["timezone"])  # a valid cron expression
        assert deployment["work_pool"]["name"] == "conceptswap-process"
        # module paths only: a file entrypoint puts flows/ first on sys.path
        assert ".py:" not in deployment["entrypoint"], deployment["entrypoint"]
        assert flow_exists(deployment), deployment["entrypoint"]
        flow = load_flow_from_entrypoint(deployment["entrypoint"])
        accepted = inspect.signature(flow.fn).parameters
        assert set(deployment["parameters"]) <= set(accepted), deployment["name"]


def test_chain_defaults_to_the_build_classifier(tmp_path: Path) -> None:
    from flows.chain import DEFAULT_CLASSIFIER, build_classifier

    assert build_classifier(tmp_path) == DEFAULT_CLASSIFIER
    (tmp_path / "build.yaml").write_text("classifier:\n  name: timm:tf_efficientnet_lite2\n")
    assert build_classifier(tmp_path) == "timm:tf_efficientnet_lite2"


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_harness")
def test_register_cron_deployments_and_run_one_on_a_process_worker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.deployments import run_deployment
    from prefect.deployments.runner import EntrypointType
    from prefect.flows import load_flow_from_entrypoint
    from prefect.schedules import Cron
    from prefect.workers.process import ProcessWorker

    monkeypatch.chdir(ROOT)  # entrypoints are relative to the repository root
    with get_client(sync_client=True) as client:
        pools = {pool.name for pool in client.read_work_pools()}
        if POOL not in pools:
            client.create_work_pool(WorkPoolCreate(name=POOL, type="process"))

    registered: dict[str, Any] = {}
    for deployment in deployments():
        if not flow_exists(deployment):
            continue
        flow = load_flow_from_entrypoint(deployment["entrypoint"])
        schedules = [
            Cron(s["cron"], timezone=s["timezone"], active=s.get("active", True))
            for s in deployment.get("schedules", [])
        ]
        runner_deployment = flow.to_deployment(
            name=deployment["name"],
            schedules=schedules,
            parameters=deployment["parameters"],
            tags=deployment.get("tags"),
            description=deployment.get("description"),
            concurrency_limit=deployment.get("concurrency_limit"),
            work_pool_name=POOL,
            job_variables={"working_dir": str(ROOT)},
            entrypoint_type=EntrypointType.MODULE_PATH,  # as in prefect.yaml (not flows/x.py)
        )
        registered[deployment["name"]] = (deployment, runner_deployment.apply())
    assert "nightly-demo-build" in registered and "weekly-pipeline" in registered

    with get_client(sync_client=True) as client:
        for deployment, deployment_id in registered.values():
            stored = client.read_deployment(deployment_id)
            assert stored.work_pool_name == POOL
            assert stored.parameters == deployment["parameters"]
            assert stored.entrypoint.startswith("flows.")
            crons = [(s.schedule.cron, s.schedule.timezone, s.active) for s in stored.schedules]
            expected = [(s["cron"], s["timezone"], True) for s in deployment.get("schedules", [])]
            assert crons == expected

        for name, (_, deployment_id) in registered.items():  # no cron run may sneak in below
            if name != "weekly-pipeline":
                client.pause_deployment(deployment_id)

    # run the full-chain deployment once, with a tiny build and a dry-run publish
    out = tmp_path / "build"
    parameters = {
        "config": TINY,
        "out": str(out),
        "run_audit": False,
        "run_edits": False,
        "publish_repo_id": "local/deployed-tiny",
        "dry_run": True,
    }
    flow_run = run_deployment(
        "counterfactual_pipeline/weekly-pipeline", parameters=parameters, timeout=0
    )
    asyncio.run(ProcessWorker(work_pool_name=POOL).start(run_once=True))
    with get_client(sync_client=True) as client:
        state = client.read_flow_run(flow_run.id).state
    assert state is not None and state.is_completed(), state
    assert (out / "manifest.parquet").is_file()
    assert (out / "publish" / "deployed-tiny" / "README.md").is_file()
