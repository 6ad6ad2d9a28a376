"""The monitor service: live-quality gauges for Prometheus and the receiver of alert notifications.

One small HTTP process (FastAPI on uvicorn, bound to 127.0.0.1 by default) next to Triton:

``GET /metrics``
    Prometheus gauges of live quality from the monitoring store: accuracy over the newest
    ``GENREOPS_QUALITY_RECENT_ANSWERS`` labeled answers, per model version that answered and
    pooled (``model_version="all"``, what the GenreopsLiveAccuracyLow rule watches), how many
    answers each covers, the minimum setting, the labels stored; and the receiver's counters.
    Accuracy is published only once ``GENREOPS_QUALITY_MIN_ANSWERS`` labeled answers back it,
    so a handful of labels cannot fire an alert. Computed at most every few seconds.
``POST /alerts``
    Alertmanager's webhook receiver (and Grafana's webhook contact point): every alert of a
    notification becomes a row of the store's ``alerts`` table, through the same writer as
    predictions (spooled while the database is away), then the notification is forwarded as
    received to ``GENREOPS_ALERT_WEBHOOK_URL`` if set (retried, off the response path).
``GET /alerts``
    The newest recorded alerts, as JSON.
``GET /healthz``
    200 while the process serves; says whether it starts retraining runs, and its settings.

Given a way to start retraining runs (``genreops monitor`` passes the Prefect deployment
``retrain``), it also runs ``genreops.monitoring.retraining.RetrainWatcher``: a check every
``GENREOPS_RETRAIN_CHECK_SECONDS``, and one at once when a notification reports
GenreopsDriftGateOpen or GenreopsLiveAccuracyLow firing; it also judges a canary on trial and
concludes it (promotion or withdrawal) through what it is given.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
from fastapi import BackgroundTasks, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from tenacity import Retrying, stop_after_attempt, wait_exponential

from genreops.core.settings import Settings
from genreops.monitoring.alerts import MAX_NOTIFICATION_BYTES, NotificationError, read_notification
from genreops.monitoring.quality import ALL_VERSIONS, QualityPolicy, recent_quality
from genreops.monitoring.retraining import (
    RETRAIN_ALERTS,
    LoopActions,
    RetrainPolicy,
    RetrainWatcher,
)
from genreops.monitoring.store import (
    LABELS,
    MonitoringError,
    MonitoringStore,
    MonitoringWriter,
    utc_now,
)

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
REFRESH_SECONDS = 5.0  # quality is recomputed at most this often, however often it is scraped
VERSIONS_PERIOD = timedelta(days=7)  # versions that answered in this period get their gauges
FORWARD_ATTEMPTS = 3


@dataclass(frozen=True)
class QualityReading:
    """One computation of the gauges: (labeled answers, accuracy or None) per version."""

    by_version: dict[str, tuple[int, float | None]]
    labels: int
    ok: bool  # False: the store could not be read; the gauges are then left out


def read_quality(store: MonitoringStore, policy: QualityPolicy) -> QualityReading:
    """Accuracy over the newest labeled answers, per version that answered lately and pooled."""
    versions = store.model_versions(utc_now() - VERSIONS_PERIOD)
    by_version: dict[str, tuple[int, float | None]] = {}
    for version in [*versions, None]:
        recent = recent_quality(store, policy, version)
        by_version[version or ALL_VERSIONS] = (recent.answers, recent.accuracy)
    return QualityReading(by_version, store.count(LABELS), ok=True)


class QualityGauges(Collector):
    """Live-quality gauges, read from the store at scrape time (cached briefly)."""

    def __init__(self, store: MonitoringStore, policy: QualityPolicy) -> None:
        self.store, self.policy = store, policy
        self._lock = threading.Lock()
        self._reading: QualityReading | None = None
        self._read_at = 0.0

    def reading(self) -> QualityReading:
        with self._lock:
            if self._reading is None or time.monotonic() - self._read_at >= REFRESH_SECONDS:
                try:
                    self._reading = read_quality(self.store, self.policy)
                except MonitoringError as error:
                    log.warning("live quality: %s", error)
                    self._reading = QualityReading({}, 0, ok=False)
                self._read_at = time.monotonic()
            return self._reading

    def collect(self) -> Iterator[GaugeMetricFamily]:
        reading = self.reading()
        yield GaugeMetricFamily(
            "genreops_live_quality_up",
            "1 when the monitoring store could be read for the live-quality gauges.",
            value=1.0 if reading.ok else 0.0,
        )
        yield GaugeMetricFamily(
            "genreops_live_accuracy_minimum",
            "The live accuracy below which GenreopsLiveAccuracyLow fires (a setting).",
            value=self.policy.min_accuracy,
        )
        if not reading.ok:
            return
        labeled = GaugeMetricFamily(
            "genreops_live_labeled_answers",
            "Labeled answers the live accuracy covers (the newest, up to the setting).",
            labels=["model_version"],
        )
        accuracy = GaugeMetricFamily(
            "genreops_live_accuracy",
            "Share of the newest labeled answers that match their clip's label; published "
            "once enough labeled answers back it.",
            labels=["model_version"],
        )
        for version, (count, value) in reading.by_version.items():
            labeled.add_metric([version], count)
            if value is not None:
                accuracy.add_metric([version], value)
        yield labeled
        yield accuracy
        yield GaugeMetricFamily(
            "genreops_labels_stored", "Labels in the monitoring store.", value=reading.labels
        )


def forward(url: str, body: bytes, failures: Counter) -> None:
    """POST a notification on as received; a failure is logged and counted, never raised."""
    try:
        for attempt in Retrying(
            stop=stop_after_attempt(FORWARD_ATTEMPTS),
            wait=wait_exponential(multiplier=0.5, max=4),
            reraise=True,
        ):
            with attempt:
                response = httpx.post(
                    url, content=body, headers={"content-type": "application/json"}, timeout=5
                )
                response.raise_for_status()
    except httpx.HTTPError as error:
        failures.inc()
        log.error("alert notification not forwarded to %s: %s", url, error)


def create_app(
    settings: Settings,
    store: MonitoringStore | None = None,
    retraining: LoopActions | None = None,
) -> FastAPI:
    """The service for ``settings`` (its store, spool, quality policy and forward URL);
    ``retraining`` starts runs, tells whether one is still active and concludes canaries
    (none: never retrain)."""
    store = store or MonitoringStore(settings.monitoring_db_url)
    registry = CollectorRegistry()
    gauges = QualityGauges(store, QualityPolicy.from_settings(settings))
    registry.register(gauges)
    notifications = Counter(
        "genreops_alert_notifications", "Alert notifications received.", registry=registry
    )
    recorded = Counter(
        "genreops_alerts_recorded", "Alerts recorded, by status.", ["status"], registry=registry
    )
    refused = Counter(
        "genreops_alert_notifications_refused",
        "Notifications or alerts that could not be read, by reason.",
        ["reason"],
        registry=registry,
    )
    forward_failures = Counter(
        "genreops_alert_forward_failures", "Notifications not forwarded.", registry=registry
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        """One writer and (when retraining is wired) one watcher per serving process."""
        writer = MonitoringWriter(store, settings.monitoring_spool_dir)
        watcher = None
        if retraining is not None and settings.retrain_auto:
            watcher = RetrainWatcher(
                store,
                writer,
                RetrainPolicy.from_settings(settings),
                retraining.start_run,
                retraining.run_state,
                every_seconds=settings.retrain_check_seconds,
                conclude=retraining.conclude,
                record_step=retraining.record_step,
            )
            watcher.start()
        app.state.writer, app.state.watcher = writer, watcher
        try:
            yield
        finally:
            if watcher is not None:
                watcher.stop()
            writer.close()

    app = FastAPI(title="genreops monitor", lifespan=lifespan)

    @app.get("/healthz")
    def healthz(request: Request) -> dict[str, Any]:
        watcher = request.app.state.watcher
        retraining_on = watcher is not None
        policy = {  # what the loop waits for, so a demo can say how long it will take
            "gate_open_seconds": settings.retrain_gate_open_seconds,
            "check_seconds": settings.retrain_check_seconds,
            "cooldown_seconds": settings.retrain_cooldown_seconds,
            "trials": settings.retrain_trials,
            "canary_share": settings.canary_share,
            "canary_min_answers": settings.canary_min_answers,
        }
        return {
            "status": "ok",
            "store": store.display,
            "retraining": retraining_on,
            "policy": policy,
            "retraining_status": watcher.status if watcher is not None else None,
        }

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/alerts")
    def recent_alerts(limit: int = 100) -> list[dict[str, Any]]:
        return store.recent_alerts(max(1, min(limit, 1000)))

    @app.post("/alerts")
    async def receive(request: Request, background: BackgroundTasks) -> JSONResponse:
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > MAX_NOTIFICATION_BYTES:
            refused.labels("too_large").inc()
            return _error(413, f"notification over the {MAX_NOTIFICATION_BYTES}-byte limit")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_NOTIFICATION_BYTES:
                refused.labels("too_large").inc()
                return _error(413, f"notification over the {MAX_NOTIFICATION_BYTES}-byte limit")
        try:
            read = read_notification(bytes(body))
        except NotificationError as error:
            refused.labels("unreadable").inc()
            log.warning("alert notification refused: %s", error)
            return _error(400, str(error))
        notifications.inc()
        state = request.app.state
        ids = [state.writer.submit_alert(row) for row in read.rows]
        for row in read.rows:
            recorded.labels(row["status"]).inc()
        if read.refused:
            refused.labels("bad_alert").inc(len(read.refused))
            log.warning("alerts refused in a notification: %s", "; ".join(read.refused))
        if state.watcher is not None and any(
            row["status"] == "firing" and row["alertname"] in RETRAIN_ALERTS for row in read.rows
        ):
            state.watcher.wake()
        if settings.alert_webhook_url:
            background.add_task(forward, settings.alert_webhook_url, bytes(body), forward_failures)
        return JSONResponse({"recorded": ids, "refused": read.refused})

    return app


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def serve(
    settings: Settings,
    host: str = HOST,
    port: int | None = None,
    retraining: LoopActions | None = None,
) -> None:
    """Run the service in the foreground until interrupted."""
    import uvicorn

    uvicorn.run(
        create_app(settings, retraining=retraining),
        host=host,
        port=port or settings.monitor_port,
        log_level="warning",
        access_log=False,
    )
