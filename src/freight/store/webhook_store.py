"""Webhook endpoints and the delivery outbox.

When a batch reaches a terminal status, `batches.transition` calls `enqueue` in the same
transaction: one delivery row per endpoint of the batch's project that subscribes to the
event. The status change and its notifications commit together or not at all, so an
event is never lost (a crash after the commit leaves the rows for the next sender) and
never announced for a change that rolled back.

Deliveries are a queue like requests (store/batch_requests.py): `claim_due` leases due rows,
skipping rows another sender holds (`FOR UPDATE SKIP LOCKED` on PostgreSQL; SQLite's
write transaction excludes other writers), by moving `next_attempt_at` to the end of the
lease. An attempt's outcome is recorded only by the lease's owner; a sender that dies
mid-attempt leaves the row due again once its lease runs out.

Delivery statuses: pending → delivered | failed (retries exhausted).
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from freight import ids
from freight.errors import NotFound
from freight.store.schema import webhook_deliveries, webhook_endpoints

EVENT_TYPES = ("batch.completed", "batch.failed", "batch.cancelled", "batch.expired")
PENDING = "pending"
DELIVERED = "delivered"
FAILED = "failed"
# Errors as versions before issue 15 recorded them: "HTTP 500: <the receiver's body>" and
# "ConnectError: [Errno 111] Connection refused" (the sender now records neither).
_LEGACY_ERROR = re.compile(r"HTTP ([1-5])\d\d\b.*|[A-Z]\w*: .*", re.DOTALL)


@dataclass(frozen=True)
class EndpointRecord:
    id: str
    project: str
    name: str
    url: str
    secret: str
    event_types: tuple[str, ...]
    created_at: int
    updated_at: int


@dataclass(frozen=True)
class DeliveryRecord:
    id: str
    endpoint_id: str
    event_id: str
    event_type: str
    batch_id: str
    status: str
    attempts: int
    created_at: float
    next_attempt_at: float
    last_attempt_at: float | None
    last_status_code: int | None
    last_error: str | None
    delivered_at: float | None


@dataclass(frozen=True)
class DueDelivery:
    """A leased delivery with what its attempt needs: where to send, what, and the key."""

    id: str
    endpoint_id: str
    event_id: str
    payload: str
    attempts: int  # including the attempt this lease is for
    created_at: float
    url: str
    secret: str


def _endpoint(row: Any) -> EndpointRecord:
    return EndpointRecord(
        id=row.id,
        project=row.project,
        name=row.name,
        url=row.url,
        secret=row.secret,
        event_types=tuple(row.event_types.split(",")),
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def add_endpoint(
    conn: sa.Connection,
    *,
    project: str,
    url: str,
    event_types: list[str],
    secret: str,
    name: str = "",
) -> EndpointRecord:
    now_ns = time.time_ns()
    endpoint_id = ids.new_id("we_")
    conn.execute(
        webhook_endpoints.insert().values(
            id=endpoint_id,
            project=project,
            name=name,
            url=url,
            secret=secret,
            event_types=",".join(event_types),
            created_at=now_ns // 1_000_000_000,
            created_ns=now_ns,
            updated_at=now_ns // 1_000_000_000,
        )
    )
    return get_endpoint(conn, endpoint_id)


def update_endpoint(
    conn: sa.Connection,
    endpoint_id: str,
    project: str | None,
    *,
    name: str | None = None,
    url: str | None = None,
    event_types: list[str] | None = None,
    secret: str | None = None,
    now: float | None = None,
) -> EndpointRecord:
    """Change what is given (None: keep); `updated_at` moves only if something changed."""
    current = get_endpoint(conn, endpoint_id, project)
    values: dict[str, Any] = {}
    if name is not None and name != current.name:
        values["name"] = name
    if url is not None and url != current.url:
        values["url"] = url
    if event_types is not None and tuple(event_types) != current.event_types:
        values["event_types"] = ",".join(event_types)
    if secret is not None:
        values["secret"] = secret
    if values:
        conn.execute(
            webhook_endpoints.update()
            .where(webhook_endpoints.c.id == endpoint_id)
            .values(updated_at=int(time.time() if now is None else now), **values)
        )
    return get_endpoint(conn, endpoint_id)


def get_endpoint(
    conn: sa.Connection, endpoint_id: str, project: str | None = None
) -> EndpointRecord:
    """The endpoint, if it exists (in `project`, when given)."""
    query = webhook_endpoints.select().where(webhook_endpoints.c.id == endpoint_id)
    if project is not None:
        query = query.where(webhook_endpoints.c.project == project)
    row = conn.execute(query).first()
    if row is None:
        raise NotFound(f"No such webhook endpoint: {endpoint_id}", param="endpoint_id")
    return _endpoint(row)


def list_endpoints(conn: sa.Connection, project: str | None = None) -> list[EndpointRecord]:
    """Every endpoint, newest first; every project's when `project` is None (the CLI)."""
    records, _ = list_page(conn, project)
    return records


def list_page(
    conn: sa.Connection, project: str | None, *, after: str | None = None, limit: int | None = None
) -> tuple[list[EndpointRecord], bool]:
    """Newest first, from after the endpoint `after`; and whether more follow."""
    e = webhook_endpoints
    query = e.select()
    if project is not None:
        query = query.where(e.c.project == project)
    if after is not None:
        cursor_query = sa.select(e.c.created_ns, e.c.id).where(e.c.id == after)
        if project is not None:
            cursor_query = cursor_query.where(e.c.project == project)
        cursor = conn.execute(cursor_query).first()
        if cursor is None:
            raise NotFound(f"No such webhook endpoint: {after}", param="after")
        key = sa.tuple_(e.c.created_ns, e.c.id)
        query = query.where(key < sa.tuple_(sa.literal(cursor.created_ns), sa.literal(cursor.id)))
    query = query.order_by(e.c.created_ns.desc(), e.c.id.desc())
    if limit is not None:
        query = query.limit(limit + 1)
    rows = [_endpoint(row) for row in conn.execute(query)]
    if limit is None:
        return rows, False
    return rows[:limit], len(rows) > limit


def remove_endpoint(
    conn: sa.Connection, endpoint_id: str, project: str | None = None
) -> EndpointRecord:
    """Delete the endpoint with its delivery log; pending deliveries to it are dropped."""
    endpoint = get_endpoint(conn, endpoint_id, project)
    conn.execute(webhook_deliveries.delete().where(webhook_deliveries.c.endpoint_id == endpoint_id))
    conn.execute(webhook_endpoints.delete().where(webhook_endpoints.c.id == endpoint_id))
    return endpoint


def event_payload(event_id: str, event_type: str, created_at: int, batch_id: str) -> str:
    """The event body, in the shape of OpenAI's webhook events."""
    return json.dumps(
        {
            "object": "event",
            "id": event_id,
            "type": event_type,
            "created_at": created_at,
            "data": {"id": batch_id},
        },
        separators=(",", ":"),
    )


def enqueue(
    conn: sa.Connection,
    *,
    project: str,
    batch_id: str,
    event_type: str,
    now: float | None = None,
) -> str | None:
    """Queue `event_type` about `batch_id` for every subscribed endpoint of `project`.

    Call it inside the transaction that makes the change the event announces. Returns
    the event id, or None when no endpoint wants the event (nothing is written then).
    """
    targets = [e for e in list_endpoints(conn, project) if event_type in e.event_types]
    if not targets:
        return None
    now = time.time() if now is None else now
    event_id = ids.new_id("evt_")
    payload = event_payload(event_id, event_type, int(now), batch_id)
    conn.execute(
        webhook_deliveries.insert(),
        [
            {
                "id": ids.new_id("whd_"),
                "endpoint_id": endpoint.id,
                "event_id": event_id,
                "event_type": event_type,
                "batch_id": batch_id,
                "payload": payload,
                "status": PENDING,
                "attempts": 0,
                "created_at": now,
                "next_attempt_at": now,
            }
            for endpoint in targets
        ],
    )
    return event_id


def claim_due(
    conn: sa.Connection, owner: str, limit: int, lease_seconds: float, *, now: float | None = None
) -> list[DueDelivery]:
    """Lease up to `limit` pending deliveries that are due, oldest due first."""
    now = time.time() if now is None else now
    d, e = webhook_deliveries, webhook_endpoints
    query = (
        sa.select(
            d.c.id,
            d.c.endpoint_id,
            d.c.event_id,
            d.c.payload,
            d.c.attempts,
            d.c.created_at,
            e.c.url,
            e.c.secret,
        )
        .join(e, e.c.id == d.c.endpoint_id)
        .where(d.c.status == PENDING, d.c.next_attempt_at <= now)
        .order_by(d.c.next_attempt_at, d.c.id)
        .limit(limit)
    )
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True, of=d)
    rows = conn.execute(query).all()
    if not rows:
        return []
    conn.execute(
        d.update()
        .where(d.c.id.in_([r.id for r in rows]), d.c.status == PENDING)
        .values(lease_owner=owner, next_attempt_at=now + lease_seconds, attempts=d.c.attempts + 1)
    )
    return [
        DueDelivery(
            id=r.id,
            endpoint_id=r.endpoint_id,
            event_id=r.event_id,
            payload=r.payload,
            attempts=r.attempts + 1,
            created_at=r.created_at,
            url=r.url,
            secret=r.secret,
        )
        for r in rows
    ]


def record_attempt(
    conn: sa.Connection,
    delivery_id: str,
    owner: str,
    *,
    status_code: int | None,
    error: str | None,
    retry_at: float | None,
    now: float | None = None,
) -> bool:
    """Record an attempt's outcome: delivered (no `error`), due again at `retry_at`, or
    failed for good (`error` and no `retry_at`). False if `owner` no longer held the lease.
    """
    now = time.time() if now is None else now
    values: dict[str, Any] = {
        "lease_owner": None,
        "last_attempt_at": now,
        "last_status_code": status_code,
        "last_error": error,
    }
    if error is None:
        values.update(status=DELIVERED, delivered_at=now)
    elif retry_at is None:
        values.update(status=FAILED)
    else:
        values.update(next_attempt_at=retry_at)
    d = webhook_deliveries
    result = conn.execute(
        d.update()
        .where(d.c.id == delivery_id, d.c.lease_owner == owner, d.c.status == PENDING)
        .values(**values)
    )
    return result.rowcount == 1


def _shown_error(error: str | None) -> str | None:
    """`last_error` as the log shows it: one recorded by an earlier version is cut to its
    class, as the receiver's body and socket errors are not shown to the URL's owner.
    """
    legacy = _LEGACY_ERROR.fullmatch(error) if error else None
    if legacy is None:
        return error
    return f"receiver answered {legacy[1]}xx" if legacy[1] else "could not connect"


def list_deliveries(
    conn: sa.Connection,
    *,
    endpoint_id: str | None = None,
    project: str | None = None,
    limit: int = 50,
) -> list[DeliveryRecord]:
    """The delivery log, newest first: one endpoint's, or every endpoint's (of `project`)."""
    d, e = webhook_deliveries, webhook_endpoints
    query = sa.select(d).join(e, e.c.id == d.c.endpoint_id)
    if endpoint_id is not None:
        query = query.where(d.c.endpoint_id == endpoint_id)
    if project is not None:
        query = query.where(e.c.project == project)
    query = query.order_by(d.c.created_at.desc(), d.c.id.desc()).limit(limit)
    return [
        DeliveryRecord(
            id=r.id,
            endpoint_id=r.endpoint_id,
            event_id=r.event_id,
            event_type=r.event_type,
            batch_id=r.batch_id,
            status=r.status,
            attempts=r.attempts,
            created_at=r.created_at,
            next_attempt_at=r.next_attempt_at,
            last_attempt_at=r.last_attempt_at,
            last_status_code=r.last_status_code,
            last_error=_shown_error(r.last_error),
            delivered_at=r.delivered_at,
        )
        for r in conn.execute(query)
    ]
