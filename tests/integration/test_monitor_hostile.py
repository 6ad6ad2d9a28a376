"""The monitor service under repeated hostile notifications: every one refused with its
reason or recorded, nothing lost, the process serving and its memory flat (issue 14's rule)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from genreops.core.processes import stop_process
from genreops.monitoring.alerts import MAX_NOTIFICATION_BYTES
from genreops.monitoring.store import ALERTS, MonitoringStore
from helpers import free_port, memory_grew, record_reliability, start_monitor, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.reliability]

PASSES = 9
ALERTS_PER_NOTIFICATION = 200  # Alertmanager's largest groups are of this order


def _alerts(pass_number: int, batch: int) -> list[dict[str, Any]]:
    return [
        {
            "status": "firing",
            "labels": {"alertname": f"Load{pass_number}", "instance": f"i{batch}-{n}"},
            "annotations": {"summary": "x" * 200},
            "startsAt": "2026-12-04T12:00:00Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "fingerprint": f"{pass_number:02d}{batch:02d}{n:04d}",
        }
        for n in range(ALERTS_PER_NOTIFICATION)
    ]


def _oversized_chunks() -> Iterator[bytes]:
    """A body with no Content-Length, over the limit: refused while it streams."""
    chunk = b" " * 65536
    for _ in range(MAX_NOTIFICATION_BYTES // len(chunk) + 8):
        yield chunk


HOSTILE: list[tuple[str, Any, int]] = [  # (kind, body, expected status)
    ("not JSON", b"{alerts: [", 400),
    ("JSON, not a notification", b'{"status": "firing", "alerts": {"a": 1}}', 400),
    ("nested 200,000 deep", b"[" * 200_000, 400),
    ("binary", os.urandom(4096), 400),
    ("declared over the limit", b" " * (MAX_NOTIFICATION_BYTES + 1), 413),
    ("streamed over the limit", _oversized_chunks, 413),
]


@pytest.fixture
def monitor(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes], str]]:
    port = free_port()
    database = f"sqlite:///{tmp_path / 'monitoring.db'}"
    process = start_monitor(tmp_path, port, database)
    try:
        yield f"http://127.0.0.1:{port}", process, database
    finally:
        stop_process(process)


def test_hostile_notifications_are_refused_and_memory_stays_flat(
    monitor: tuple[str, subprocess.Popen[bytes], str],
) -> None:
    url, process, database = monitor
    rss: list[list[float]] = []
    wrong: list[str] = []
    sent = 0
    with httpx.Client(timeout=30) as client:
        for n in range(PASSES):
            for kind, body, status in HOSTILE:
                content = body() if callable(body) else body
                answer = client.post(f"{url}/alerts", content=content)
                if answer.status_code != status or "error" not in answer.json():
                    wrong.append(f"pass {n + 1}, {kind}: {answer.status_code} {answer.text[:80]}")
            for batch in range(5):
                alerts: list[Any] = [*_alerts(n, batch), "not an alert"]
                answer = client.post(f"{url}/alerts", json={"version": "4", "alerts": alerts})
                recorded = answer.json()
                if len(recorded["recorded"]) != ALERTS_PER_NOTIFICATION or recorded["refused"] != [
                    f"alert {ALERTS_PER_NOTIFICATION + 1}: not an object"
                ]:
                    wrong.append(f"pass {n + 1}, batch {batch}: {answer.text[:120]}")
                sent += ALERTS_PER_NOTIFICATION
            assert client.get(f"{url}/metrics").status_code == 200
            rss.append([psutil.Process(process.pid).memory_info().rss / 1e6])
        healthy = client.get(f"{url}/healthz").status_code == 200
    store = MonitoringStore(database)
    try:
        wait_until(lambda: store.count(ALERTS) == sent, timeout=60)
        stored = store.count(ALERTS)
    finally:
        store.close()
    alive = process.poll() is None
    hostile = PASSES * (len(HOSTILE) + 5)  # whole notifications, and one bad alert in each
    record_reliability(
        "bad_inputs",
        "monitor_alerts",
        {
            "tried": hostile,
            "rejected_correctly": hostile - len(wrong),
            "wrong_reason": len(wrong),
            "crashes": 0 if alive else 1,
            "good_total": sent,
            "good_answered": stored,
            "memory_start_mb": round(rss[0][0], 1),
            "memory_end_mb": round(rss[-1][0], 1),
            "server_ready_after": healthy,
            "rss_by_pass_mb": {"genreops monitor": [round(r[0], 1) for r in rss]},
            "hostile_kinds": [kind for kind, _, _ in HOSTILE],
        },
    )
    assert not wrong, "\n".join(wrong)
    assert stored == sent  # every good alert recorded, next to the refused ones
    assert healthy and alive
    assert not memory_grew(rss), f"monitor RSS by pass (MB): {rss}"
