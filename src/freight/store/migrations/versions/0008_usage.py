"""Metered engine usage: busy/idle seconds and tokens per model, kind and minute.

Revision ID: 0008_usage
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_usage"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "engine_usage",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("node", sa.String(128), nullable=False),
        sa.Column("model", sa.String(255), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("period_start", sa.BigInteger, nullable=False),
        sa.Column("seconds", sa.Float, nullable=False, server_default="0"),
        sa.Column("num_requests", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("input_tokens", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("cached_tokens", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("output_tokens", sa.BigInteger, nullable=False, server_default="0"),
        sa.UniqueConstraint("node", "model", "kind", "period_start", name="uq_engine_usage_key"),
    )
    op.create_index("ix_engine_usage_period", "engine_usage", ["period_start"])


def downgrade() -> None:
    op.drop_index("ix_engine_usage_period", "engine_usage")
    op.drop_table("engine_usage")
