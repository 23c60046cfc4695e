"""API keys: hashed keys, each with its project, admin flag, expiry and revocation.

Revision ID: 0010_keys
Revises: 0008_usage
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_keys"
down_revision = "0008_usage"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("prefix", sa.String(32), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False, unique=True),
        sa.Column("project", sa.String(64), nullable=False),
        sa.Column("is_admin", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("expires_at", sa.BigInteger),
        sa.Column("revoked_at", sa.BigInteger),
    )


def downgrade() -> None:
    op.drop_table("api_keys")
