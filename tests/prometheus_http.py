"""Prometheus's HTTP API, for tests: the answers a running Prometheus gives (rules, targets,
alerts, instant queries). Test-only: the product starts Prometheus but never queries it.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Any

from genreops.platform.observability import ObservabilityError


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
