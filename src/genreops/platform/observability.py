"""Prometheus and node exporter as plain processes, and the queries inside our dashboards.

The native stack runs Debian's ``prometheus`` (scraping Triton's metrics port, itself and,
when installed, ``prometheus-node-exporter`` for host CPU and memory) with the alert rules of
``configs/prometheus/alerts.yml``. Ports are configurable, so the scrape configuration is
rendered here rather than copied: ``configs/prometheus/prometheus.yml`` is exactly what
``render_prometheus_config(NATIVE_TARGETS, rules_path="alerts.yml")`` produces.

Grafana cannot run on this machine, so the dashboard is checked by running its queries
elsewhere: ``promql_expressions`` and ``sql_queries`` pull every query out of a dashboard
JSON and replace Grafana's variables (``$__rate_interval``...) and PostgreSQL macros
(``$__timeFilter(col)``...) the way Grafana does, giving text a real Prometheus or
PostgreSQL can run.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from genreops.core.errors import GenreopsError
from genreops.core.processes import http_answers, port_in_use, start_process, stop_process
from genreops.core.resources import config_file

HOST = "127.0.0.1"  # the native stack serves loopback only
ALERT_RULES = config_file("prometheus", "alerts.yml")  # shipped as genreops.configs

# Job names: the alert rules and the dashboard select on them (``up{job="triton"}``).
JOB_PROMETHEUS = "prometheus"
JOB_TRITON = "triton"
JOB_NODE = "node"
NATIVE_TARGETS: dict[str, list[str]] = {
    JOB_PROMETHEUS: [f"{HOST}:9090"],
    JOB_TRITON: [f"{HOST}:8002"],
    JOB_NODE: [f"{HOST}:9100"],
}

PROMETHEUS_BINARIES = ("prometheus",)
NODE_EXPORTER_BINARIES = ("prometheus-node-exporter", "node_exporter")  # Debian, upstream
PROMETHEUS_HINT = "install Debian's package: apt-get install prometheus (or run `make setup`)"
NODE_EXPORTER_HINT = (
    "install Debian's package: apt-get install prometheus-node-exporter (or run `make setup`)"
)

PROMETHEUS_DATASOURCE = "prometheus"  # datasource types as Grafana names them
POSTGRES_DATASOURCES = ("grafana-postgresql-datasource", "postgres")


class ObservabilityError(GenreopsError):
    """Prometheus or the node exporter cannot be found, started or asked; or a bad query."""


# --- Prometheus configuration ---------------------------------------------------------------


def render_prometheus_config(
    targets: Mapping[str, Sequence[str]],
    *,
    rules_path: str | Path | None = None,
    scrape_interval: str = "15s",
    evaluation_interval: str = "15s",
) -> str:
    """A ``prometheus.yml`` with one static scrape job per entry of ``targets``.

    ``targets`` maps a job name to ``host:port`` addresses (``{"triton": ["127.0.0.1:8002"]}``);
    a relative ``rules_path`` is resolved by Prometheus next to the config file.
    """
    jobs = []
    for job, addresses in targets.items():
        if not addresses:
            continue
        if isinstance(addresses, str):
            raise ObservabilityError(f"targets of job {job!r} must be a list of host:port")
        jobs.append({"job_name": job, "static_configs": [{"targets": list(addresses)}]})
    config: dict[str, Any] = {
        "global": {"scrape_interval": scrape_interval, "evaluation_interval": evaluation_interval}
    }
    if rules_path is not None:
        config["rule_files"] = [str(rules_path)]
    config["scrape_configs"] = jobs
    header = "# Rendered by genreops.platform.observability.render_prometheus_config.\n"
    return header + yaml.safe_dump(config, sort_keys=False, default_flow_style=False)


# --- processes --------------------------------------------------------------------------------


def _find(names: Sequence[str], hint: str) -> str:
    for name in names:
        found = shutil.which(name)
        if found:
            return found
        if Path(f"/usr/bin/{name}").is_file():  # PATH without /usr/bin (cron, some services)
            return f"/usr/bin/{name}"
    raise ObservabilityError(f"{names[0]} is not installed: {hint}")


def find_prometheus() -> str:
    """The ``prometheus`` binary; ObservabilityError saying how to install it otherwise."""
    return _find(PROMETHEUS_BINARIES, PROMETHEUS_HINT)


def find_node_exporter() -> str:
    """The node exporter binary (Debian's ``prometheus-node-exporter`` or ``node_exporter``)."""
    return _find(NODE_EXPORTER_BINARIES, NODE_EXPORTER_HINT)


def _check_port(name: str, host: str, port: int) -> None:
    if not 0 < port < 65536:
        raise ObservabilityError(f"cannot start {name}: {port} is not a valid port")
    if port_in_use(host, port):
        raise ObservabilityError(
            f"cannot start {name}: {host}:{port} is already in use (another {name} or "
            "service listens there; stop it or pick another port)"
        )


def start_prometheus(
    config_path: Path,
    data_dir: Path,
    *,
    port: int = 9090,
    host: str = HOST,
    log_path: Path | None = None,
    retention: str = "15d",
    timeout: float = 60.0,
) -> subprocess.Popen[bytes]:
    """Run Prometheus on ``config_path`` and wait until ``/-/ready`` says so.

    ``--web.enable-lifecycle`` lets the stack reload a rewritten config with
    ``POST /-/reload``. A config Prometheus refuses fails here with the end of its log.
    """
    binary = find_prometheus()
    _check_port("Prometheus", host, port)
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    url = f"http://{host}:{port}"
    argv = [
        binary,
        f"--config.file={Path(config_path).resolve()}",
        f"--storage.tsdb.path={data_dir.resolve()}",
        f"--storage.tsdb.retention.time={retention}",
        f"--web.listen-address={host}:{port}",
        "--web.enable-lifecycle",
    ]
    try:
        return start_process(
            "Prometheus",
            argv,
            ready=lambda: http_answers(f"{url}/-/ready", expect="Prometheus"),
            url=url,
            log_path=log_path,
            timeout=timeout,
        )
    except GenreopsError as error:
        raise ObservabilityError(str(error)) from error


def start_node_exporter(
    *,
    port: int = 9100,
    host: str = HOST,
    log_path: Path | None = None,
    timeout: float = 30.0,
) -> subprocess.Popen[bytes]:
    """Run the node exporter (host CPU, memory, disks) and wait until it serves metrics."""
    binary = find_node_exporter()
    _check_port("the node exporter", host, port)
    url = f"http://{host}:{port}"
    try:
        return start_process(
            "node exporter",
            [binary, f"--web.listen-address={host}:{port}"],
            ready=lambda: http_answers(f"{url}/metrics", expect="# HELP"),
            url=url,
            log_path=log_path,
            timeout=timeout,
        )
    except GenreopsError as error:
        raise ObservabilityError(str(error)) from error


def stop(process: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    """Stop Prometheus or the node exporter (SIGTERM, then SIGKILL); idempotent."""
    stop_process(process, timeout=timeout)


# --- Prometheus HTTP API ----------------------------------------------------------------------


def prometheus_api(url: str, path: str, params: Mapping[str, str] | None = None) -> Any:
    """``data`` of one Prometheus API call (``/api/v1/query``, ``/api/v1/rules``...).

    An answer with ``status: error`` (a bad query, say) raises ObservabilityError quoting it.
    """
    query = "?" + urllib.parse.urlencode(dict(params)) if params else ""
    full = url.rstrip("/") + path + query
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via a proxy
    try:
        with opener.open(full, timeout=30) as response:
            body = response.read()
    except urllib.error.HTTPError as error:
        body = error.read()
    except (OSError, ValueError) as error:
        raise ObservabilityError(f"cannot reach Prometheus at {url}: {error}") from error
    try:
        answer = json.loads(body)
    except ValueError as error:
        raise ObservabilityError(f"Prometheus at {url} answered {path} with non-JSON") from error
    if answer.get("status") != "success":
        raise ObservabilityError(
            f"Prometheus refused {path} {dict(params or {})}: "
            f"{answer.get('errorType', '')}: {answer.get('error', answer)}"
        )
    return answer.get("data")


def instant_query(url: str, expr: str) -> list[dict[str, Any]]:
    """The series an instant query returns now (``[]`` when none matched)."""
    data = prometheus_api(url, "/api/v1/query", {"query": expr})
    if not isinstance(data, dict):
        return []
    result = data.get("result", [])
    if data.get("resultType") in ("scalar", "string"):
        return [{"metric": {}, "value": result}]
    return list(result)


# --- queries inside a Grafana dashboard -------------------------------------------------------


@dataclass(frozen=True)
class PanelQuery:
    """One query of a dashboard: where it sits, which datasource runs it and its raw text."""

    panel: str  # the panel's title, or "annotation: NAME"
    ref_id: str
    datasource_type: str
    datasource_uid: str
    text: str  # PromQL or SQL, as written in the dashboard
    format: str = ""  # SQL only: "table" or "time_series"


def _load(dashboard: Mapping[str, Any] | str | Path) -> Mapping[str, Any]:
    if isinstance(dashboard, Mapping):
        return dashboard
    return dict(json.loads(Path(dashboard).read_text()))


def _panels(panels: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Every panel, also those nested in (collapsed) rows."""
    found: list[Mapping[str, Any]] = []
    for panel in panels:
        found.append(panel)
        found += _panels(panel.get("panels", []))
    return found


def _datasource(*candidates: Any) -> tuple[str, str]:
    for candidate in candidates:
        if isinstance(candidate, Mapping) and (candidate.get("uid") or candidate.get("type")):
            return str(candidate.get("type", "")), str(candidate.get("uid", ""))
    return "", ""


def dashboard_queries(dashboard: Mapping[str, Any] | str | Path) -> list[PanelQuery]:
    """Every query of the dashboard's panels and annotations, unchanged."""
    board = _load(dashboard)
    found: list[PanelQuery] = []
    for panel in _panels(board.get("panels", [])):
        for target in panel.get("targets", []):
            kind, uid = _datasource(target.get("datasource"), panel.get("datasource"))
            text = target.get("expr") if kind == PROMETHEUS_DATASOURCE else target.get("rawSql")
            if text:
                found.append(
                    PanelQuery(
                        panel=str(panel.get("title", "")),
                        ref_id=str(target.get("refId", "")),
                        datasource_type=kind,
                        datasource_uid=uid,
                        text=str(text),
                        format=str(target.get("format", "")),
                    )
                )
    for annotation in board.get("annotations", {}).get("list", []):
        target = annotation.get("target") or {}
        kind, uid = _datasource(target.get("datasource"), annotation.get("datasource"))
        text = target.get("rawSql") or annotation.get("rawQuery") or target.get("expr")
        if text and kind not in ("grafana", "datasource"):
            found.append(
                PanelQuery(
                    panel=f"annotation: {annotation.get('name', '')}",
                    ref_id=str(target.get("refId", "")),
                    datasource_type=kind,
                    datasource_uid=uid,
                    text=str(text),
                    format=str(target.get("format", "table")),
                )
            )
    return found


# Values Grafana would give its global variables for a 6 h range and a 15 s scrape interval.
GRAFANA_VARIABLES: dict[str, str] = {
    "__rate_interval": "1m",
    "__interval": "15s",
    "__interval_ms": "15000",
    "__range": "6h",
    "__range_s": "21600",
    "__range_ms": "21600000",
}
_VARIABLE = re.compile(r"\$\{(\w+)(?::[^}]*)?\}|\[\[(\w+)\]\]|\$(\w+)(?!\w)(?!\s*\()")


def substitute_variables(text: str, variables: Mapping[str, str] | None = None) -> str:
    """Replace Grafana variables (``$v``, ``${v}``, ``${v:fmt}``, ``[[v]]``) by their values.

    Macro calls (``$__timeFilter(...)``) are left for ``expand_sql_macros``; any other
    unknown variable raises ObservabilityError, so a query never reaches a server with one.
    """
    values = {**GRAFANA_VARIABLES, **(variables or {})}

    def replace(match: re.Match[str]) -> str:
        name = next(group for group in match.groups() if group)
        if name not in values:
            raise ObservabilityError(f"unknown Grafana variable ${name} in: {text}")
        return values[name]

    return _VARIABLE.sub(replace, text)


def promql_expressions(
    dashboard: Mapping[str, Any] | str | Path, variables: Mapping[str, str] | None = None
) -> list[str]:
    """Every PromQL query of the dashboard, Grafana variables substituted."""
    return [
        substitute_variables(query.text, variables)
        for query in dashboard_queries(dashboard)
        if query.datasource_type == PROMETHEUS_DATASOURCE
    ]


def sql_queries(
    dashboard: Mapping[str, Any] | str | Path,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    variables: Mapping[str, str] | None = None,
) -> list[str]:
    """Every PostgreSQL query of the dashboard as plain SQL for the range ``start``-``end``.

    The default range is the dashboard's default: the last 6 hours.
    """
    end = end or datetime.now(UTC)
    start = start or end - timedelta(hours=6)
    return [
        expand_sql_macros(substitute_variables(query.text, variables), start, end)
        for query in dashboard_queries(dashboard)
        if query.datasource_type in POSTGRES_DATASOURCES
    ]


# Grafana's PostgreSQL macro engine (pkg/tsdb/grafana-postgresql-datasource/macros.go).
_MACRO = re.compile(r"\$([_a-zA-Z0-9]+)\(([^\)]*)\)")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def _seconds(interval: str) -> float:
    match = re.fullmatch(r"\s*'?(\d+(?:\.\d+)?)(ms|s|m|h|d|w)'?\s*", interval)
    if match is None:
        raise ObservabilityError(f"cannot parse the interval {interval!r} of a SQL macro")
    return float(match.group(1)) * _UNITS[match.group(2)]


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(value)


def _rfc3339(moment: datetime) -> str:
    """Go's RFC3339Nano in UTC, as Grafana writes times into SQL."""
    moment = moment.astimezone(UTC)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if moment.microsecond:
        text += f".{moment.microsecond:06d}".rstrip("0")
    return text + "Z"


def expand_sql_macros(sql: str, start: datetime, end: datetime) -> str:
    """Grafana's PostgreSQL macros (``$__timeFilter(col)``, ``$__timeGroupAlias(col,'1h')``...)
    replaced by the SQL Grafana sends for the time range ``start``-``end``."""

    def expand(match: re.Match[str]) -> str:
        name = match.group(1)
        args = [arg.strip() for arg in match.group(2).split(",")]
        if name == "__timeGroup" and sql[match.end() : match.end() + 1] == ",":
            name = "__timeGroupAlias"  # Grafana's pre-5.3 compatibility rule
        return _macro(name, args, start, end)

    expanded = _MACRO.sub(expand, sql)
    left = re.search(r"\$\w+", expanded)
    if left:
        raise ObservabilityError(f"unknown Grafana macro or variable {left.group(0)} in: {sql}")
    return expanded


def _macro(name: str, args: list[str], start: datetime, end: datetime) -> str:
    column = args[0] if args and args[0] else ""
    needs_column = name not in ("__timeFrom", "__timeTo")
    if needs_column and not column:
        raise ObservabilityError(f"macro ${name} needs a time column")
    if name == "__time":
        return f'{column} AS "time"'
    if name == "__timeEpoch":
        return f'extract(epoch from {column}) as "time"'
    if name == "__timeFilter":
        return f"{column} BETWEEN '{_rfc3339(start)}' AND '{_rfc3339(end)}'"
    if name == "__timeFrom":
        return f"'{_rfc3339(start)}'"
    if name == "__timeTo":
        return f"'{_rfc3339(end)}'"
    if name in ("__timeGroup", "__timeGroupAlias"):
        if len(args) < 2:
            raise ObservabilityError(f"macro ${name} needs a time column and an interval")
        seconds = _number(_seconds(args[1]))
        group = f"floor(extract(epoch from {column})/{seconds})*{seconds}"
        return group + (' AS "time"' if name == "__timeGroupAlias" else "")
    if name == "__unixEpochFilter":
        first, last = int(start.timestamp()), int(end.timestamp())
        return f"{column} >= {first} AND {column} <= {last}"
    raise ObservabilityError(f"unknown Grafana macro ${name}")
