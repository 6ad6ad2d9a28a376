"""Alerts: every alert notification the monitor received (Alertmanager or Grafana).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04

A new table only; nothing existing is touched.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    kind = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # SQLite autoincrements INTEGER
    op.create_table(
        "alerts",
        sa.Column("id", kind, primary_key=True, autoincrement=True),
        sa.Column("alert_id", sa.String(128), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("receiver", sa.String(256)),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("alertname", sa.String(256), nullable=False),
        sa.Column("severity", sa.String(64)),
        sa.Column("fingerprint", sa.String(128)),
        sa.Column("starts_at", sa.DateTime(timezone=True)),
        sa.Column("ends_at", sa.DateTime(timezone=True)),
        sa.Column("summary", sa.String(1024)),
        sa.Column("labels", sa.Text()),
        sa.Column("annotations", sa.Text()),
    )
    op.create_index("uq_alerts_alert_id", "alerts", ["alert_id"], unique=True)
    op.create_index("ix_alerts_received_at", "alerts", ["received_at"])
    op.create_index("ix_alerts_alertname", "alerts", ["alertname"])


def downgrade() -> None:
    raise NotImplementedError("alerts are a record: undoing this would drop the monitoring data")
