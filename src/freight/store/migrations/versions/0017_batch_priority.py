"""Batch priorities, and the usage of flex-tier requests per project.

Revision ID: 0017_batch_priority
Revises: 0016_result_order
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017_batch_priority"
down_revision = "0016_result_order"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("batches") as table:
        table.add_column(sa.Column("priority", sa.Integer, nullable=False, server_default="0"))
    op.create_table(
        "flex_usage",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("project", sa.String(64), nullable=False),
        sa.Column("model", sa.String(255), nullable=False),
        sa.Column("period_start", sa.BigInteger, nullable=False),
        sa.Column("num_requests", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("input_tokens", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("cached_tokens", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("output_tokens", sa.BigInteger, nullable=False, server_default="0"),
        sa.UniqueConstraint("project", "model", "period_start", name="uq_flex_usage_key"),
    )
    op.create_index("ix_flex_usage_period", "flex_usage", ["period_start"])


def downgrade() -> None:
    op.drop_index("ix_flex_usage_period", table_name="flex_usage")
    op.drop_table("flex_usage")
    with op.batch_alter_table("batches") as table:
        table.drop_column("priority")
