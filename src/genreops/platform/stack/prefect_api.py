"""The stack's Prefect server over its REST API: which of our deployments a runner serves."""

from __future__ import annotations

import datetime as dt
import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any

from genreops.platform.stack.services import DEPLOYMENT_TAG


def _post_json(url: str, payload: Mapping[str, Any], timeout: float = 5.0) -> Any:
    request = urllib.request.Request(  # noqa: S310 (http on loopback)
        url,
        data=json.dumps(payload).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=timeout) as response:
        return json.loads(response.read())


def _parse_time(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def served_deployments(api_url: str, since: dt.datetime) -> list[str]:
    """``flow/deployment`` names of our deployments that a runner polled after ``since``.

    A serving runner polls every few seconds and the server records it (``last_polled``), so
    this tells a live deployments process from deployments left in the database.
    """
    try:
        deployments = _post_json(
            f"{api_url.rstrip('/')}/deployments/filter",
            {"deployments": {"tags": {"all_": [DEPLOYMENT_TAG]}}},
        )
        flows = _post_json(f"{api_url.rstrip('/')}/flows/filter", {})
    except (OSError, ValueError, urllib.error.URLError):
        return []
    flow_names = {f["id"]: f["name"] for f in flows}
    names = []
    for deployment in deployments:
        polled = _parse_time(deployment.get("last_polled"))
        if polled is not None and polled >= since:
            flow = flow_names.get(deployment.get("flow_id"), "?")
            names.append(f"{flow}/{deployment['name']}")
    return sorted(names)
