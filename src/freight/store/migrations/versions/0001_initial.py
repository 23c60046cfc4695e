"""Files, batches, requests and batch events.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "files",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("project", sa.String(64), nullable=False),
        sa.Column("filename", sa.String(255), nullable=False),
        sa.Column("purpose", sa.String(32), nullable=False),
        sa.Column("bytes", sa.BigInteger, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("created_ns", sa.BigInteger, nullable=False),
        sa.Column("expires_at", sa.BigInteger),
        sa.Column("blob", sa.String(255), nullable=False),
    )
    op.create_index("ix_files_project_created", "files", ["project", "created_ns"])
    op.create_table(
        "batches",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("project", sa.String(64), nullable=False),
        sa.Column("api", sa.String(16), nullable=False),
        sa.Column("endpoint", sa.String(64), nullable=False),
        sa.Column("input_file_id", sa.String(64)),
        sa.Column("completion_window", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("model", sa.String(255)),
        sa.Column("metadata_json", sa.Text),
        sa.Column("errors_json", sa.Text),
        sa.Column("output_file_id", sa.String(64)),
        sa.Column("error_file_id", sa.String(64)),
        sa.Column("output_expires_after", sa.BigInteger),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("created_ns", sa.BigInteger, nullable=False),
        sa.Column("expires_at", sa.BigInteger, nullable=False),
        *(
            sa.Column(name, sa.BigInteger)
            for name in (
                "in_progress_at",
                "finalizing_at",
                "completed_at",
                "failed_at",
                "expired_at",
                "cancelling_at",
                "cancelled_at",
            )
        ),
        *(
            sa.Column(name, sa.BigInteger, nullable=False, server_default="0")
            for name in (
                "num_total",
                "num_succeeded",
                "num_errored",
                "num_cancelled",
                "num_expired",
                "input_tokens",
                "cached_tokens",
                "output_tokens",
            )
        ),
    )
    op.create_index("ix_batches_project_created", "batches", ["project", "created_ns"])
    op.create_index("ix_batches_status", "batches", ["status"])
    op.create_table(
        "requests",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("batch_id", sa.String(64), nullable=False),
        sa.Column("line", sa.BigInteger, nullable=False),
        sa.Column("custom_id", sa.String(512), nullable=False),
        sa.Column("url", sa.String(64), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("lease_owner", sa.String(64)),
        sa.Column("lease_expires_at", sa.Float),
        sa.Column("status_code", sa.Integer),
        sa.Column("response_json", sa.Text),
        sa.Column("error_json", sa.Text),
        sa.Column("input_tokens", sa.Integer, nullable=False, server_default="0"),
        sa.Column("cached_tokens", sa.Integer, nullable=False, server_default="0"),
        sa.Column("output_tokens", sa.Integer, nullable=False, server_default="0"),
        sa.Column("finished_at", sa.Float),
        sa.UniqueConstraint("batch_id", "line", name="uq_requests_batch_line"),
    )
    op.create_index("ix_requests_batch_status_line", "requests", ["batch_id", "status", "line"])
    op.create_index("ix_requests_status_lease", "requests", ["status", "lease_expires_at"])
    op.create_table(
        "batch_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("batch_id", sa.String(64), nullable=False),
        sa.Column("from_status", sa.String(16)),
        sa.Column("to_status", sa.String(16), nullable=False),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("detail", sa.Text),
    )
    op.create_index("ix_batch_events_batch_id", "batch_events", ["batch_id"])


def downgrade() -> None:
    for table in ("batch_events", "requests", "batches", "files"):
        op.drop_table(table)
