"""Provider batch passthrough: requests routed to an upstream Batch API, and its batches.

Revision ID: 0011_upstream
Revises: 0008_usage
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011_upstream"
down_revision = "0008_usage"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("requests") as table:
        table.add_column(sa.Column("upstream", sa.String(255)))
        table.add_column(sa.Column("upstream_batch_id", sa.String(64)))
    op.create_index("ix_requests_upstream", "requests", ["upstream", "status", "upstream_batch_id"])
    op.create_table(
        "upstream_batches",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("batch_id", sa.String(64), nullable=False),
        sa.Column("model", sa.String(255), nullable=False),
        sa.Column("style", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("upstream_id", sa.String(255)),
        sa.Column("upstream_status", sa.String(32)),
        sa.Column("num_requests", sa.Integer, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("submitted_at", sa.Float),
        sa.Column("ended_at", sa.Float),
        sa.Column("detail", sa.Text),
    )
    op.create_index("ix_upstream_batches_batch_id", "upstream_batches", ["batch_id"])


def downgrade() -> None:
    op.drop_index("ix_upstream_batches_batch_id", "upstream_batches")
    op.drop_table("upstream_batches")
    op.drop_index("ix_requests_upstream", "requests")
    with op.batch_alter_table("requests") as table:
        table.drop_column("upstream_batch_id")
        table.drop_column("upstream")
