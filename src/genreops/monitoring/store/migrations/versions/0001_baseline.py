"""Baseline: the monitoring tables as genreops kept them before Alembic.

Revision ID: 0001
Revises:
Create Date: 2026-12-10

A fresh database gets the three tables with their indexes. A database made before Alembic
(monitoring tables, no ``alembic_version``) is adopted in place: tables it lacks are created,
columns an older layout lacks are added (nullable: existing rows have no value, and SQLite
refuses NOT NULL there), missing indexes are created. That covers every layout earlier
releases made: the first one, without ``predictions.ood``/``ood_score`` and
``drift_tests.statistic``/``ood_share``, and older hand-made ones with fewer columns. Nothing
is dropped or rewritten. This is the only revision that looks at the database; later ones
are plain operations. Frozen: a schema change is a new revision, never an edit here.
"""

from __future__ import annotations

import logging
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

log = logging.getLogger("genreops.monitoring.store.migrate")

Indexes = list[tuple[str, str, bool]]  # (name, column, unique)


def _id() -> sa.Column[Any]:
    kind = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # SQLite autoincrements INTEGER
    return sa.Column("id", kind, primary_key=True, autoincrement=True)


def _when(name: str) -> sa.Column[Any]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False)


def _tables() -> dict[str, tuple[list[sa.Column[Any]], Indexes]]:
    """Fresh column objects each call (a Column belongs to one table)."""
    predictions = [
        _id(),
        sa.Column("request_id", sa.String(128), nullable=False),
        _when("served_at"),
        sa.Column("clip_id", sa.String(512), nullable=False),
        sa.Column("genre", sa.String(128), nullable=False),
        sa.Column("confidence", sa.Float()),
        sa.Column("probabilities", sa.Text()),  # JSON text
        sa.Column("model_version", sa.String(256), nullable=False),
        sa.Column("model_role", sa.String(32)),
        sa.Column("drift_gate_open", sa.Boolean()),
        sa.Column("ood", sa.Boolean()),
        sa.Column("ood_score", sa.Float()),
        sa.Column("latency_ms", sa.Float()),
        sa.Column("repository_version", sa.Integer()),
    ]
    drift_tests = [
        _id(),
        sa.Column("test_id", sa.String(128), nullable=False),
        _when("tested_at"),
        sa.Column("window_size", sa.Integer(), nullable=False),
        sa.Column("drifted_share", sa.Float(), nullable=False),
        sa.Column("dataset_drift", sa.Boolean(), nullable=False),
        sa.Column("gate_open", sa.Boolean(), nullable=False),
        sa.Column("statistic", sa.Float()),
        sa.Column("ood_share", sa.Float()),
        sa.Column("column_scores", sa.Text()),  # JSON text
        sa.Column("reference", sa.String(1024)),
        sa.Column("seconds", sa.Float()),
    ]
    model_events = [
        _id(),
        sa.Column("event_id", sa.String(128), nullable=False),
        _when("at"),
        sa.Column("event", sa.String(64), nullable=False),
        sa.Column("repository_version", sa.Integer()),
        sa.Column("champion", sa.String(256)),
        sa.Column("challenger", sa.String(256)),
        sa.Column("detail", sa.Text()),  # JSON text
    ]
    return {
        "predictions": (
            predictions,
            [
                ("uq_predictions_request_id", "request_id", True),
                ("ix_predictions_served_at", "served_at", False),
            ],
        ),
        "drift_tests": (
            drift_tests,
            [
                ("uq_drift_tests_test_id", "test_id", True),
                ("ix_drift_tests_tested_at", "tested_at", False),
            ],
        ),
        "model_events": (
            model_events,
            [
                ("uq_model_events_event_id", "event_id", True),
                ("ix_model_events_at", "at", False),
            ],
        ),
    }


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    existing = set(inspector.get_table_names())
    for table, (columns, indexes) in _tables().items():
        if table not in existing:
            op.create_table(table, *columns)
            for name, key, unique in indexes:
                op.create_index(name, table, [key], unique=unique)
            continue
        # adopted from before Alembic: complete it, keep every row
        present = {found["name"] for found in inspector.get_columns(table)}
        for column in columns:
            if column.name in present:
                continue
            if column.primary_key:
                log.warning("monitoring: %s has no %s column; left as it is", table, column.name)
                continue
            op.add_column(table, sa.Column(column.name, column.type, nullable=True))
        named = {index["name"] for index in inspector.get_indexes(table)}
        for name, key, unique in indexes:
            if name not in named:
                op.create_index(name, table, [key], unique=unique)


def downgrade() -> None:
    raise NotImplementedError("the baseline is not undone: that would drop the monitoring data")
