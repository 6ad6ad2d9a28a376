"""Alert notifications as rows: what Alertmanager (or Grafana) sent, kept and forwarded.

Alertmanager's webhook (payload version 4) and Grafana's webhook contact point send the same
shape: a group of ``alerts``, each with ``status``, ``labels``, ``annotations``, ``startsAt``,
``endsAt`` and ``fingerprint``. Each alert of a notification becomes one row of the store's
``alerts`` table, so a person (or a test) can see what fired and when; an alert that is not
an object is refused by position, never dropped silently.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from genreops.core.errors import GenreopsError

MAX_NOTIFICATION_BYTES = 1024 * 1024  # Alertmanager caps a group at a few hundred alerts


class NotificationError(GenreopsError):
    """A notification that cannot be read at all (the message says why)."""


@dataclass
class ReadNotification:
    """The rows of one notification, and the alerts refused with their reasons."""

    source: str
    receiver: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)


def _time(value: Any) -> datetime | None:
    # Alertmanager says "no end yet" with 0001-01-01T00:00:00Z
    if not isinstance(value, str) or not value or value.startswith("0001-01-01"):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _strings(value: Any) -> dict[str, str]:
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, Mapping) else {}


def read_notification(body: bytes) -> ReadNotification:
    """Rows for the ``alerts`` table from a webhook body (Alertmanager's or Grafana's)."""
    if len(body) > MAX_NOTIFICATION_BYTES:
        raise NotificationError(
            f"notification of {len(body)} bytes is over the {MAX_NOTIFICATION_BYTES}-byte limit"
        )
    try:
        payload = json.loads(body)
    except ValueError as error:
        raise NotificationError(f"notification is not JSON ({error})") from error
    except RecursionError as error:  # "[[[[..." deeper than the parser's stack
        raise NotificationError("notification is nested too deeply to be a webhook") from error
    if not isinstance(payload, dict) or not isinstance(payload.get("alerts"), list):
        raise NotificationError("notification has no list of alerts (not a webhook payload?)")
    # Grafana's contact point adds orgId/state/title to Alertmanager's fields
    source = "grafana" if "orgId" in payload or "state" in payload else "alertmanager"
    receiver = str(payload.get("receiver", ""))
    read = ReadNotification(source=source, receiver=receiver)
    for number, alert in enumerate(payload["alerts"], start=1):
        if not isinstance(alert, dict):
            read.refused.append(f"alert {number}: not an object")
            continue
        labels, annotations = _strings(alert.get("labels")), _strings(alert.get("annotations"))
        status = str(alert.get("status") or payload.get("status") or "unknown")
        read.rows.append(
            {
                "source": source,
                "receiver": receiver,
                "status": status,
                "alertname": labels.get("alertname", "unnamed"),
                "severity": labels.get("severity"),
                "fingerprint": str(alert.get("fingerprint") or "") or None,
                "starts_at": _time(alert.get("startsAt")),
                "ends_at": _time(alert.get("endsAt")),
                "summary": annotations.get("summary") or annotations.get("description"),
                "labels": labels,
                "annotations": annotations,
            }
        )
    return read
