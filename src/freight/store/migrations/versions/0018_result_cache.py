"""The result cache across batches: each request's cache key, indexed, and where a cached
answer came from; each batch's `cache` switch and count of answers served from it.

Revision ID: 0018_result_cache
Revises: 0017_batch_priority
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018_result_cache"
down_revision = "0017_batch_priority"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("batches") as table:
        table.add_column(sa.Column("cache", sa.Boolean, nullable=False, server_default=sa.true()))
        table.add_column(
            sa.Column("num_from_cache", sa.BigInteger, nullable=False, server_default="0")
        )
    with op.batch_alter_table("requests") as table:
        table.add_column(sa.Column("cache_key", sa.String(64)))
        table.add_column(sa.Column("cached_from", sa.String(64)))
    op.create_index("ix_requests_cache_key", "requests", ["cache_key", "status", "finished_at"])


def downgrade() -> None:
    op.drop_index("ix_requests_cache_key", table_name="requests")
    with op.batch_alter_table("requests") as table:
        table.drop_column("cached_from")
        table.drop_column("cache_key")
    with op.batch_alter_table("batches") as table:
        table.drop_column("num_from_cache")
        table.drop_column("cache")
