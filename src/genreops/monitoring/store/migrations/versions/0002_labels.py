"""Labels: the ground truth of served clips, joined to predictions by clip id.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04

A new table only; nothing existing is touched.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    kind = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # SQLite autoincrements INTEGER
    op.create_table(
        "labels",
        sa.Column("id", kind, primary_key=True, autoincrement=True),
        sa.Column("label_id", sa.String(128), nullable=False),
        sa.Column("labeled_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("clip_id", sa.String(512), nullable=False),
        sa.Column("genre", sa.String(128), nullable=False),
        sa.Column("source", sa.String(1024)),
    )
    op.create_index("uq_labels_label_id", "labels", ["label_id"], unique=True)
    op.create_index("ix_labels_clip_id", "labels", ["clip_id"])
    op.create_index("ix_labels_labeled_at", "labels", ["labeled_at"])


def downgrade() -> None:
    raise NotImplementedError("labels are user data: undoing this would drop the monitoring data")
