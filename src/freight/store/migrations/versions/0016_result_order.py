"""Results in the order they land: a per-batch sequence number on each finished request.

Revision ID: 0016_result_order
Revises: 0015_expected_completion
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016_result_order"
down_revision = "0015_expected_completion"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("batches") as table:
        table.add_column(
            sa.Column("last_result_seq", sa.BigInteger, nullable=False, server_default="0")
        )
    with op.batch_alter_table("requests") as table:
        table.add_column(sa.Column("result_seq", sa.BigInteger))
    op.create_index("ix_requests_batch_result_seq", "requests", ["batch_id", "result_seq"])
    # Requests finished before this revision get places in line order, after which the
    # batch's counter starts: a batch running across the upgrade still reads every line.
    op.execute(
        "UPDATE requests SET result_seq = line "
        "WHERE status IN ('succeeded', 'errored', 'cancelled', 'expired')"
    )
    op.execute(
        "UPDATE batches SET last_result_seq = COALESCE("
        "(SELECT MAX(line) FROM requests WHERE requests.batch_id = batches.id), 0)"
    )


def downgrade() -> None:
    op.drop_index("ix_requests_batch_result_seq", table_name="requests")
    with op.batch_alter_table("requests") as table:
        table.drop_column("result_seq")
    with op.batch_alter_table("batches") as table:
        table.drop_column("last_result_seq")
