"""The Grafana dashboard and the alert rules, checked without Grafana against real servers.

A real Triton serves the published ensemble and gets clean traffic, drifted traffic (the
gate opens), bad files (bad-input counters and failed requests) and, with its fallback model
unloaded, drifted traffic again (fallback errors); then the clips' folders come back as
labels, three of them corrected. A real Prometheus (Debian's, free port, 1 s scrapes,
configs/prometheus/alerts.yml loaded with every ``for:`` at 0 s) scrapes it, a real node
exporter, the monitor service (live-quality gauges) and itself, and sends firing alerts to a
real Alertmanager, which delivers them to the monitor. Then every PromQL expression of the
dashboard and of both rule files must evaluate and return series, every alert must fire while
its condition holds (Triton down at the very end, by stopping it) and be recorded by the
monitor in the store, and every SQL query of the dashboard must run on the monitoring store,
which that Triton filled on the machine's PostgreSQL.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from genreops.core.settings import get_settings
from genreops.data.synth import render_corpus
from genreops.monitoring.feedback import record_labels
from genreops.monitoring.quality import live_quality
from genreops.monitoring.store import MonitoringStore
from genreops.platform.observability import (
    ALERT_RULES,
    ObservabilityError,
    render_alert_rules,
    render_alertmanager_config,
    render_prometheus_config,
    start_alertmanager,
    start_node_exporter,
    start_prometheus,
    stop,
)
from genreops.serving.client import Answer, EnsembleClient, folder_labels, predict
from genreops.serving.publish import MODELS, record_event
from genreops.serving.triton.control import unload_model
from genreops.serving.triton.server import TritonPorts, start_triton, stop_triton
from grafana_macros import (
    POSTGRES_DATASOURCES,
    dashboard_queries,
    expand_sql_macros,
    promql_expressions,
    substitute_variables,
)
from helpers import free_port, postgres_url, start_monitor, wait_until
from prometheus_http import instant_query, prometheus_api

if TYPE_CHECKING:
    from conftest import PublishedEnsemble

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "dashboards" / "genreops.json"  # Grafana's, not shipped in the package
DRIFT_RULE = ROOT / "configs" / "grafana" / "provisioning" / "alerting" / "drift.yml"
# Triton's latency quantiles (the p50/p99 panel) exist only with this flag.
SUMMARY_LATENCIES = "--metrics-config=summary_latencies=true"
ACTIVE = ("pending", "firing")


@dataclass
class Observed:
    prometheus: str  # base URL
    ports: TritonPorts
    triton: subprocess.Popen[bytes]
    champion: str  # model label of the champion
    database_url: str | None  # the monitoring store Triton wrote to (PostgreSQL), if any
    store_url: str  # that store, or the SQLite file Triton wrote to without PostgreSQL
    alertmanager: str  # base URL
    answered: int = 0  # successful answers, each one a stored prediction
    fallback_failed: list[Answer] = field(default_factory=list)
    answers: list[Answer] = field(default_factory=list)  # every answer, in order


def _value(observed: Observed, expr: str) -> float | None:
    """The value of a one-series instant query, None while it has no series."""
    series = instant_query(observed.prometheus, expr)
    return float(series[0]["value"][1]) if series else None


def _alert_rules() -> list[dict[str, Any]]:
    return [rule for g in yaml.safe_load(ALERT_RULES.read_text())["groups"] for rule in g["rules"]]


def _bad_files(folder: Path) -> list[str]:
    """One file per refusal reason the preprocessor reports."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "empty.wav").write_bytes(b"")
    (folder / "corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt garbage")
    (folder / "notes.txt").write_text("not audio at all")
    render_corpus(folder / "short", per_genre=1, seconds=1.0, seed=3, genres=["rock"])
    short = next((folder / "short").glob("*/*.wav"))
    return [str(folder / n) for n in ("empty.wav", "corrupt.wav", "notes.txt")] + [str(short)]


def _postgres_url(request: pytest.FixtureRequest) -> str | None:
    """A fresh schema on the machine's PostgreSQL, or None (the SQL test then skips)."""
    try:
        make_schema = request.getfixturevalue("make_schema")
    except pytest.skip.Exception:
        return None
    return postgres_url(make_schema())


def _rules_firing_at_once(path: Path) -> Path:
    """The shipped rules with every ``for:`` at 0 s: an alert fires (and reaches Alertmanager)
    as soon as its condition holds. The durations themselves are promtool-tested."""
    path.write_text(render_alert_rules("0s"))
    return path


@pytest.fixture(scope="module")
def observed(
    published_ensemble: PublishedEnsemble,
    tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
) -> Iterator[Observed]:
    base = tmp_path_factory.mktemp("dashboards")
    database_url = _postgres_url(request)
    # the store Triton writes to: the PostgreSQL schema, else the SQLite file of its home
    store_url = database_url or f"sqlite:///{base / 'home' / 'monitoring.db'}"
    with contextlib.ExitStack() as stack:
        node_port, prometheus_port = free_port(), free_port()
        monitor_port, alertmanager_port = free_port(), free_port()
        node = start_node_exporter(port=node_port, log_path=base / "node-exporter.log")
        stack.callback(stop, node)
        # any wrong labeled answer fires GenreopsLiveAccuracyLow
        monitor = start_monitor(
            base,
            monitor_port,
            store_url,
            GENREOPS_MIN_LIVE_ACCURACY="1.0",
            GENREOPS_QUALITY_MIN_ANSWERS="5",
        )
        stack.callback(stop, monitor)
        alertmanager_config = base / "alertmanager.yml"
        alertmanager_config.write_text(
            render_alertmanager_config(
                f"http://127.0.0.1:{monitor_port}/alerts", group_wait="1s", group_interval="5s"
            )
        )
        alertmanager = start_alertmanager(
            alertmanager_config,
            base / "alertmanager",
            port=alertmanager_port,
            log_path=base / "alertmanager.log",
        )
        stack.callback(stop, alertmanager)

        ports = TritonPorts(http=free_port(), grpc=free_port(), metrics=free_port())
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("GENREOPS_HOME", str(base / "home"))  # its own drift state and spool
            if database_url:
                patch.setenv("GENREOPS_DATABASE_URL", database_url)
            triton = start_triton(
                published_ensemble.repository,
                state_dir=published_ensemble.home,  # reuses the backends copied there
                ports=ports,
                log_path=base / "triton.log",
                load_models=list(MODELS),  # the fallback is not in the ensemble graph (BLS)
                extra_args=[SUMMARY_LATENCIES],
            )
        stack.callback(stop_triton, triton)

        config = base / "prometheus.yml"
        config.write_text(
            render_prometheus_config(
                {
                    "prometheus": [f"127.0.0.1:{prometheus_port}"],
                    "triton": [f"127.0.0.1:{ports.metrics}"],
                    "node": [f"127.0.0.1:{node_port}"],
                    "monitor": [f"127.0.0.1:{monitor_port}"],
                },
                rules_path=_rules_firing_at_once(base / "alerts.yml"),
                scrape_interval="1s",
                evaluation_interval="1s",
                alertmanagers=[f"127.0.0.1:{alertmanager_port}"],
            )
        )
        prometheus = start_prometheus(
            config, base / "tsdb", port=prometheus_port, log_path=base / "prometheus.log"
        )
        stack.callback(stop, prometheus)

        observed = Observed(
            prometheus=f"http://127.0.0.1:{prometheus_port}",
            ports=ports,
            triton=triton,
            champion=published_ensemble.published.champion.label,
            database_url=database_url,
            store_url=store_url,
            alertmanager=f"http://127.0.0.1:{alertmanager_port}",
        )
        client = EnsembleClient(ports.grpc_url, "grpc")

        def ask(paths: list[str]) -> list[Answer]:
            answers = predict(paths, client, labels_from_folders=True)
            observed.answered += sum(a.ok for a in answers)
            observed.answers += answers
            return answers

        assert all(a.ok for a in ask(published_ensemble.clean))
        deadline = time.monotonic() + 240
        while not any(a.drift for a in ask(published_ensemble.drifted)):
            assert time.monotonic() < deadline, "the drift gate never opened on drifted audio"
        # The drift worker tests asynchronously; the next request after a test refreshes the
        # drift gauges. Keep the shift going until Prometheus has scraped them.
        shared = 'count(genreops_drift_share{job="triton"})'

        def drift_gauges_scraped() -> bool:
            ask(published_ensemble.drifted[:1])
            return _value(observed, shared) is not None

        assert wait_until(drift_gauges_scraped, timeout=120, every=1.0)
        # Bad files: enough of them that both error-share alerts' conditions hold. The series
        # exist from the start at 0, so rate() sees these increments once Prometheus has them.
        bad = _bad_files(base / "bad")
        refused = sum(not a.ok for a in ask(bad))
        seen = 'sum(genreops_bad_inputs_total{job="triton"})'
        assert wait_until(lambda: (_value(observed, seen) or 0) >= refused, timeout=60)
        ask([bad[i % len(bad)] for i in range(max(8, observed.answered // 3))])
        # The fallback goes away while the gate is open: the champion answers instead.
        unload_model(ports.http_url, "fallback")
        observed.fallback_failed = ask(published_ensemble.drifted[:1])
        seen = 'sum(genreops_fallback_errors_total{job="triton"})'
        assert wait_until(lambda: (_value(observed, seen) or 0) >= 1, timeout=60)
        observed.fallback_failed += ask(published_ensemble.drifted[1:10])
        if database_url:
            entry = published_ensemble.published.history[-1]
            record_event(database_url, base / "spool", "publish", entry)
        with MonitoringStore(store_url) as store:  # ground truth: the clips' folders...
            labels = folder_labels(a for a in observed.answers if a.ok)
            # ...and, later, three corrections: those answers are now wrong for sure
            genres = sorted({genre for _, genre in labels})
            labels += [
                (clip, genres[(genres.index(g) + 1) % len(genres)]) for clip, g in labels[:3]
            ]
            report = record_labels(store, base / "spool", labels, "folders", check_known=False)
            assert report.stored == len(labels)
        yield observed
    get_settings.cache_clear()


# --- tests without the served ensemble --------------------------------------------------------


def test_start_prometheus_quotes_its_log_when_the_config_is_broken(tmp_path: Path) -> None:
    config = tmp_path / "prometheus.yml"
    config.write_text("scrape_configs:\n  - job_name: x\n    static_configs: [oops]\n")
    with pytest.raises(ObservabilityError, match=r"(?s)exited with code.*prometheus\.yml"):
        start_prometheus(config, tmp_path / "data", port=free_port(), log_path=tmp_path / "p.log")


def test_start_prometheus_refuses_a_port_in_use(tmp_path: Path) -> None:
    config = tmp_path / "prometheus.yml"
    config.write_text(render_prometheus_config({}))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        with pytest.raises(ObservabilityError, match="already in use"):
            start_prometheus(config, tmp_path / "data", port=port)


# --- Prometheus ---------------------------------------------------------------------------


def test_prometheus_scrapes_triton_the_node_exporter_the_monitor_and_itself(
    observed: Observed,
) -> None:
    def health() -> dict[str, str]:
        data = prometheus_api(observed.prometheus, "/api/v1/targets")
        return {t["labels"]["job"]: t["health"] for t in data["activeTargets"]}

    assert wait_until(lambda: set(health().values()) == {"up"}, timeout=60), health()
    assert health().keys() == {"prometheus", "triton", "node", "monitor"}


def test_every_dashboard_expression_returns_series(observed: Observed) -> None:
    expressions = promql_expressions(DASHBOARD)
    assert len(expressions) >= 15

    def empty() -> list[str]:
        return [e for e in expressions if not instant_query(observed.prometheus, e)]

    wait_until(lambda: not empty(), timeout=90)  # a few scrapes after the traffic
    assert empty() == []  # also: instant_query raised on none of them (no PromQL error)


def test_alert_rules_are_loaded_and_evaluate_without_error(observed: Observed) -> None:
    expected = {rule["alert"] for rule in _alert_rules()}

    def rules() -> dict[str, dict[str, Any]]:
        data = prometheus_api(observed.prometheus, "/api/v1/rules")
        return {r["name"]: r for group in data["groups"] for r in group["rules"]}

    assert wait_until(lambda: all(r["health"] == "ok" for r in rules().values()), timeout=30)
    loaded = rules()
    assert loaded.keys() == expected
    assert all(not rule.get("lastError") for rule in loaded.values())


def _active_alerts(observed: Observed) -> dict[str, dict[str, Any]]:
    data = prometheus_api(observed.prometheus, "/api/v1/alerts")
    return {a["labels"]["alertname"]: a for a in data["alerts"] if a["state"] in ACTIVE}


def test_each_alert_goes_active_while_its_condition_holds(observed: Observed) -> None:
    """Gate open, failing requests, refused files, failing fallback, wrong labeled answers:
    each rule's expression returns series and its alert is active."""
    rules = {r["alert"]: r for r in _alert_rules() if r["alert"] != "GenreopsTritonDown"}
    assert wait_until(lambda: rules.keys() <= _active_alerts(observed).keys(), timeout=60), (
        f"active: {sorted(_active_alerts(observed))}"
    )
    active = _active_alerts(observed)
    for name, rule in rules.items():
        assert instant_query(observed.prometheus, rule["expr"]), name
        assert active[name]["labels"]["severity"] == rule["labels"]["severity"]
        assert active[name]["annotations"]["summary"]


def _recorded_alerts(observed: Observed) -> dict[str, dict[str, Any]]:
    """What the monitor service recorded: the latest notification of each alert."""
    with MonitoringStore(observed.store_url) as store:
        rows = store.recent_alerts(1000)
    return {row["alertname"]: row for row in reversed(rows)}


def test_alertmanager_delivers_prometheus_alerts_to_the_receivers_record(
    observed: Observed,
) -> None:
    """Prometheus -> Alertmanager -> the monitor service -> the store's alerts table."""
    expected = {r["alert"] for r in _alert_rules() if r["alert"] != "GenreopsTritonDown"}
    assert wait_until(lambda: expected <= _recorded_alerts(observed).keys(), timeout=90), (
        f"recorded: {sorted(_recorded_alerts(observed))}"
    )
    recorded = _recorded_alerts(observed)
    for name in expected:
        row = recorded[name]
        assert (row["source"], row["receiver"], row["status"]) == (
            "alertmanager", "genreops-monitor", "firing"
        ), row  # fmt: skip
        assert row["summary"] and row["starts_at"] is not None and row["fingerprint"]
    low = recorded["GenreopsLiveAccuracyLow"]
    assert low["labels"]["instance"] and "below the minimum" in low["summary"]
    alertmanager_sees = {a["labels"]["alertname"] for a in _alertmanager_alerts(observed)}
    assert expected <= alertmanager_sees


def _alertmanager_alerts(observed: Observed) -> list[dict[str, Any]]:
    import json
    import urllib.request

    with urllib.request.urlopen(f"{observed.alertmanager}/api/v2/alerts", timeout=5) as answer:
        return list(json.loads(answer.read()))


def test_the_fallback_failure_was_answered_by_the_champion(observed: Observed) -> None:
    """The condition behind GenreopsFallbackFailing, seen by a client: no request failed."""
    answers = observed.fallback_failed
    assert answers and all(a.ok for a in answers)
    assert {a.model for a in answers} == {observed.champion}


def test_grafana_drift_rule_query_sees_the_open_gate(observed: Observed) -> None:
    (group,) = yaml.safe_load(DRIFT_RULE.read_text())["groups"]
    (rule,) = group["rules"]
    data = {item["refId"]: item for item in rule["data"]}
    query = data["A"]["model"]
    assert data["A"]["datasourceUid"] == "prometheus"
    series = instant_query(observed.prometheus, substitute_variables(query["expr"]))
    assert series
    # B takes the last value, C compares it like Grafana's threshold expression would
    threshold = data["C"]["model"]["conditions"][0]["evaluator"]
    assert threshold["type"] == "gt"
    assert any(float(s["value"][1]) > threshold["params"][0] for s in series)


# --- the monitoring store (PostgreSQL) ------------------------------------------------------


def _numeric(value: Any) -> bool:
    return value is None or (
        isinstance(value, int | float | Decimal) and not isinstance(value, bool)
    )


def test_every_sql_query_runs_on_the_monitoring_store(observed: Observed) -> None:
    if observed.database_url is None:
        pytest.skip("no PostgreSQL at 127.0.0.1:5432 for the monitoring store")
    store = MonitoringStore(observed.database_url)
    try:
        assert wait_until(lambda: store.count("predictions") == observed.answered, timeout=90), (
            f"{store.count('predictions')} stored, {observed.answered} answered"
        )
        assert store.count("drift_tests") >= 1 and store.count("model_events") == 1
        queries = [
            q for q in dashboard_queries(DASHBOARD) if q.datasource_type in POSTGRES_DATASOURCES
        ]
        assert len(queries) >= 10
        end = datetime.now(UTC) + timedelta(seconds=5)
        with store.engine.connect() as connection:
            for query in queries:
                sql = expand_sql_macros(
                    substitute_variables(query.text), end - timedelta(hours=6), end
                )
                result = connection.exec_driver_sql(sql)
                columns = list(result.keys())
                rows = result.fetchall()
                assert rows, f"{query.panel}: no rows from\n{sql}"
                if query.panel == "Live accuracy per model version":
                    # the panel's SQL scores what genreops quality scores
                    shown = {row[0]: (row[1], row[2]) for row in rows}
                    expected = {
                        q.model_version: (q.labeled, q.correct)
                        for q in live_quality(store.labeled_predictions())
                        if q.model_version != "all"
                    }
                    assert shown == expected and len(expected) >= 2
                if query.format != "time_series":
                    continue
                # What Grafana needs of a time series: a time column, sorted, numeric values
                assert "time" in columns, f"{query.panel}: {columns}"
                at = columns.index("time")
                times = [row[at] for row in rows]
                assert times == sorted(times), query.panel
                for row in rows:
                    values = [
                        v for c, v in zip(columns, row, strict=True) if c not in ("time", "metric")
                    ]
                    assert all(_numeric(v) for v in values), f"{query.panel}: {row}"
    finally:
        store.close()


# --- last: Triton goes away -------------------------------------------------------------------


def test_triton_down_fires_the_server_down_alert(observed: Observed) -> None:
    stop_triton(observed.triton)
    (rule,) = [r for r in _alert_rules() if r["alert"] == "GenreopsTritonDown"]
    assert wait_until(lambda: "GenreopsTritonDown" in _active_alerts(observed), timeout=60)
    series = instant_query(observed.prometheus, rule["expr"])
    assert [s["metric"]["job"] for s in series] == ["triton"]
    alert = _active_alerts(observed)["GenreopsTritonDown"]
    assert alert["labels"]["severity"] == "critical"
    assert f"127.0.0.1:{observed.ports.metrics}" in alert["annotations"]["summary"]
    assert wait_until(lambda: "GenreopsTritonDown" in _recorded_alerts(observed), timeout=60)
    assert _recorded_alerts(observed)["GenreopsTritonDown"]["severity"] == "critical"
