"""Each batch's expected completion time, estimated when it is created.

Revision ID: 0015_expected_completion
Revises: 0014_request_model
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015_expected_completion"
down_revision = "0014_request_model"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("batches") as table:
        table.add_column(sa.Column("expected_completion_at", sa.BigInteger))


def downgrade() -> None:
    with op.batch_alter_table("batches") as table:
        table.drop_column("expected_completion_at")
