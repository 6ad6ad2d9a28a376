"""The monitor service (issue 16, part 3): alert notifications recorded and forwarded, live
quality as Prometheus gauges."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from genreops.core.settings import Settings
from genreops.monitoring.alerts import MAX_NOTIFICATION_BYTES
from genreops.monitoring.service import create_app
from genreops.monitoring.store import ALERTS, MonitoringStore
from helpers import free_port, wait_until

pytestmark = pytest.mark.unit


def notification(*alerts: Any, **extra: Any) -> dict[str, Any]:
    """Alertmanager's webhook payload (version 4)."""
    return {"version": "4", "status": "firing", "receiver": "genreops-monitor",
            "groupKey": "{}:{alertname=\"GenreopsDriftGateOpen\"}", "alerts": list(alerts),
            **extra}  # fmt: skip


def alert(name: str, status: str = "firing", **labels: str) -> dict[str, Any]:
    return {
        "status": status,
        "labels": {"alertname": name, "severity": "warning", **labels},
        "annotations": {"summary": f"{name} on t:8002", "description": "long text"},
        "startsAt": "2026-12-04T12:00:00.123Z",
        "endsAt": "0001-01-01T00:00:00Z" if status == "firing" else "2026-12-04T12:20:00Z",
        "fingerprint": f"{name[:8]}0001",
        "generatorURL": "http://127.0.0.1:9090/graph",
    }


class Sink(BaseHTTPRequestHandler):
    """The user's own webhook: keeps what it is sent."""

    received: ClassVar[list[bytes]] = []

    def do_POST(self) -> None:
        Sink.received.append(self.rfile.read(int(self.headers["content-length"])))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def sink() -> Iterator[str]:
    Sink.received = []
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Sink)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hook"
    server.shutdown()
    server.server_close()


def settings_for(tmp_path: Path, **values: Any) -> Settings:
    return Settings(home=tmp_path / "home", use_stack_env=False, **values)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[MonitoringStore]:
    with MonitoringStore(f"sqlite:///{tmp_path / 'monitoring.db'}") as created:
        created.ensure_schema()
        yield created


def test_every_alert_of_a_notification_is_recorded_and_forwarded_as_received(
    tmp_path: Path, store: MonitoringStore, sink: str
) -> None:
    body = notification(
        alert("GenreopsDriftGateOpen", instance="t:8002"),
        alert("GenreopsTritonDown", status="resolved", instance="t:8002"),
        "not an alert",
    )
    settings = settings_for(tmp_path, alert_webhook_url=sink)
    with TestClient(create_app(settings, store)) as client:
        answer = client.post("/alerts", json=body)
        assert answer.status_code == 200, answer.text
        assert len(answer.json()["recorded"]) == 2
        assert answer.json()["refused"] == ["alert 3: not an object"]
        assert wait_until(lambda: store.count(ALERTS) == 2, timeout=10)
        listed = client.get("/alerts").json()
    rows = {row["alertname"]: row for row in store.recent_alerts()}
    gate = rows["GenreopsDriftGateOpen"]
    assert (gate["status"], gate["source"], gate["severity"]) == (
        "firing",
        "alertmanager",
        "warning",
    )
    assert gate["starts_at"] == datetime(2026, 12, 4, 12, 0, 0, 123000, tzinfo=UTC)
    assert gate["ends_at"] is None and gate["labels"]["instance"] == "t:8002"
    assert gate["summary"] == "GenreopsDriftGateOpen on t:8002"
    assert rows["GenreopsTritonDown"]["ends_at"] == datetime(2026, 12, 4, 12, 20, tzinfo=UTC)
    assert {row["alertname"] for row in listed} == set(rows)
    assert wait_until(lambda: len(Sink.received) == 1, timeout=10)
    assert json.loads(Sink.received[0]) == body  # forwarded unchanged


def test_grafana_notifications_are_recorded_as_grafanas(
    tmp_path: Path, store: MonitoringStore
) -> None:
    body = notification(alert("Drift gate open"), orgId=1, state="alerting", title="[FIRING:1]")
    with TestClient(create_app(settings_for(tmp_path), store)) as client:
        assert client.post("/alerts", json=body).status_code == 200
    (row,) = store.recent_alerts()
    assert (row["source"], row["alertname"]) == ("grafana", "Drift gate open")


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b"{not json", 400, "not JSON"),
        (b'{"status": "firing"}', 400, "no list of alerts"),
        (b"[" * 200_000, 400, "nested too deeply"),
        (b"[" + b" " * MAX_NOTIFICATION_BYTES + b"]", 413, "byte limit"),
    ],
)
def test_an_unreadable_notification_is_refused_with_its_reason(
    tmp_path: Path, store: MonitoringStore, body: bytes, status: int, message: str
) -> None:
    with TestClient(create_app(settings_for(tmp_path), store)) as client:
        answer = client.post("/alerts", content=body)
        assert answer.status_code == status and message in answer.json()["error"]
        assert client.post("/alerts", json=notification(alert("After"))).status_code == 200
        metrics = client.get("/metrics").text
    assert "genreops_alert_notifications_refused_total" in metrics


def test_a_webhook_that_fails_is_counted_and_nothing_is_lost(
    tmp_path: Path, store: MonitoringStore
) -> None:
    closed = f"http://127.0.0.1:{free_port()}/nobody"
    with TestClient(create_app(settings_for(tmp_path, alert_webhook_url=closed), store)) as client:
        assert client.post("/alerts", json=notification(alert("X"))).status_code == 200
        assert wait_until(lambda: store.count(ALERTS) == 1, timeout=10)
        assert "genreops_alert_forward_failures_total 1.0" in client.get("/metrics").text


def _gauges(text: str) -> dict[tuple[str, str], float]:
    return {
        (sample.name, sample.labels.get("model_version", "")): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_live_accuracy_gauges_cover_the_newest_labeled_answers(
    tmp_path: Path, store: MonitoringStore
) -> None:
    now = datetime.now(UTC)
    answers = [  # version 1: 4 right of 6 (oldest 2 wrong); version 2: 2 answers, 1 right
        *[("rock" if n >= 2 else "jazz", "genre-classifier/1", n) for n in range(6)],
        ("rock", "genre-classifier/2", 6),
        ("pop", "genre-classifier/2", 7),
    ]
    store.insert_predictions(
        {"clip_id": f"{n}.wav", "genre": genre, "model_version": version,
         "served_at": now - timedelta(minutes=10 - n)}
        for genre, version, n in answers
    )  # fmt: skip
    store.insert_labels({"clip_id": f"{n}.wav", "genre": "rock"} for n in range(8))
    settings = settings_for(
        tmp_path, quality_recent_answers=4, quality_min_answers=3, min_live_accuracy=0.8
    )
    with TestClient(create_app(settings, store)) as client:
        gauges = _gauges(client.get("/metrics").text)
    assert gauges[("genreops_live_accuracy", "genre-classifier/1")] == 1.0  # the newest 4
    assert gauges[("genreops_live_labeled_answers", "genre-classifier/1")] == 4
    assert ("genreops_live_accuracy", "genre-classifier/2") not in gauges  # 2 < 3 answers
    assert gauges[("genreops_live_labeled_answers", "genre-classifier/2")] == 2
    assert gauges[("genreops_live_accuracy", "all")] == 0.75  # answers 4..7: 3 right
    assert gauges[("genreops_live_accuracy_minimum", "")] == 0.8
    assert gauges[("genreops_labels_stored", "")] == 8
    assert gauges[("genreops_live_quality_up", "")] == 1.0
