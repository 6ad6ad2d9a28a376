"""The product as a new user meets it: `genreops stack up`, `genreops demo` (the `pipeline`
deployment triggered through the Prefect API, batch inference through Triton, the drift
report), then what the store, the metrics, Prometheus, the drift UI and a real browser show,
and `stack down` leaving nothing behind. A small corpus keeps it to a few minutes.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from genreops.flows.deployments import deployment_names
from prefect.client.schemas.sorting import FlowRunSort

from genreops.core.pidfiles import record_alive
from genreops.monitoring.store import MonitoringStore
from genreops.platform.stack.prefect_api import flow_names, prefect_client
from genreops.training.search_space import FAMILIES
from helpers import Cli, api, recorded

pytestmark = pytest.mark.e2e

SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-output" / "screenshots"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CLEAN, DRIFTED = 2, 5  # clips per genre in the demo's test sets


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
        }
    )
    try:
        cli("stack", "up")
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
    ]  # fmt: skip
    return platform("demo", *options).stdout


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
    metrics = _get(f"http://127.0.0.1:{metrics_port}/metrics")
    assert _metric_sum(metrics, "genreops_predictions_total") == served
    assert _metric_sum(metrics, "genreops_drift_tests_total") >= 1
    assert _metric_sum(metrics, 'genreops_fallback_answers_total{cause="drift"}') >= 0
    prometheus = f"http://127.0.0.1:{platform.ports['GENREOPS_PROMETHEUS_PORT']}/api/v1/query"

    def scraped() -> bool:
        answer = api(f"{prometheus}?query=sum(genreops_predictions_total)")
        values = [float(s["value"][1]) for s in answer["data"]["result"]]
        return values == [served]

    assert _wait(scraped, timeout=120), "Prometheus never scraped the served predictions"


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


def test_a_second_demo_reuses_everything(platform: Cli, demo: str) -> None:
    again = platform(
        "demo", "--per-genre", "6", "--clean-per-genre", str(CLEAN),
        "--drifted-per-genre", str(DRIFTED), "--trials", "2",
    ).stdout  # fmt: skip
    assert again.count("(reused: same table and settings)") == len(FAMILIES), again
    assert "(unchanged)" in again


def test_stack_down_leaves_no_process_behind(platform: Cli, demo: str) -> None:
    records = recorded(platform.home)
    assert records
    platform("stack", "down")
    alive = [service for service, record in records.items() if record_alive(record)]
    assert not alive, f"still running after `stack down`: {alive}"
