"""Dashboard, Grafana provisioning and Prometheus files: well-formed, consistent with each
other, and the alert rules fire (and stay quiet) on synthetic series, checked by promtool.

The queries themselves run against a real Prometheus and PostgreSQL in
tests/integration/test_dashboards.py.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from genreops.platform.observability import (
    ALERT_RULES,
    NATIVE_ALERTMANAGERS,
    NATIVE_TARGETS,
    ObservabilityError,
    render_prometheus_config,
)
from grafana_macros import (
    POSTGRES_DATASOURCES,
    dashboard_queries,
    expand_sql_macros,
    promql_expressions,
    sql_queries,
    substitute_variables,
)

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "dashboards" / "genreops.json"  # Grafana's, not shipped in the package
PROMETHEUS_DIR = ROOT / "configs" / "prometheus"
PROVISIONING = ROOT / "configs" / "grafana" / "provisioning"
DATASOURCES = PROVISIONING / "datasources" / "datasources.yml"
PROVIDERS = PROVISIONING / "dashboards" / "dashboards.yml"
DRIFT_RULE = PROVISIONING / "alerting" / "drift.yml"
COMPOSE = ROOT / "docker-compose.yaml"


def _yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def _dashboard() -> dict[str, Any]:
    return dict(json.loads(DASHBOARD.read_text()))


def _all_panels(panels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    found = []
    for panel in panels:
        found.append(panel)
        found += _all_panels(panel.get("panels", []))
    return found


def _provisioned() -> dict[str, dict[str, Any]]:
    return {source["uid"]: source for source in _yaml(DATASOURCES)["datasources"]}


# --- the dashboard ------------------------------------------------------------------------


def test_dashboard_is_a_grafana_11_dashboard_with_the_promised_panels() -> None:
    board = _dashboard()
    assert board["uid"] == "genreops"
    assert board["schemaVersion"] >= 39
    assert board["id"] is None  # provisioned dashboards carry no database id
    panels = _all_panels(board["panels"])
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    titles = " | ".join(p["title"].lower() for p in panels)
    for promised in (
        "drift gate",
        "drift detector and drifted features",
        "drift tests",
        "predictions per genre",
        "predictions per model",
        "fallback share",
        "p50 / p99",
        "bad inputs by reason",
        "host cpu",
        "host memory",
        "recent drift tests",
        "predictions per model per hour",
        "model events",
        "live accuracy per model version",
        "recall per true genre",
        "labels received per hour",
    ):
        assert promised in titles, promised


def test_dashboard_panels_do_not_overlap_and_fit_the_grid() -> None:
    cells: dict[tuple[int, int], str] = {}
    for panel in _all_panels(_dashboard()["panels"]):
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["w"] > 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]


def test_every_query_names_a_provisioned_datasource_of_its_type() -> None:
    provisioned = _provisioned()
    queries = dashboard_queries(DASHBOARD)
    assert queries
    for query in queries:
        assert query.datasource_uid in provisioned, query
        assert provisioned[query.datasource_uid]["type"] == query.datasource_type, query
    board = _dashboard()
    for panel in _all_panels(board["panels"]):
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] in provisioned, panel["title"]
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert ref_ids and len(ref_ids) == len(set(ref_ids)), panel["title"]


def test_dashboard_queries_cover_prometheus_and_postgresql() -> None:
    expressions = promql_expressions(DASHBOARD)
    assert len(expressions) >= 15
    assert all("$" not in e for e in expressions), "a Grafana variable was left in"
    statements = sql_queries(DASHBOARD)
    assert len(statements) >= 6  # five panels and the model-events annotation
    assert all("$" not in s for s in statements)
    pg = [q for q in dashboard_queries(DASHBOARD) if q.datasource_type in POSTGRES_DATASOURCES]
    for query in pg:
        assert query.format in ("table", "time_series"), query
        if query.format == "time_series":  # Grafana needs a time column, ordered
            assert '"time"' in expand_sql_macros(query.text, _T0, _T1), query.panel
            assert "ORDER BY 1" in query.text or 'ORDER BY "time"' in query.text, query.panel


# --- Grafana variables and PostgreSQL macros, as Grafana expands them ------------------------

_T0 = datetime(2026, 11, 23, 10, 0, 0, tzinfo=UTC)
_T1 = datetime(2026, 11, 23, 16, 0, 0, 250000, tzinfo=UTC)


def test_grafana_variables_are_substituted_in_every_spelling() -> None:
    text = "rate(x[$__rate_interval]) + rate(y[${__rate_interval}]) + z[[[__interval]]]"
    assert substitute_variables(text) == "rate(x[1m]) + rate(y[1m]) + z[15s]"
    assert substitute_variables("rate(x[$__rate_interval])", {"__rate_interval": "2m"}) == (
        "rate(x[2m])"
    )
    assert substitute_variables('up{job=~"tri.*$"}') == 'up{job=~"tri.*$"}'  # regex anchor
    with pytest.raises(ObservabilityError, match=r"\$model"):
        substitute_variables('x{model="$model"}')


def test_sql_macros_expand_like_grafanas_postgresql_engine() -> None:
    sql = (
        "SELECT $__timeGroupAlias(served_at, '1h'), count(*) FROM p WHERE $__timeFilter(served_at)"
    )
    assert expand_sql_macros(sql, _T0, _T1) == (
        'SELECT floor(extract(epoch from served_at)/3600)*3600 AS "time", count(*) FROM p '
        "WHERE served_at BETWEEN '2026-11-23T10:00:00Z' AND '2026-11-23T16:00:00.25Z'"
    )
    # Grafana's compatibility rule: $__timeGroup directly followed by a comma gets the alias
    assert expand_sql_macros("SELECT $__timeGroup(t,'5m'), 1", _T0, _T1) == (
        'SELECT floor(extract(epoch from t)/300)*300 AS "time", 1'
    )
    assert expand_sql_macros("GROUP BY $__timeGroup(t, '5m')", _T0, _T1) == (
        "GROUP BY floor(extract(epoch from t)/300)*300"
    )
    assert expand_sql_macros("$__timeFrom() $__time(at)", _T0, _T1) == (
        "'2026-11-23T10:00:00Z' at AS \"time\""
    )
    with pytest.raises(ObservabilityError, match="unknown Grafana macro"):
        expand_sql_macros("WHERE $__nope(t)", _T0, _T1)
    with pytest.raises(ObservabilityError, match="interval"):
        expand_sql_macros("$__timeGroup(t, 'often')", _T0, _T1)


# --- provisioning -------------------------------------------------------------------------


def test_datasources_provisioning_is_well_formed() -> None:
    config = _yaml(DATASOURCES)
    assert config["apiVersion"] == 1
    sources = config["datasources"]
    assert len({s["uid"] for s in sources}) == len(sources)
    assert len([s for s in sources if s.get("isDefault")]) == 1
    for source in sources:
        assert {"name", "uid", "type", "url"} <= source.keys(), source
    pg = _provisioned()["monitoring-pg"]
    assert pg["type"] in POSTGRES_DATASOURCES
    assert pg["jsonData"]["database"] and pg["user"] and pg["secureJsonData"]["password"]


def test_dashboards_provider_reads_the_folder_compose_mounts() -> None:
    config = _yaml(PROVIDERS)
    assert config["apiVersion"] == 1
    (provider,) = config["providers"]
    assert provider["type"] == "file"
    path = provider["options"]["path"]
    if not COMPOSE.is_file():
        pytest.skip("docker-compose.yaml is not there to compare with")
    grafana = _yaml(COMPOSE)["services"]["grafana"]
    mounts = [str(v).split(":")[:2] for v in grafana.get("volumes", [])]
    assert ["./dashboards", path] in mounts, f"Compose mounts {mounts}, the provider reads {path}"


def test_every_variable_of_the_provisioning_files_is_set_for_grafana_in_compose() -> None:
    if not COMPOSE.is_file():
        pytest.skip("docker-compose.yaml is not there to compare with")
    grafana = _yaml(COMPOSE)["services"]["grafana"]
    names = set(dict(grafana.get("environment") or {}).keys())
    for env_file in grafana.get("env_file", []):
        for line in (ROOT / env_file).read_text().splitlines():
            if "=" in line and not line.lstrip().startswith("#"):
                names.add(line.split("=", 1)[0].strip())
    for path in PROVISIONING.rglob("*.yml"):
        text = "\n".join(line.split("#", 1)[0] for line in path.read_text().splitlines())
        for name in re.findall(r"\$\{(\w+)\}|\$(?!\{)(\w+)", text):
            variable = next(n for n in name if n)
            if variable in ("labels", "values", "value"):  # alert templates, not env vars
                continue
            assert variable in names, f"{path.name} uses ${variable}, Compose does not set it"


def test_grafana_drift_rule_is_consistent() -> None:
    config = _yaml(DRIFT_RULE)
    assert config["apiVersion"] == 1
    (group,) = config["groups"]
    folder = _yaml(PROVIDERS)["providers"][0]["folder"]
    assert group["folder"] == folder and group["name"] and group["interval"]
    (rule,) = group["rules"]
    assert rule["uid"] and rule["title"] and re.fullmatch(r"\d+[smh]", rule["for"])
    ref_ids = [item["refId"] for item in rule["data"]]
    assert rule["condition"] in ref_ids
    provisioned = _provisioned()
    for item in rule["data"]:
        model = item["model"]
        assert model["refId"] == item["refId"]
        if item["datasourceUid"] == "__expr__":
            assert model["expression"] in ref_ids and model["type"] in ("reduce", "threshold")
        else:
            assert item["datasourceUid"] in provisioned
            assert "genreops_drift_gate_open" in model["expr"]
    board = _dashboard()
    assert rule["dashboardUid"] == board["uid"]
    panel = next(p for p in _all_panels(board["panels"]) if p["id"] == rule["panelId"])
    assert panel["title"] == "Drift gate"
    assert rule["labels"]["severity"] and rule["annotations"]["summary"]


# --- Prometheus -----------------------------------------------------------------------------


def test_native_config_is_what_the_renderer_writes_for_the_default_ports() -> None:
    rendered = yaml.safe_load(
        render_prometheus_config(
            NATIVE_TARGETS, rules_path="alerts.yml", alertmanagers=NATIVE_ALERTMANAGERS
        )
    )
    assert _yaml(PROMETHEUS_DIR / "prometheus.yml") == rendered


def test_compose_config_has_the_native_jobs_on_compose_hosts() -> None:
    native = _yaml(PROMETHEUS_DIR / "prometheus.yml")
    compose = _yaml(PROMETHEUS_DIR / "prometheus.compose.yml")
    assert compose["rule_files"] == native["rule_files"] == ["alerts.yml"]

    def jobs(config: dict[str, Any]) -> dict[str, list[str]]:
        return {
            job["job_name"]: [t for s in job["static_configs"] for t in s["targets"]]
            for job in config["scrape_configs"]
        }

    assert jobs(compose) == {
        "prometheus": ["localhost:9090"],
        "triton": ["triton:8002", "triton-2:8002"],
        "node": ["node-exporter:9100"],
        "monitor": ["monitor:9095"],
        "dask": ["dask-scheduler:8787"],
    }
    assert jobs(compose).keys() == jobs(native).keys()

    def alertmanagers(config: dict[str, Any]) -> list[str]:
        (group,) = config["alerting"]["alertmanagers"]
        return [t for s in group["static_configs"] for t in s["targets"]]

    assert alertmanagers(native) == ["127.0.0.1:9093"]
    assert alertmanagers(compose) == ["alertmanager:9093"]


def test_renderer_skips_empty_jobs_and_refuses_a_bare_string() -> None:
    config = yaml.safe_load(
        render_prometheus_config({"triton": ["127.0.0.1:18002"], "node": []}, scrape_interval="5s")
    )
    assert [j["job_name"] for j in config["scrape_configs"]] == ["triton"]
    assert config["global"]["scrape_interval"] == "5s" and "rule_files" not in config
    with pytest.raises(ObservabilityError):
        render_prometheus_config({"triton": "127.0.0.1:8002"})  # type: ignore[dict-item]


def test_alert_rules_have_severity_summary_description_and_for() -> None:
    groups = _yaml(ALERT_RULES)["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    names = {rule["alert"] for rule in rules}
    assert {
        "GenreopsDriftGateOpen",
        "GenreopsRequestErrorRateHigh",
        "GenreopsBadInputShareHigh",
        "GenreopsTritonDown",
    } <= names
    for rule in rules:
        assert re.fullmatch(r"\d+[smh]", rule["for"]), rule["alert"]
        assert rule["labels"]["severity"] in ("info", "warning", "critical"), rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]


def _promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.skip("promtool is missing (apt-get install prometheus)")
    return found


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


def test_promtool_accepts_the_rules_and_both_configs() -> None:
    promtool = _promtool()
    result = _run(promtool, "check", "rules", str(ALERT_RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    for name in ("prometheus.yml", "prometheus.compose.yml"):
        result = _run(promtool, "check", "config", str(PROMETHEUS_DIR / name))
        assert result.returncode == 0, result.stdout + result.stderr


def _description(alert: str, **labels: str) -> str:
    rule = next(
        r for g in _yaml(ALERT_RULES)["groups"] for r in g["rules"] if r.get("alert") == alert
    )
    text = str(rule["annotations"]["description"])
    for name, value in labels.items():
        text = text.replace("{{ $labels.%s }}" % name, value)  # noqa: UP031 (braces)
    return text


def _expect(alert: str, summary: str, **labels: str) -> dict[str, Any]:
    severity = "critical" if alert == "GenreopsTritonDown" else "warning"
    return {
        "exp_labels": {"severity": severity, "service": "genreops", **labels},
        "exp_annotations": {"summary": summary, "description": _description(alert, **labels)},
    }


def test_alerts_fire_after_their_for_duration_and_not_on_healthy_series(tmp_path: Path) -> None:
    """promtool's rule unit tests: synthetic series in, expected alerts (or none) out."""
    promtool = _promtool()
    ensemble = 'model="genre_ensemble",version="1",job="triton",instance="t:8002"'
    gate = 'genreops_drift_gate_open{job="triton",instance="t:8002"}'
    monitor, other = 'job="monitor",instance="m:9095"', 'job="monitor",instance="o:9095"'
    tests = [
        {  # the gate opens: pending for 15 minutes, then firing; a closed gate stays quiet
            "interval": "1m",
            "input_series": [
                {"series": gate, "values": "1x30"},
                {"series": gate.replace("t:8002", "u:8002"), "values": "0x30"},
            ],
            "alert_rule_test": [
                {"eval_time": "10m", "alertname": "GenreopsDriftGateOpen", "exp_alerts": []},
                {
                    "eval_time": "16m",
                    "alertname": "GenreopsDriftGateOpen",
                    "exp_alerts": [
                        _expect(
                            "GenreopsDriftGateOpen",
                            "Drift gate open for 15 minutes on t:8002",
                            instance="t:8002",
                        )
                    ],
                },
            ],
        },
        {  # 10% of requests fail, 20% of files are refused, the fallback keeps failing
            "interval": "1m",
            "input_series": [
                {"series": f"nv_inference_request_success{{{ensemble}}}", "values": "0+90x30"},
                {
                    "series": f'nv_inference_request_failure{{{ensemble},reason="OTHER"}}',
                    "values": "0+10x30",
                },
                {"series": 'genreops_bad_inputs_total{reason="empty"}', "values": "0+15x30"},
                {"series": 'genreops_bad_inputs_total{reason="corrupt"}', "values": "0+5x30"},
                {"series": "genreops_preprocessed_items_total", "values": "0+80x30"},
                {"series": "genreops_fallback_errors_total", "values": "0+1x30"},
            ],
            "alert_rule_test": [
                {"eval_time": "4m", "alertname": "GenreopsRequestErrorRateHigh", "exp_alerts": []},
                {
                    "eval_time": "12m",
                    "alertname": "GenreopsRequestErrorRateHigh",
                    "exp_alerts": [
                        _expect(
                            "GenreopsRequestErrorRateHigh", "10% of genre_ensemble requests fail"
                        )
                    ],
                },
                {"eval_time": "8m", "alertname": "GenreopsBadInputShareHigh", "exp_alerts": []},
                {
                    "eval_time": "16m",
                    "alertname": "GenreopsBadInputShareHigh",
                    "exp_alerts": [
                        _expect(
                            "GenreopsBadInputShareHigh", "20% of the audio files sent are refused"
                        )
                    ],
                },
                {
                    "eval_time": "10m",
                    "alertname": "GenreopsFallbackFailing",
                    "exp_alerts": [
                        _expect(
                            "GenreopsFallbackFailing",
                            "Fallback model calls fail: the champion answers drifted traffic",
                        )
                    ],
                },
            ],
        },
        {  # 1% failures, no traffic at all (0/0) and no fallback error: nothing fires
            "interval": "1m",
            "input_series": [
                {"series": f"nv_inference_request_success{{{ensemble}}}", "values": "0+99x30"},
                {
                    "series": f'nv_inference_request_failure{{{ensemble},reason="OTHER"}}',
                    "values": "0+1x30",
                },
                {"series": 'genreops_bad_inputs_total{reason="empty"}', "values": "0x30"},
                {"series": "genreops_preprocessed_items_total", "values": "0x30"},
                {"series": "genreops_fallback_errors_total", "values": "3x30"},
            ],
            "alert_rule_test": [
                {"eval_time": "20m", "alertname": name, "exp_alerts": []}
                for name in (
                    "GenreopsRequestErrorRateHigh",
                    "GenreopsBadInputShareHigh",
                    "GenreopsFallbackFailing",
                )
            ],
        },
        {  # live accuracy under the minimum for 10 minutes; a version's own low score and
            # the pooled score of another monitor above its minimum stay quiet
            "interval": "1m",
            "input_series": [
                {
                    "series": f'genreops_live_accuracy{{{monitor},model_version="all"}}',
                    "values": "0.9 0.9 0.5x20",
                },
                {
                    "series": f'genreops_live_accuracy{{{monitor},model_version="m/2"}}',
                    "values": "0.1x22",
                },
                {"series": f"genreops_live_accuracy_minimum{{{monitor}}}", "values": "0.6x22"},
                {
                    "series": f'genreops_live_accuracy{{{other},model_version="all"}}',
                    "values": "0.7x22",
                },
                {"series": f"genreops_live_accuracy_minimum{{{other}}}", "values": "0.6x22"},
            ],
            "alert_rule_test": [
                {"eval_time": "8m", "alertname": "GenreopsLiveAccuracyLow", "exp_alerts": []},
                {
                    "eval_time": "14m",
                    "alertname": "GenreopsLiveAccuracyLow",
                    "exp_alerts": [
                        _expect(
                            "GenreopsLiveAccuracyLow",
                            "Live accuracy 50% is below the minimum",
                            instance="m:9095",
                        )
                    ],
                },
            ],
        },
        {  # Triton stops answering scrapes: critical after a minute
            "interval": "30s",
            "input_series": [
                {"series": 'up{job="triton",instance="t:8002"}', "values": "1 1 0 0 0 0 0 0"},
                {"series": 'up{job="node",instance="n:9100"}', "values": "0 0 0 0 0 0 0 0"},
            ],
            "alert_rule_test": [
                {"eval_time": "1m", "alertname": "GenreopsTritonDown", "exp_alerts": []},
                {
                    "eval_time": "3m",
                    "alertname": "GenreopsTritonDown",
                    "exp_alerts": [
                        _expect(
                            "GenreopsTritonDown",
                            "Triton metrics endpoint t:8002 is down",
                            instance="t:8002",
                            job="triton",
                        )
                    ],
                },
            ],
        },
    ]
    spec = {"rule_files": [str(ALERT_RULES)], "evaluation_interval": "1m", "tests": tests}
    path = tmp_path / "alerts_test.yml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    result = _run(promtool, "test", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
