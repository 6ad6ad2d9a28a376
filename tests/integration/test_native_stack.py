"""`genreops stack` for real, as a user runs it: every server on free ports in a fresh home."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from uuid import UUID

import pytest
from genreops.flows.deployments import deployment_names

from genreops.core.pidfiles import record_alive
from genreops.core.processes import port_in_use
from genreops.core.settings import Settings
from genreops.platform.stack import SERVICES
from genreops.platform.stack.prefect_api import flow_names, prefect_client, read_deployments
from helpers import Cli, recorded

pytestmark = pytest.mark.integration

FINAL_STATES = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


@pytest.fixture(scope="module")
def cli(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cli]:
    base = tmp_path_factory.mktemp("stack")
    runner = Cli(base / "home", base)
    try:
        yield runner
    finally:
        runner("stack", "down", check=False)
        for record in recorded(runner.home).values():  # a failed `down` leaves nothing either
            if record_alive(record):
                os.killpg(record.pid, signal.SIGKILL)


def test_stack_up_status_rerun_trigger_and_down(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    has_prometheus = Path("/usr/bin/prometheus").is_file()

    up = cli("stack", "up")
    assert "source" in up.stdout and "stack.env" in up.stdout

    # every service healthy, on the ports it was given
    status = cli.status()
    expected = set(SERVICES) if has_prometheus else set(SERVICES) - {"prometheus"}
    assert {s for s, row in status.items() if row["healthy"]} == expected
    assert all(row["state"] == "running" for s, row in status.items() if s in expected)
    assert status["mlflow"]["url"] == f"http://127.0.0.1:{cli.ports['GENREOPS_MLFLOW_PORT']}"
    assert status["triton"]["detail"] == "no model loaded: waiting for `genreops publish`"
    assert status["deployments"]["detail"] == f"{len(deployment_names())} deployments served"
    pids = {s: row["pid"] for s, row in status.items()}

    # `up` again changes nothing
    again = cli("stack", "up")
    assert "already running" in again.stderr
    assert {s: row["pid"] for s, row in cli.status().items()} == pids

    # commands find the stack by themselves, through <home>/stack.env (when nothing explicit,
    # like the test harness's own Prefect server, says otherwise)
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    found = Settings(_env_file=None, home=cli.home, use_stack_env=True)  # type: ignore[call-arg]
    assert found.mlflow_uri == status["mlflow"]["url"]
    assert found.triton_url == f"127.0.0.1:{cli.ports['GENREOPS_TRITON_GRPC_PORT']}"
    assert found.prefect_api_url == cli.prefect_api

    # a dead service with its pid file left behind: `up` restarts just that one
    os.killpg(pids["s3"], signal.SIGKILL)
    while record_alive(recorded(cli.home)["s3"]):
        time.sleep(0.1)
    assert cli.status()["s3"]["detail"].startswith("stale pid file")
    cli("stack", "up")
    restarted = {s: row["pid"] for s, row in cli.status().items()}
    assert restarted["s3"] != pids["s3"]
    assert {s: p for s, p in restarted.items() if s != "s3"} == {
        s: p for s, p in pids.items() if s != "s3"
    }
    pids = restarted

    # the deployments, as the Prefect UI lists them, with typed parameters (through Prefect's
    # own client, which retries the 503s a loaded server answers now and then)
    with prefect_client(cli.prefect_api) as client:
        listed = read_deployments(client)
        names = flow_names(client, [d.flow_id for d in listed])
        flows = {str(flow_id): name for flow_id, name in names.items()}
        deployments = [d.model_dump(mode="json") for d in listed]
    named = {f"{flows[d['flow_id']]}/{d['name']}": d for d in deployments}
    assert set(named) == set(deployment_names())
    assert "register-best/register-best" in named
    train = named["train-model/train-model"]
    assert train["parameter_openapi_schema"]["properties"]["trials"]["type"] == "integer"
    assert train["description"]
    assert all(d["status"] == "READY" for d in deployments)

    # a run triggered through the API is picked up and reaches a final state; with no training
    # runs yet, register-best fails with the real reason, found in the stack's MLflow
    register = named["register-best/register-best"]
    with prefect_client(cli.prefect_api) as client:
        run = client.create_flow_run_from_deployment(UUID(register["id"]))
        state = run.state.model_dump(mode="json") if run.state else {"type": "PENDING"}
        deadline = time.monotonic() + 300
        while state["type"] not in FINAL_STATES and time.monotonic() < deadline:
            time.sleep(1)
            current = client.read_flow_run(run.id).state
            state = current.model_dump(mode="json") if current else state
    assert state["type"] == "FAILED", state
    assert "no finished training runs" in state["message"]
    assert status["mlflow"]["url"] in state["message"]

    # down: every process of ours gone, files too, ports free
    records = recorded(cli.home)
    assert {s: r.pid for s, r in records.items()} == {
        s: p for s, p in pids.items() if p is not None
    }
    down = cli("stack", "down")
    assert "stopped:" in down.stdout
    assert not any(record_alive(r) for r in records.values())
    assert recorded(cli.home) == {}
    assert not (cli.home / "stack.env").exists()
    assert not any(port_in_use("127.0.0.1", port) for port in cli.ports.values())
    assert cli("stack", "status", check=False).returncode == 1
