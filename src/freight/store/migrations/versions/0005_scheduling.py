"""Admission and dedup keys on requests, for batch-aware scheduling.

Revision ID: 0005_scheduling
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_scheduling"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("requests") as table:
        table.add_column(
            sa.Column("admission_key", sa.String(2048), nullable=False, server_default="")
        )
        table.add_column(sa.Column("dedup_key", sa.String(32)))
    op.create_index(
        "ix_requests_claim_order", "requests", ["batch_id", "status", "admission_key", "line"]
    )


def downgrade() -> None:
    op.drop_index("ix_requests_claim_order", "requests")
    with op.batch_alter_table("requests") as table:
        table.drop_column("dedup_key")
        table.drop_column("admission_key")
