"""The product as a new user meets it: `genreops stack up` (healthy, idempotent, restarting a
dead service, serving the deployments), `genreops demo` (the `pipeline`
deployment triggered through the Prefect API, batch inference through Triton, the drift
report), then what the store, the metrics, Prometheus, the drift UI and a real browser show,
and `stack down` leaving nothing behind. A small corpus keeps it to a few minutes. What a
second run reuses (and how the summary says so) is tested on the pipeline flow itself
(tests/integration/test_pipeline_flow.py).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID

import pytest
from genreops.flows.deployments import deployment_names
from prefect.client.schemas.sorting import FlowRunSort

from genreops.core.pidfiles import record_alive
from genreops.core.processes import port_in_use
from genreops.core.settings import Settings
from genreops.monitoring.store import MonitoringStore
from genreops.platform.stack import SERVICES
from genreops.platform.stack.prefect_api import flow_names, prefect_client, read_deployments
from helpers import GENREOPS, TEST_REPLICAS, Cli, api, ensemble_answers, recorded, wait_until

pytestmark = pytest.mark.e2e

SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-output" / "screenshots"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CLEAN, DRIFTED = 2, 5
FINAL_STATES = {
    "COMPLETED",
    "FAILED",
    "CRASHED",
    "CANCELLED",
}  # clips per genre in the demo's test sets


def _get(url: str) -> str:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=30) as response:
        return str(response.read().decode())


def _wait(condition, timeout: float = 90.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(2.0)


def _metric_sum(text: str, name: str) -> float:
    pattern = re.compile(rf"^{name}(?:{{[^}}]*}})? (\S+)$", re.MULTILINE)
    return sum(float(value) for value in pattern.findall(text))


def _chromium(*args: str) -> str:
    assert CHROMIUM, "chromium is not installed (make setup installs it)"
    result = subprocess.run(
        [
            CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
            "--disable-background-networking", "--disable-component-update", "--no-first-run",
            "--window-size=1440,1000", "--virtual-time-budget=20000", *args,
        ],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cli]:
    base = tmp_path_factory.mktemp("platform")
    cli = Cli(base / "home", base)
    # a small window, tested often, so a few dozen requests move the drift gate
    cli.env.update(
        {
            "GENREOPS_DRIFT_WINDOW": "40",
            "GENREOPS_DRIFT_MIN_SAMPLES": "10",
            "GENREOPS_DRIFT_TEST_EVERY": "10",
            # the demo's labeled drifted answers could start a retraining run in the middle
            # of these checks; the monitor's retraining is tested on its own
            "GENREOPS_RETRAIN_AUTO": "false",
            # no scheduled drift reports: the demo builds its own (--drift-reports 1), and one
            # started every 5 minutes took a core for minutes in the middle of the loop
            "GENREOPS_DRIFT_REPORT_EVERY_SECONDS": "0",
            # two Triton servers: clients use both, publish loads both, one is killed below
            "GENREOPS_TRITON_REPLICAS": str(TEST_REPLICAS),
        }
    )
    try:
        up = cli("stack", "up")
        assert "source" in up.stdout and "stack.env" in up.stdout  # how a shell finds the stack
        yield cli
    finally:
        cli("stack", "down", check=False)
        for record in recorded(cli.home).values():  # a failed `down` leaves nothing either
            if record_alive(record):
                os.killpg(record.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def demo(platform: Cli) -> str:
    options = [
        "--per-genre", "6", "--clean-per-genre", str(CLEAN),
        "--drifted-per-genre", str(DRIFTED), "--trials", "2",
        "--drift-reports", "1",  # each Evidently report costs ~6-10 s; one shows the views work
    ]  # fmt: skip
    return platform("demo", *options).stdout


def test_a_fresh_stack_is_healthy_idempotent_self_healing_and_serves_the_deployments(
    platform: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before the demo (tests run in file order; the ``demo`` fixture starts with the first
    test that asks for it): no model loaded yet, no training runs in MLflow."""
    # what `stack up` skips, saying why, when Debian's package is missing
    binaries = {"prometheus": "prometheus", "alertmanager": "prometheus-alertmanager"}
    skipped = {name for name, binary in binaries.items() if not Path("/usr/bin", binary).is_file()}

    # every service healthy, on the ports it was given
    status = platform.status()
    expected = set(SERVICES) - skipped
    assert {s for s, row in status.items() if row["healthy"]} == expected
    assert all(row["state"] == "running" for s, row in status.items() if s in expected)
    assert status["mlflow"]["url"] == f"http://127.0.0.1:{platform.ports['GENREOPS_MLFLOW_PORT']}"
    assert status["triton"]["detail"] == "no model loaded: waiting for `genreops publish`"
    assert status["deployments"]["detail"] == (
        f"{len(deployment_names())} deployments served (work pool genreops)"
    )
    pids = {s: row["pid"] for s, row in status.items()}

    # `up` again changes nothing
    again = platform("stack", "up")
    assert "already running" in again.stderr
    assert {s: row["pid"] for s, row in platform.status().items()} == pids

    # commands find the stack by themselves, through <home>/stack.env (when nothing explicit,
    # like the test harness's own Prefect server, says otherwise)
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    found = Settings(_env_file=None, home=platform.home, use_stack_env=True)  # type: ignore[call-arg]
    assert found.mlflow_uri == status["mlflow"]["url"]
    grpc = platform.ports["GENREOPS_TRITON_GRPC_PORT"]
    assert found.triton_url == f"127.0.0.1:{grpc},127.0.0.1:{grpc + 10}"  # both replicas
    assert found.prefect_api_url == platform.prefect_api

    # a dead service with its pid file left behind: `up` restarts just that one
    os.killpg(pids["s3"], signal.SIGKILL)
    while record_alive(recorded(platform.home)["s3"]):
        time.sleep(0.1)
    assert platform.status()["s3"]["detail"].startswith("stale pid file")
    platform("stack", "up")
    restarted = {s: row["pid"] for s, row in platform.status().items()}
    assert restarted["s3"] != pids["s3"]
    assert {s: p for s, p in restarted.items() if s != "s3"} == {
        s: p for s, p in pids.items() if s != "s3"
    }
    pids = restarted

    # the deployments, as the Prefect UI lists them, with typed parameters (through Prefect's
    # own client, which retries the 503s a loaded server answers now and then)
    with prefect_client(platform.prefect_api) as client:
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
    with prefect_client(platform.prefect_api) as client:
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


def test_the_demo_runs_the_pipeline_deployment_and_prints_the_summary(
    platform: Cli, demo: str
) -> None:
    for line in ("Validation G-mean per family", "Champion", "Challenger", "Clean set"):
        assert line in demo, demo
    assert "Drifted set" in demo and "answered by the fallback" in demo
    with prefect_client(platform.prefect_api) as client:
        listed = client.read_flow_runs(limit=200, sort=FlowRunSort.ID_DESC)
        names = flow_names(client, [r.flow_id for r in listed])
        flows = {str(flow_id): name for flow_id, name in names.items()}
        runs = [r.model_dump(mode="json") for r in listed]
    finished = {flows[r["flow_id"]] for r in runs if r["state_type"] == "COMPLETED"}
    assert {"pipeline", "extract-features", "train-model", "register-best", "publish"} <= finished
    assert {"batch-predict", "drift-report"} <= finished


def test_every_answer_is_in_the_store_and_on_the_metrics(platform: Cli, demo: str) -> None:
    served = 10 * (CLEAN + DRIFTED)
    store = MonitoringStore(f"sqlite:///{platform.home / 'monitoring.db'}")
    assert _wait(lambda: store.count("predictions") == served), store.count("predictions")
    assert store.count("drift_tests") >= 1
    assert any(test["dataset_drift"] for test in store.recent_drift_tests())
    metrics_port = platform.ports["GENREOPS_TRITON_METRICS_PORT"]
    replicas = [  # each replica answered its share; together, every request
        _get(f"http://127.0.0.1:{metrics_port + 10 * i}/metrics") for i in range(TEST_REPLICAS)
    ]
    shares = [_metric_sum(metrics, "genreops_predictions_total") for metrics in replicas]
    assert sum(shares) == served and all(share > 0 for share in shares), shares
    assert sum(_metric_sum(m, "genreops_drift_tests_total") for m in replicas) >= 1
    prometheus = f"http://127.0.0.1:{platform.ports['GENREOPS_PROMETHEUS_PORT']}/api/v1/query"

    def scraped() -> bool:
        answer = api(f"{prometheus}?query=sum(genreops_predictions_total)")
        values = [float(s["value"][1]) for s in answer["data"]["result"]]
        return values == [served]

    assert _wait(scraped, timeout=120), "Prometheus never scraped the served predictions"
    up = api(f'{prometheus}?query=sum(up{{job="triton"}})')["data"]["result"]
    assert [float(s["value"][1]) for s in up] == [TEST_REPLICAS]  # every replica scraped

    def dask_workers() -> float:  # the extraction cluster, as Prometheus sees it
        answer = api(f'{prometheus}?query=sum(dask_scheduler_workers{{job="dask"}})')
        return sum(float(s["value"][1]) for s in answer["data"]["result"])

    assert _wait(lambda: dask_workers() == 2, timeout=60), dask_workers()


def test_a_replica_killed_under_traffic_fails_no_request(platform: Cli, demo: str) -> None:
    """`genreops predict` sends the demo's clips to both of the stack's Triton replicas (its
    GENREOPS_TRITON_URL lists them) while replica 1 is SIGKILLed: every clip is answered (what
    the dead one never ran goes to the other), its keeper starts it again, and then it takes
    requests again."""
    from genreops.serving.triton.control import model_ready
    from genreops.serving.triton.server import read_pid_file, server_pid_file

    killed = read_pid_file(server_pid_file(platform.home, 1))
    assert killed is not None
    folders = [platform.home / "demo" / name for name in ("corpus", "clean")]
    total = sum(len(list(folder.glob("*/*.wav"))) for folder in folders)
    sending = subprocess.Popen(
        [GENREOPS, "predict", *map(str, folders), "--concurrency", "4", "--output", "json"],
        cwd=platform.cwd,
        env=platform.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # killed in the middle: once it has answered a few of them
    answered = lambda: ensemble_answers(killed.ports.metrics_url) >= 5  # noqa: E731
    assert wait_until(answered, timeout=120, every=0.1)
    assert sending.poll() is None, "predict ended before the kill"
    os.kill(killed.pid, signal.SIGKILL)
    stdout, stderr = sending.communicate(timeout=600)
    assert sending.returncode == 0, f"{stdout[-2000:]}\n{stderr[-3000:]}"
    summary = json.loads(stdout)["summary"]
    assert summary["answered"] == summary["total"] == total, summary

    def back() -> bool:
        again = read_pid_file(server_pid_file(platform.home, 1))
        return (
            again is not None
            and again.pid != killed.pid
            and model_ready(killed.ports.http_url, "genre_ensemble")
        )

    assert _wait(back, timeout=300), (platform.home / "logs" / "triton-replicas.log").read_text()
    platform("predict", str(folders[1]), "--concurrency", "2")
    assert ensemble_answers(killed.ports.metrics_url) > 0  # the new replica 1 answers too


def test_a_version_one_replica_refuses_leaves_both_on_the_version_before(
    platform: Cli, demo: str
) -> None:
    """`genreops publish` of a new version (other drift settings, same models) that replica 1
    cannot load, for a file lies where its drift folder for that version goes: the command
    fails naming that replica, the repository is pinned back, and both replicas keep serving
    the version before."""
    from genreops.serving.publish import read_history
    from genreops.serving.triton.control import repository_index

    repository = platform.home / "triton" / "repository"
    before = read_history(repository)["current"]
    blocker = platform.home / "serving" / "replica-1" / "drift" / f"v{before + 1}"
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.write_text("in the way")
    platform.env["GENREOPS_DRIFT_WINDOW"] = "41"  # a new version of the same models
    try:
        refused = platform("publish", check=False)
    finally:
        del platform.env["GENREOPS_DRIFT_WINDOW"]
        blocker.unlink()
    said = " ".join((refused.stdout + refused.stderr).split())
    http = platform.ports["GENREOPS_TRITON_HTTP_PORT"]
    assert refused.returncode == 1, said
    assert f"Triton at http://127.0.0.1:{http + 10} could not load model" in said, said
    assert f"every replica rolled back to version {before}" in said, said
    assert read_history(repository)["current"] == before
    for port in (http, http + 10):
        loaded = {
            str(entry.get("version"))
            for entry in repository_index(f"http://127.0.0.1:{port}")
            if entry.get("name") == "predictor" and entry.get("state") == "READY"
        }
        assert loaded == {str(before)}, (port, loaded)


def test_the_drift_view_shows_the_drift_tests(platform: Cli, demo: str) -> None:
    drift_ui = f"http://127.0.0.1:{platform.ports['GENREOPS_DRIFT_UI_PORT']}"
    projects = api(f"{drift_ui}/api/projects")
    [project] = [p for p in projects if p["name"] == "genreops drift"]
    snapshots = api(f"{drift_ui}/api/projects/{project['id']}/snapshots")
    assert len(snapshots) >= 1


def test_a_browser_shows_our_deployments_and_the_drift_view(platform: Cli, demo: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    prefect = f"http://127.0.0.1:{platform.ports['GENREOPS_PREFECT_PORT']}/deployments"
    page = _chromium("--dump-dom", prefect)
    missing = [name for name in deployment_names() if name.split("/")[0] not in page]
    assert not missing, f"the Prefect UI page does not list {missing}"
    _chromium(f"--screenshot={SCREENSHOTS / 'prefect-deployments.png'}", prefect)
    drift_ui = f"http://127.0.0.1:{platform.ports['GENREOPS_DRIFT_UI_PORT']}"
    [project] = [p for p in api(f"{drift_ui}/api/projects") if p["name"] == "genreops drift"]
    view = f"{drift_ui}/projects/{project['id']}"
    assert "genreops drift" in _chromium("--dump-dom", view)
    _chromium(f"--screenshot={SCREENSHOTS / 'drift-view.png'}", view)
    for name in ("prefect-deployments.png", "drift-view.png"):
        assert (SCREENSHOTS / name).stat().st_size > 10_000  # a rendered page, not a blank


def _loop_env() -> dict[str, str]:
    """What `make demo_loop` gives the monitor (and Prometheus' rules), read from the Makefile
    so the test runs the loop the README promises; fewer Optuna trials, as in the demo."""
    makefile = (Path(__file__).resolve().parents[2] / "Makefile").read_text()
    (block,) = re.findall(r"^LOOP_ENV = ((?:.*\\\n)*.*)$", makefile, flags=re.MULTILINE)
    env = dict(re.findall(r"(GENREOPS_\w+)=(\S+)", block))
    assert "GENREOPS_RETRAIN_COOLDOWN_SECONDS" in env, block
    # The loop's drifted answers are also mostly wrong, so low live accuracy may call for the
    # run before the gate has been open long enough (seen once in CI). Both close the loop;
    # this test follows the drift one, the accuracy one is tested in test_retraining.py.
    no_accuracy_trigger = {"GENREOPS_MIN_LIVE_ACCURACY": "0"}
    return {**env, "GENREOPS_RETRAIN_AUTO": "true", "GENREOPS_RETRAIN_TRIALS": "2",
            **no_accuracy_trigger}  # fmt: skip


def _restart_with(platform: Cli, services: list[str], env: dict[str, str]) -> None:
    """Stop ``services`` and let `stack up` start them again with ``env`` (only them)."""
    pids = {s: row["pid"] for s, row in platform.status().items()}
    for service in services:
        os.killpg(pids[service], signal.SIGTERM)
    assert _wait(lambda: not any(record_alive(recorded(platform.home)[s]) for s in services))
    platform.env.update(env)
    platform("stack", "up")
    after = {s: row["pid"] for s, row in platform.status().items()}
    assert all(after[s] != pids[s] for s in services)


@pytest.mark.timeout(900)
def test_the_loop_closes_by_itself_drift_to_a_promoted_canary(platform: Cli, demo: str) -> None:
    """Issue 16's acceptance: `genreops demo --loop` only sends drifted clips and their labels;
    the monitor, Prefect, the retrain flow and the canary do the rest. Every step is asserted
    from the store and the registry."""
    from mlflow import MlflowClient

    started = datetime.now(UTC)
    gone = platform.home / "labels.csv"  # a label whose clip cannot be read: left out, listed
    gone.write_text(f"clip_id,genre\n{platform.home / 'gone' / 'rock.wav'},rock\n")
    assert "1 label(s) stored" in " ".join(platform("feedback", str(gone)).stdout.split())
    # the demo's drifted clips left the gate open: the monitor may retrain as soon as it runs
    # with these settings, before the loop's first request; `demo --loop` then follows that run
    _restart_with(platform, ["monitor", "prometheus"], _loop_env())
    options = [
        "--per-genre", "6", "--clean-per-genre", str(CLEAN),
        "--drifted-per-genre", str(DRIFTED), "--trials", "2", "--drift-reports", "0",
    ]  # fmt: skip
    # the loop's own deadline comes before pytest's, so a failure prints what the loop saw
    summary = platform("demo", "--loop", "--loop-timeout", "420", *options).stdout
    assert "The loop (seconds after the first drifted request)" in summary, summary
    assert "canary promoted" in summary and "Promoted: genre-classifier/" in summary, summary

    store = MonitoringStore(f"sqlite:///{platform.home / 'monitoring.db'}")
    events = [e for e in store.model_events() if e["at"] >= started]
    steps = [e["event"] for e in events if e["event"] != "publish"]
    assert steps == [
        "retrain-triggered", "retrain-started", "retrain-finished",
        "canary-published", "canary-promoted",
    ], steps  # fmt: skip
    by_name = {e["event"]: e for e in events}
    assert by_name["retrain-triggered"]["detail"]["reason"] == "drift"
    finished = by_name["retrain-finished"]["detail"]
    assert finished["left_out"] == 1 and finished["added"] > 0
    assert finished["drift_reference_rows"] == finished["added"]  # the labeled clips
    canary = by_name["canary-published"]["detail"]["canary"]
    verdict = by_name["canary-promoted"]["detail"]
    assert verdict["canary_answers"]["answers"] >= 20 <= verdict["incumbent_answers"]["answers"]
    assert verdict["canary_answers"]["accuracy"] >= verdict["incumbent_answers"]["accuracy"]
    # the alert fired in Prometheus, went through Alertmanager and was recorded by the monitor
    alerts = [a for a in store.recent_alerts(200) if a["received_at"] >= started]
    assert any(
        a["alertname"] == "GenreopsDriftGateOpen"
        and a["status"] == "firing"
        and a["source"] == "alertmanager"
        for a in alerts
    ), alerts
    # every drifted clip's label stored, and the promoted canary is the champion in MLflow
    drifted = sorted((platform.home / "demo" / "drifted").glob("*/*.wav"))
    assert {str(p) for p in drifted} <= set(store.latest_labels())
    mlflow_url = f"http://127.0.0.1:{platform.ports['GENREOPS_MLFLOW_PORT']}"
    registry = MlflowClient(tracking_uri=mlflow_url, registry_uri=mlflow_url)
    model = registry.get_registered_model("genre-classifier")
    version = canary.rsplit("/", 1)[1]
    assert model.aliases["champion"] == version and "canary" not in model.aliases
    assert registry.get_model_version("genre-classifier", version).tags["genreops.canary"] == (
        "promoted"
    )
    assert "genreops.loop.canary-promoted" in model.tags
    promoted = registry.get_model_version("genre-classifier", version)
    assert promoted.tags["genreops.canary.share"] == "0.5"
    (dataset,) = registry.get_run(str(promoted.run_id)).inputs.dataset_inputs
    assert finished["table"] in dataset.dataset.source  # the grown table is the data version
    # the last round of the same drifted traffic: the promoted model answered, gate closed
    newest = store.recent_predictions(len(drifted))
    assert {p["model_version"] for p in newest} == {canary}
    assert not newest[0]["drift_gate_open"]
    models = platform("models").stdout
    assert "canary-promoted" in models and "retrain-triggered" in models


def test_stack_down_leaves_no_process_behind(platform: Cli, demo: str) -> None:
    records = recorded(platform.home)
    assert records
    down = platform("stack", "down")
    assert "stopped:" in down.stdout
    alive = [service for service, record in records.items() if record_alive(record)]
    assert not alive, f"still running after `stack down`: {alive}"
    assert recorded(platform.home) == {}
    assert not (platform.home / "stack.env").exists()
    assert not any(port_in_use("127.0.0.1", port) for port in platform.ports.values())
    assert platform("stack", "status", check=False).returncode == 1
