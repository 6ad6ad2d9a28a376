"""The drift record with its real worker process, fed by the real gate: gate transitions,
stalls, crashes, stop."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from genreops.data.features import FEATURE_NAMES
from genreops.monitoring.drift import (
    LOG_FILE,
    NOVELTY_FIELDS,
    TESTS_FILE,
    DriftError,
    DriftMonitor,
    DriftSettings,
)
from genreops.monitoring.novelty import NoveltyMonitor, NoveltySettings

pytestmark = pytest.mark.integration

COLUMNS = [f"f{i:02d}" for i in range(20)]
NOTHING_SAID = np.zeros((1, len(NOVELTY_FIELDS)), dtype=np.float32)
WAIT = 180.0  # worker start imports Evidently (~10 s) and reports take seconds on 2 busy cores


def wait_for(what: str, check: Callable[[], bool], timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.1)


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.fixture
def reference_path(tmp_path: Path) -> Path:
    """A training-table-like reference: 20 Gaussian features plus label and id columns."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(400, len(COLUMNS))), columns=COLUMNS)
    frame.insert(0, "genre", "rock")
    frame.insert(0, "clip_id", [f"rock/{i}.wav" for i in range(len(frame))])
    path = tmp_path / "reference.parquet"
    frame.to_parquet(path, index=False)
    return path


@pytest.fixture
def monitors() -> Iterator[list[DriftMonitor]]:
    """Monitors a test started; stopped even when the test fails."""
    started: list[DriftMonitor] = []
    yield started
    for monitor in started:
        monitor.stop(timeout=1.0)


def test_the_record_follows_the_gate(
    reference_path: Path, tmp_path: Path, monitors: list[DriftMonitor]
) -> None:
    settings = DriftSettings(window=40, min_samples=40, every=40)  # one test per 40 requests
    monitor = DriftMonitor(
        reference_path, tmp_path / "state", settings, columns_from_reference=True
    )
    monitors.append(monitor)
    monitor.start()
    reference = pd.read_parquet(reference_path, columns=COLUMNS).to_numpy()
    gate = NoveltyMonitor(reference, NoveltySettings(expected_run=1e4))
    rng = np.random.default_rng(1)

    def phase(shift: float, requests: int) -> None:
        for _ in range(requests):  # one request at a time, as the predictor does
            vector = rng.normal(shift, 1.0, size=(1, len(COLUMNS))).astype(np.float32)
            judged = gate.assess(vector)
            monitor.submit(
                vector, np.column_stack([judged.score, judged.statistic, judged.gate_open])
            )

    phase(0.0, 40)
    wait_for("the first drift test", lambda: monitor.state()["tests_run"] >= 1)
    state = monitor.state()
    assert state["gate_open"] is False and state["worker_alive"] is True
    assert state["last_test"]["window_size"] == 40
    assert state["last_test"]["dataset_drift"] is False

    phase(1.5, 40)
    assert gate.gate_open
    wait_for("the gate's opening in the record", lambda: monitor.state()["gate_open"])
    phase(0.0, 200)
    assert not gate.gate_open
    wait_for("all requests in the record", lambda: monitor.state().get("samples_seen") == 280)
    state = monitor.state()
    assert state["gate_open"] is False
    assert state["submitted"] == 280 and state["skipped"] == 0 and state["dropped"] == 0

    records = [json.loads(x) for x in (tmp_path / "state" / TESTS_FILE).read_text().splitlines()]
    before = [{"gate_open": False}, *records[:-1]]
    changes = [r for r, b in zip(records, before, strict=True) if r["gate_open"] != b["gate_open"]]
    assert [r["gate_open"] for r in changes] == [True, False]
    opened, closed = changes
    assert 40 < opened["samples_seen"] <= 80 and opened["dataset_drift"] is True
    assert opened["ood_share"] > 0 and opened["statistic"] == pytest.approx(1.0)
    assert closed["samples_seen"] > 80 and closed["dataset_drift"] is False
    assert set(records[0]["column_scores"]) == set(COLUMNS)

    with pytest.raises(DriftError, match=r"expects \[batch, 20\] features"):
        monitor.submit(np.zeros((1, len(FEATURE_NAMES)), dtype=np.float32), NOTHING_SAID)

    pid = state["worker_pid"]
    assert isinstance(pid, int)
    monitor.stop()
    assert gone(pid)
    assert monitor.state()["worker_alive"] is False
    assert "gate opened" in (tmp_path / "state" / LOG_FILE).read_text()


def test_dead_worker_is_reported_and_restarted(
    reference_path: Path, tmp_path: Path, monitors: list[DriftMonitor]
) -> None:
    monitor = DriftMonitor(
        reference_path,
        tmp_path / "state",
        DriftSettings(window=40, min_samples=40, every=40),
        columns_from_reference=True,
        restart_interval=0.5,
    )
    monitors.append(monitor)
    monitor.start()
    wait_for("the worker's first state", lambda: monitor.state().get("updated_at") is not None)
    first = monitor.state()["worker_pid"]
    assert isinstance(first, int)
    time.sleep(0.6)  # past restart_interval since the start
    os.kill(first, signal.SIGKILL)  # our own child
    wait_for("the monitor to see the worker dead", lambda: not monitor.state()["worker_alive"])
    state = monitor.state()
    assert state["worker_exit_code"] == -signal.SIGKILL

    monitor.submit(np.zeros((1, len(COLUMNS))), NOTHING_SAID)  # traffic brings it back
    wait_for("a new worker", lambda: monitor.state()["worker_alive"])
    state = monitor.state()
    assert state["restarts"] == 1
    assert state["worker_pid"] != first
    # the restarted worker resumes (counts continue) and reads the vector sent after the crash
    wait_for(
        "the new worker's state",
        lambda: (
            monitor.state().get("started_at") != state.get("started_at")
            and monitor.state().get("samples_seen") == 1
        ),
    )
    second = monitor.state()["worker_pid"]
    monitor.stop(timeout=1.0)
    assert gone(first)
    assert isinstance(second, int) and gone(second)


def test_a_stalled_worker_never_blocks_submit(
    reference_path: Path, tmp_path: Path, monitors: list[DriftMonitor]
) -> None:
    """Worker frozen: the pipe and the queue fill, then vectors are skipped, not waited on."""
    monitor = DriftMonitor(
        reference_path,
        tmp_path / "state",
        DriftSettings(window=40, min_samples=40, every=1_000_000),
        columns_from_reference=True,
        queue_size=8,
    )
    monitors.append(monitor)
    monitor.start()
    pid = monitor.state()["worker_pid"]
    assert isinstance(pid, int)
    os.kill(pid, signal.SIGSTOP)  # our own child
    try:
        vector = np.zeros((1, len(COLUMNS)), dtype=np.float32)
        for _ in range(5_000):  # 480 KB of frames: far more than a pipe buffer holds
            monitor.submit(vector, NOTHING_SAID)
        state = monitor.state()
        assert state["skipped"] > 0
        assert state["submitted"] + state["skipped"] == 5_000
        assert state["worker_alive"] is True
    finally:
        os.kill(pid, signal.SIGCONT)
    wait_for(
        "the worker to read what was queued",
        lambda: monitor.state().get("samples_seen") == monitor.state()["submitted"],
    )
    monitor.stop(timeout=1.0)
    assert gone(pid)


def test_a_worker_that_cannot_start_says_why(tmp_path: Path, monitors: list[DriftMonitor]) -> None:
    """A reference the schema check accepts but the worker refuses: exit 2, reason in the log."""
    path = tmp_path / "one-row.parquet"
    pd.DataFrame(np.zeros((1, len(COLUMNS))), columns=COLUMNS).to_parquet(path)
    monitor = DriftMonitor(path, tmp_path / "state", columns_from_reference=True)
    monitors.append(monitor)
    monitor.start()
    wait_for("the worker to give up", lambda: not monitor.state()["worker_alive"])
    state = monitor.state()
    assert state["worker_exit_code"] == 2
    assert state["gate_open"] is False
    assert "drift reference has 1 rows" in (tmp_path / "state" / LOG_FILE).read_text()
