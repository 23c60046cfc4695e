"""The result cache across batches: stored answers found by cache key, in bulk.

There is no cache table to keep in step with the results. The cache IS the stored
results: a request that may be cached gets its key at ingest (protocol/cache_keys.py:
project, model weights, endpoint and body, hashed), and the transaction that records its
answer (batch_requests.record) is the one that makes it findable, through the index
ix_requests_cache_key (cache_key, status, finished_at). A crash between the engine's
answer and that transaction loses the answer and the cache entry together: the request's
lease runs out, it runs again, and is recorded once (batch_requests' module docstring).

Only answers the model gave are sources: a row served from the cache (`cached_from` set)
answers nobody, so `ttl` always counts from the model's own answer. Requests are served
when a worker claims them (`serve`, inside the claim's transaction: one lookup per claim,
not one per request); an estimate counts the same lookup (`count_hits`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import sqlalchemy as sa

from freight.store import batch_requests
from freight.store.schema import requests
from freight.store.statuses import RequestStatus

_IN_CHUNK = 500  # keys per IN (...) list, well under every driver's parameter limit


@dataclass(frozen=True)
class CachedAnswer:
    request_id: str  # the request the model answered
    status_code: int | None
    response_json: str


def lookup(
    conn: sa.Connection, keys: Iterable[str], since: float, *, other_than: str | None = None
) -> dict[str, CachedAnswer]:
    """The newest stored answer (finished at or after `since`) for each of `keys` that has
    one; `other_than`: not from that batch."""
    wanted = sorted(set(keys))
    found: dict[str, tuple[float, CachedAnswer]] = {}
    for start in range(0, len(wanted), _IN_CHUNK):
        chunk = wanted[start : start + _IN_CHUNK]
        rows = conn.execute(
            sa.select(
                requests.c.cache_key,
                requests.c.id,
                requests.c.status_code,
                requests.c.response_json,
                requests.c.finished_at,
            ).where(
                requests.c.cache_key.in_(chunk),
                requests.c.status == RequestStatus.SUCCEEDED,
                requests.c.finished_at >= since,
                requests.c.cached_from.is_(None),
                requests.c.response_json.is_not(None),
                *([] if other_than is None else [requests.c.batch_id != other_than]),
            )
        ).all()
        for row in rows:
            best = found.get(row.cache_key)
            if best is None or row.finished_at > best[0]:
                answer = CachedAnswer(row.id, row.status_code, row.response_json)
                found[row.cache_key] = (row.finished_at, answer)
    return {key: answer for key, (_, answer) in found.items()}


def count_hits(conn: sa.Connection, keys: list[str | None], since: float) -> int:
    """How many of `keys` (one per request; None: not cacheable) the cache would answer."""
    found = lookup(conn, (k for k in keys if k is not None), since)
    return sum(1 for k in keys if k is not None and k in found)


def serve(
    conn: sa.Connection, claimed: list[batch_requests.ClaimedRequest], since: float
) -> tuple[list[batch_requests.ClaimedRequest], int]:
    """Record the answer of each just-claimed request the cache holds; the rest to run.

    Runs in the claim's write transaction, so a served request is never also run. Answers
    come from other batches only: within a batch, identical requests are the deduplication's
    (worker/runner.py), so what the estimate counts is what is served. A served
    line is the original's response body as stored (its `usage` included), with no engine
    tokens of its own: it costs nothing. Returns (the requests left to run, the number served).
    """
    keyed = [c for c in claimed if c.cache_key is not None]
    if not keyed:
        return claimed, 0
    keys = [c.cache_key for c in keyed if c.cache_key is not None]
    found = lookup(conn, keys, since, other_than=keyed[0].batch_id)  # one batch per claim
    outcomes = []
    misses = []
    for c in claimed:
        answer = found.get(c.cache_key) if c.cache_key is not None else None
        if answer is None:
            misses.append(c)
            continue
        outcomes.append(
            batch_requests.Outcome(
                c.id,
                c.batch_id,
                RequestStatus.SUCCEEDED,
                status_code=answer.status_code,
                response_json=answer.response_json,
                cached_from=answer.request_id,
            )
        )
    num_served = batch_requests.record(conn, outcomes) if outcomes else 0
    return misses, num_served
