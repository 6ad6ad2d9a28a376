"""Grafana's side of our dashboards, for tests: the queries a dashboard holds, and Grafana's
variables (``$__rate_interval``...) and PostgreSQL macros (``$__timeFilter(col)``...) replaced
the way Grafana does, giving text a real Prometheus or PostgreSQL can run.

Grafana cannot run on this machine, so tests/unit/test_observability.py and
tests/integration/test_dashboards.py check the dashboard by running its queries elsewhere.
Test-only: the product never renders a dashboard query.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from genreops.platform.observability import ObservabilityError

PROMETHEUS_DATASOURCE = "prometheus"  # datasource types as Grafana names them
POSTGRES_DATASOURCES = ("grafana-postgresql-datasource", "postgres")


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
