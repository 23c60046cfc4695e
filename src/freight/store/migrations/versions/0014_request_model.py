"""Each request's model, so a worker limited to some models claims only theirs.

Revision ID: 0014_request_model
Revises: 0013_merge_heads
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014_request_model"
down_revision = "0013_merge_heads"
branch_labels = None
depends_on = None

# The model of requests still open when this runs, read from their stored bodies.
BACKFILL = {
    "sqlite": "UPDATE requests SET model = json_extract(body, '$.model') "
    "WHERE status IN ('queued', 'running') AND json_valid(body)",
    "postgresql": "UPDATE requests SET model = body::json ->> 'model' "
    "WHERE status IN ('queued', 'running')",
}


def upgrade() -> None:
    with op.batch_alter_table("requests") as table:
        table.add_column(sa.Column("model", sa.String(255)))
    statement = BACKFILL.get(op.get_bind().dialect.name)
    if statement is not None:
        op.execute(statement)


def downgrade() -> None:
    with op.batch_alter_table("requests") as table:
        table.drop_column("model")
