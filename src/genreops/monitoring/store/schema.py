"""The monitoring tables as SQLAlchemy Core metadata: what the code reads and writes.

The migrations under ``migrations/`` create and change the tables in a database; this
metadata must always equal their head revision (a test compares the two). Change both
together: a new revision for the database, the same change here.
"""

from __future__ import annotations

import json
import math
import numbers
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

from genreops.monitoring.store.errors import MonitoringError

PREDICTIONS = "predictions"
DRIFT_TESTS = "drift_tests"
MODEL_EVENTS = "model_events"
LABELS = "labels"
ALERTS = "alerts"
TABLE_NAMES = (PREDICTIONS, DRIFT_TESTS, MODEL_EVENTS, LABELS, ALERTS)


# --------------------------------------------------------------------------------------------
# Values: ids, times and JSON as every table stores them


def new_id() -> str:
    return uuid.uuid4().hex


def utc_now() -> datetime:
    return datetime.now(UTC)


def to_utc(value: Any) -> datetime:
    """Aware datetime, ISO text or epoch seconds → aware UTC datetime; naive means UTC."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        moment = datetime.fromisoformat(value)
    elif isinstance(value, numbers.Real) and not is_bool(value):
        moment = datetime.fromtimestamp(float(value), tz=UTC)
    else:
        raise TypeError(f"expected a datetime, ISO text or epoch seconds, got {describe(value)}")
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def is_bool(value: Any) -> bool:
    return isinstance(value, bool) or type(value).__name__ in ("bool_", "bool")


def describe(value: Any) -> str:
    shown = repr(value)
    return f"{type(value).__name__} {shown[:60]}{'...' if len(shown) > 60 else ''}"


def json_default(value: Any) -> Any:
    """JSON for what callers naturally hold: numpy scalars and arrays, datetimes, bytes."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "replace")
    for attribute in ("tolist", "item"):  # numpy arrays, then numpy scalars
        method = getattr(value, attribute, None)
        if callable(method):
            return method()
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return str(value)


def _plain(value: Any) -> Any:
    """JSON-ready copy; NaN and infinities become null so any JSON reader accepts the text."""
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(v) for v in value]
    converted = json_default(value)
    return converted if isinstance(converted, str) else _plain(converted)


def dump_json(value: Any) -> str:
    return json.dumps(_plain(value), separators=(",", ":"), ensure_ascii=False, allow_nan=False)


# --------------------------------------------------------------------------------------------
# Column types


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC on the way in and out, also on SQLite (which stores naive text)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        moment = to_utc(value)
        return moment.replace(tzinfo=None) if dialect.name == "sqlite" else moment

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class JSONText(TypeDecorator[Any]):
    """JSON kept as text (portable, readable in any SQL client); decoded when read."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        if value is None or isinstance(value, str):
            return value
        return dump_json(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        try:
            return json.loads(value)
        except ValueError:
            return value


_ID = BigInteger().with_variant(Integer(), "sqlite")  # SQLite autoincrements INTEGER only

METADATA = MetaData()

PREDICTIONS_TABLE = Table(
    PREDICTIONS,
    METADATA,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("request_id", String(128), nullable=False),
    Column("served_at", UTCDateTime(timezone=True), nullable=False),
    Column("clip_id", String(512), nullable=False, info={"default": ""}),
    Column("genre", String(128), nullable=False),
    Column("confidence", Float),
    Column("probabilities", JSONText),
    Column("model_version", String(256), nullable=False),
    Column("model_role", String(32)),
    Column("drift_gate_open", Boolean),
    Column("ood", Boolean),  # out of the training distribution (genreops.monitoring.novelty)
    Column("ood_score", Float),  # distance to the training reference / the OOD threshold
    Column("latency_ms", Float),
    Column("repository_version", Integer),
    Index("uq_predictions_request_id", "request_id", unique=True),
    Index("ix_predictions_served_at", "served_at"),
    info={"key": "request_id", "time": "served_at"},
)

DRIFT_TESTS_TABLE = Table(
    DRIFT_TESTS,
    METADATA,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("test_id", String(128), nullable=False),
    Column("tested_at", UTCDateTime(timezone=True), nullable=False),
    Column("window_size", Integer, nullable=False),
    Column("drifted_share", Float, nullable=False),
    Column("dataset_drift", Boolean, nullable=False),
    Column("gate_open", Boolean, nullable=False),
    Column("statistic", Float),  # the drift detector's statistic / its alarm level
    Column("ood_share", Float),  # share of the window flagged out of distribution
    Column("column_scores", JSONText),
    Column("reference", String(1024)),
    Column("seconds", Float),
    Index("uq_drift_tests_test_id", "test_id", unique=True),
    Index("ix_drift_tests_tested_at", "tested_at"),
    info={"key": "test_id", "time": "tested_at"},
)

MODEL_EVENTS_TABLE = Table(
    MODEL_EVENTS,
    METADATA,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("event_id", String(128), nullable=False),
    Column("at", UTCDateTime(timezone=True), nullable=False),
    Column("event", String(64), nullable=False),
    Column("repository_version", Integer),
    Column("champion", String(256)),
    Column("challenger", String(256)),
    Column("detail", JSONText),
    Index("uq_model_events_event_id", "event_id", unique=True),
    Index("ix_model_events_at", "at"),
    info={"key": "event_id", "time": "at"},
)


# Ground truth: what a served clip really was, said after the fact (`genreops feedback`). A
# clip may be labeled again; its latest label is the one that counts.
LABELS_TABLE = Table(
    LABELS,
    METADATA,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("label_id", String(128), nullable=False),
    Column("labeled_at", UTCDateTime(timezone=True), nullable=False),
    Column("clip_id", String(512), nullable=False),
    Column("genre", String(128), nullable=False),
    Column("source", String(1024)),  # where the label came from: a file, a folder, a run
    Index("uq_labels_label_id", "label_id", unique=True),
    Index("ix_labels_clip_id", "clip_id"),
    Index("ix_labels_labeled_at", "labeled_at"),
    info={"key": "label_id", "time": "labeled_at"},
)


# Every alert notification the monitor service received, one row per alert in it (Alertmanager
# repeats a firing alert every repeat interval and sends "resolved" once: each is a row).
ALERTS_TABLE = Table(
    ALERTS,
    METADATA,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("alert_id", String(128), nullable=False),
    Column("received_at", UTCDateTime(timezone=True), nullable=False),
    Column("source", String(32), nullable=False),  # alertmanager or grafana
    Column("receiver", String(256)),
    Column("status", String(32), nullable=False),  # firing or resolved
    Column("alertname", String(256), nullable=False),
    Column("severity", String(64)),
    Column("fingerprint", String(128)),  # the same alert across notifications
    Column("starts_at", UTCDateTime(timezone=True)),
    Column("ends_at", UTCDateTime(timezone=True)),
    Column("summary", String(1024)),
    Column("labels", JSONText),
    Column("annotations", JSONText),
    Index("uq_alerts_alert_id", "alert_id", unique=True),
    Index("ix_alerts_received_at", "received_at"),
    Index("ix_alerts_alertname", "alertname"),
    info={"key": "alert_id", "time": "received_at"},
)


def get_table(name: str) -> Table:
    """The table called ``name``; MonitoringError names the known ones otherwise."""
    table = METADATA.tables.get(name)
    if table is None:
        raise MonitoringError(
            f"unknown monitoring table {name!r} (one of {', '.join(TABLE_NAMES)})"
        )
    return table
