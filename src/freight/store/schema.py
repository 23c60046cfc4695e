"""The tables. Portable SQL only: the same schema runs on SQLite and PostgreSQL.

JSON payloads are stored as text exactly as they will be served, so that results
are written and read back without a decode/encode round trip.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

files = sa.Table(
    "files",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("project", sa.String(64), nullable=False),
    sa.Column("filename", sa.String(255), nullable=False),
    sa.Column("purpose", sa.String(32), nullable=False),
    sa.Column("bytes", sa.BigInteger, nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column(
        "created_ns", sa.BigInteger, nullable=False, doc="Orders objects made in one second."
    ),
    sa.Column("expires_at", sa.BigInteger),
    sa.Column("blob", sa.String(255), nullable=False, doc="Path relative to the blob root."),
    sa.Index("ix_files_project_created", "project", "created_ns"),
)

batches = sa.Table(
    "batches",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("project", sa.String(64), nullable=False),
    sa.Column("api", sa.String(16), nullable=False, doc="'openai' or 'anthropic': the view."),
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
    sa.Column(
        "created_ns", sa.BigInteger, nullable=False, doc="Orders objects made in one second."
    ),
    sa.Column("expires_at", sa.BigInteger, nullable=False),
    sa.Column("in_progress_at", sa.BigInteger),
    sa.Column("finalizing_at", sa.BigInteger),
    sa.Column("completed_at", sa.BigInteger),
    sa.Column("failed_at", sa.BigInteger),
    sa.Column("expired_at", sa.BigInteger),
    sa.Column("cancelling_at", sa.BigInteger),
    sa.Column("cancelled_at", sa.BigInteger),
    sa.Column("num_total", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("num_succeeded", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("num_errored", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("num_cancelled", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("num_expired", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("input_tokens", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("cached_tokens", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("output_tokens", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column(
        "num_from_cache",
        sa.BigInteger,
        nullable=False,
        server_default="0",
        doc="Of num_succeeded, those served by the result cache (no tokens of their own).",
    ),
    sa.Column(
        "expected_completion_at",
        sa.BigInteger,
        doc="Estimated when it was created (service/completion.py); reads recompute it.",
    ),
    sa.Column(
        "cache",
        sa.Boolean,
        nullable=False,
        server_default=sa.true(),
        doc='Whether its requests use the result cache (`"cache": false` at create).',
    ),
    sa.Column(
        "last_result_seq",
        sa.BigInteger,
        nullable=False,
        server_default="0",
        doc="The last result_seq given to one of its requests (store/result_order.py).",
    ),
    sa.Column(
        "priority",
        sa.Integer,
        nullable=False,
        server_default="0",
        doc="Higher runs first (a Freight extension; worker/scheduler.py).",
    ),
    sa.Index("ix_batches_project_created", "project", "created_ns"),
    sa.Index("ix_batches_status", "status"),
)

requests = sa.Table(
    "requests",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("batch_id", sa.String(64), nullable=False),
    sa.Column("line", sa.BigInteger, nullable=False, doc="1-based line (or index + 1)."),
    sa.Column("custom_id", sa.String(512), nullable=False),
    sa.Column("url", sa.String(64), nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("lease_owner", sa.String(64)),
    sa.Column("lease_expires_at", sa.Float),
    sa.Column("status_code", sa.Integer, doc="HTTP status of the response, if any."),
    sa.Column("response_json", sa.Text, doc="The wire response body, if any."),
    sa.Column("error_json", sa.Text, doc="A non-HTTP error {code, message}, if any."),
    sa.Column("input_tokens", sa.Integer, nullable=False, server_default="0"),
    sa.Column("cached_tokens", sa.Integer, nullable=False, server_default="0"),
    sa.Column("output_tokens", sa.Integer, nullable=False, server_default="0"),
    sa.Column("finished_at", sa.Float),
    sa.Column(
        "admission_key",
        sa.String(2048),
        nullable=False,
        server_default="",
        doc="Claim order within the batch (worker/scheduler.py).",
    ),
    sa.Column("dedup_key", sa.String(32), doc="Shared by identical deterministic requests."),
    sa.Column(
        "upstream",
        sa.String(255),
        doc="The model, if it runs through an upstream Batch API (upstream/passthrough.py).",
    ),
    sa.Column("upstream_batch_id", sa.String(64), doc="The upstream_batches row carrying it."),
    sa.Column("model", sa.String(255), doc="The body's model (`freight worker --models`)."),
    sa.Column(
        "cache_key",
        sa.String(64),
        doc="Project, model weights, endpoint and body, hashed: set on cacheable requests "
        "(protocol/cache_keys.py). A succeeded row with one is a cached answer.",
    ),
    sa.Column(
        "cached_from",
        sa.String(64),
        doc="The request whose stored answer this one was served from (result cache).",
    ),
    sa.Column(
        "result_seq",
        sa.BigInteger,
        doc="Its place in the batch's results as they land, once finished (store/result_order.py).",
    ),
    sa.UniqueConstraint("batch_id", "line", name="uq_requests_batch_line"),
    sa.Index("ix_requests_batch_status_line", "batch_id", "status", "line"),
    sa.Index("ix_requests_claim_order", "batch_id", "status", "admission_key", "line"),
    sa.Index("ix_requests_status_lease", "status", "lease_expires_at"),
    sa.Index("ix_requests_upstream", "upstream", "status", "upstream_batch_id"),
    sa.Index("ix_requests_cache_key", "cache_key", "status", "finished_at"),
    sa.Index("ix_requests_batch_result_seq", "batch_id", "result_seq"),
)

upstream_batches = sa.Table(
    "upstream_batches",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("batch_id", sa.String(64), nullable=False, index=True),
    sa.Column("model", sa.String(255), nullable=False),
    sa.Column("style", sa.String(16), nullable=False, doc="'openai' or 'anthropic'."),
    sa.Column("status", sa.String(16), nullable=False, doc="pending, submitted or ended."),
    sa.Column("upstream_id", sa.String(255), doc="The provider's batch id, once created."),
    sa.Column("upstream_status", sa.String(32), doc="The provider's last reported status."),
    sa.Column("num_requests", sa.Integer, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("submitted_at", sa.Float),
    sa.Column("ended_at", sa.Float),
    sa.Column("detail", sa.Text, doc="Why it failed or ended, if it says."),
)

batch_events = sa.Table(
    "batch_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("batch_id", sa.String(64), nullable=False, index=True),
    sa.Column("from_status", sa.String(16)),
    sa.Column("to_status", sa.String(16), nullable=False),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("detail", sa.Text),
)

engine_usage = sa.Table(
    "engine_usage",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("node", sa.String(128), nullable=False, doc="The process that metered it."),
    sa.Column("model", sa.String(255), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False, doc="'batch', 'realtime' or 'idle'."),
    sa.Column("period_start", sa.BigInteger, nullable=False, doc="Unix seconds, minute-aligned."),
    sa.Column("seconds", sa.Float, nullable=False, server_default="0"),
    sa.Column("num_requests", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("input_tokens", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("cached_tokens", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("output_tokens", sa.BigInteger, nullable=False, server_default="0"),
    sa.UniqueConstraint("node", "model", "kind", "period_start", name="uq_engine_usage_key"),
    sa.Index("ix_engine_usage_period", "period_start"),
)

flex_usage = sa.Table(
    "flex_usage",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("project", sa.String(64), nullable=False, doc="The requesting key's project."),
    sa.Column("model", sa.String(255), nullable=False),
    sa.Column("period_start", sa.BigInteger, nullable=False, doc="Unix seconds, minute-aligned."),
    sa.Column("num_requests", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("input_tokens", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("cached_tokens", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("output_tokens", sa.BigInteger, nullable=False, server_default="0"),
    sa.UniqueConstraint("project", "model", "period_start", name="uq_flex_usage_key"),
    sa.Index("ix_flex_usage_period", "period_start"),
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("prefix", sa.String(32), nullable=False, doc="The key's first characters, shown."),
    sa.Column("hash", sa.String(64), nullable=False, unique=True, doc="HMAC-SHA256, hex."),
    sa.Column("project", sa.String(64), nullable=False),
    sa.Column("is_admin", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("expires_at", sa.BigInteger),
    sa.Column("revoked_at", sa.BigInteger),
)

webhook_endpoints = sa.Table(
    "webhook_endpoints",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("project", sa.String(64), nullable=False),
    sa.Column("name", sa.String(255), nullable=False, server_default=""),
    sa.Column("url", sa.String(2048), nullable=False),
    sa.Column("secret", sa.String(128), nullable=False, doc="whsec_ + base64 signing key."),
    sa.Column("event_types", sa.String(255), nullable=False, doc="Comma-separated."),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("created_ns", sa.BigInteger, nullable=False),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
    sa.Index("ix_webhook_endpoints_project", "project", "created_ns"),
)

webhook_deliveries = sa.Table(
    "webhook_deliveries",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("endpoint_id", sa.String(64), nullable=False),
    sa.Column("event_id", sa.String(64), nullable=False, doc="Also the webhook-id header."),
    sa.Column("event_type", sa.String(32), nullable=False),
    sa.Column("batch_id", sa.String(64), nullable=False),
    sa.Column("payload", sa.Text, nullable=False, doc="The body, exactly as it is sent."),
    sa.Column("status", sa.String(16), nullable=False, doc="pending, delivered or failed."),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column(
        "next_attempt_at",
        sa.Float,
        nullable=False,
        doc="When it is due; while an attempt runs, when that attempt's lease runs out.",
    ),
    sa.Column("lease_owner", sa.String(64), doc="The process making the current attempt."),
    sa.Column("last_attempt_at", sa.Float),
    sa.Column("last_status_code", sa.Integer),
    sa.Column("last_error", sa.Text),
    sa.Column("delivered_at", sa.Float),
    sa.Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
    sa.Index("ix_webhook_deliveries_endpoint", "endpoint_id", "created_at"),
)
