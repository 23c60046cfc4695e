"""Join the four branches of parallel work into one head; from here on there is one.

Revision ID: 0013_merge_heads
Revises: 0005_scheduling, 0010_keys, 0011_upstream, 0012_webhooks
"""

from __future__ import annotations

revision = "0013_merge_heads"
down_revision = ("0005_scheduling", "0010_keys", "0011_upstream", "0012_webhooks")
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Nothing to change: the branches touch different tables or columns."""


def downgrade() -> None:
    """Nothing to undo; downgrading past this revision splits the branches again."""
