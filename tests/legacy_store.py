"""The monitoring store as genreops made it before Alembic, to prove the upgrade keeps every row.

``today(dialect)`` is the DDL the store's ``ensure_schema()`` emitted up to commit e953569
(its SQLAlchemy metadata compiled for SQLite, copied here verbatim so later changes to the
package cannot change the fixture; PostgreSQL's differs only in the id and time types).
``first_release(dialect)`` is the layout of the first release (commit 1a97d46): the same
without the drift gate's columns, which the old inspection upgrade added in place. ``ROWS``
are rows as that code stored them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# columns the drift gate added (commit b27b0be); the first release had none of them
# the tables a database made before Alembic has (later revisions add others, e.g. labels)
LEGACY_TABLES = ("predictions", "drift_tests", "model_events")
GATE_COLUMNS = {"predictions": ("ood", "ood_score"), "drift_tests": ("statistic", "ood_share")}

_SQLITE = [
    """CREATE TABLE drift_tests (
	id INTEGER NOT NULL,
	test_id VARCHAR(128) NOT NULL,
	tested_at DATETIME NOT NULL,
	window_size INTEGER NOT NULL,
	drifted_share FLOAT NOT NULL,
	dataset_drift BOOLEAN NOT NULL,
	gate_open BOOLEAN NOT NULL,
	statistic FLOAT,
	ood_share FLOAT,
	column_scores TEXT,
	reference VARCHAR(1024),
	seconds FLOAT,
	PRIMARY KEY (id)
)""",
    "CREATE INDEX ix_drift_tests_tested_at ON drift_tests (tested_at)",
    "CREATE UNIQUE INDEX uq_drift_tests_test_id ON drift_tests (test_id)",
    """CREATE TABLE model_events (
	id INTEGER NOT NULL,
	event_id VARCHAR(128) NOT NULL,
	at DATETIME NOT NULL,
	event VARCHAR(64) NOT NULL,
	repository_version INTEGER,
	champion VARCHAR(256),
	challenger VARCHAR(256),
	detail TEXT,
	PRIMARY KEY (id)
)""",
    "CREATE INDEX ix_model_events_at ON model_events (at)",
    "CREATE UNIQUE INDEX uq_model_events_event_id ON model_events (event_id)",
    """CREATE TABLE predictions (
	id INTEGER NOT NULL,
	request_id VARCHAR(128) NOT NULL,
	served_at DATETIME NOT NULL,
	clip_id VARCHAR(512) NOT NULL,
	genre VARCHAR(128) NOT NULL,
	confidence FLOAT,
	probabilities TEXT,
	model_version VARCHAR(256) NOT NULL,
	model_role VARCHAR(32),
	drift_gate_open BOOLEAN,
	ood BOOLEAN,
	ood_score FLOAT,
	latency_ms FLOAT,
	repository_version INTEGER,
	PRIMARY KEY (id)
)""",
    "CREATE INDEX ix_predictions_served_at ON predictions (served_at)",
    "CREATE UNIQUE INDEX uq_predictions_request_id ON predictions (request_id)",
]


def today(dialect: str) -> list[str]:
    """The statements that made a store before Alembic (the last layout)."""
    if dialect == "sqlite":
        return list(_SQLITE)
    return [  # what the same metadata compiled to for PostgreSQL
        statement.replace("\tid INTEGER NOT NULL", "\tid BIGSERIAL NOT NULL").replace(
            "DATETIME", "TIMESTAMP WITH TIME ZONE"
        )
        for statement in _SQLITE
    ]


def first_release(dialect: str) -> list[str]:
    """The first release's layout: no drift gate columns."""
    gone = {name for names in GATE_COLUMNS.values() for name in names}
    return [
        "\n".join(line for line in statement.splitlines() if line.strip().split(" ")[0] not in gone)
        for statement in today(dialect)
    ]


# Rows as the old store wrote them: times as each database stored UTCDateTime, JSON as text.
ROWS: dict[str, list[dict[str, Any]]] = {
    "predictions": [
        {
            "request_id": f"old-{i}",
            "served_at": f"2026-11-30 10:00:0{i}.250000",
            "clip_id": f"rock/{i}.wav",
            "genre": "rock",
            "confidence": 0.5 + i / 10,
            "probabilities": '{"rock":0.75,"jazz":0.25}',
            "model_version": "genre-classifier/3",
            "model_role": "champion",
            "drift_gate_open": i == 2,
            "latency_ms": 12.5 * i,
            "repository_version": 4,
        }
        for i in range(3)
    ],
    "drift_tests": [
        {
            "test_id": "test-1",
            "tested_at": "2026-11-30 10:05:00.000000",
            "window_size": 50,
            "drifted_share": 0.125,
            "dataset_drift": False,
            "gate_open": False,
            "column_scores": '{"tempo":{"score":0.5,"drifted":false}}',
            "reference": "repository/predictor/4/reference.parquet",
            "seconds": 0.11,
        }
    ],
    "model_events": [
        {
            "event_id": "event-1",
            "at": "2026-11-30 09:00:00.000000",
            "event": "publish",
            "repository_version": 4,
            "champion": "genre-classifier/3",
            "challenger": "genre-classifier/2",
            "detail": '{"options":{}}',
        }
    ],
}


def insert_rows(execute: Callable[[str, dict[str, Any]], Any], dialect: str) -> None:
    """``ROWS`` through ``execute(sql, params)`` with named parameters (``:name``)."""
    for table, rows in ROWS.items():
        for row in rows:
            values = dict(row)
            if dialect == "postgresql":  # TIMESTAMPTZ: the old store wrote aware UTC times
                for key in ("served_at", "tested_at", "at"):
                    if key in values:
                        values[key] += "+00:00"
            names = ", ".join(values)
            marks = ", ".join(f":{name}" for name in values)
            execute(f"INSERT INTO {table} ({names}) VALUES ({marks})", values)
