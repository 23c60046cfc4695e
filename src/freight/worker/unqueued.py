"""Batches whose requests were never queued, and how they end anyway.

Two cases, each for a batch that never was `in_progress`, so none of its requests ran;
each API's lifecycle (worker/lifecycle.py) picks its function for each:

- Its ingest failed every attempt (worker/steps.py decides when). An OpenAI batch ends
  `failed`, its `errors` saying why (`ingest_failed`): `fail_uningested`. A Message
  Batch gets one `errored` request per custom_id its create accepted, each saying why,
  and goes `in_progress` with nothing left open, so the worker finalises it like any
  other: it ends with its results, and can be deleted (`error_every_request`). If even
  its custom_ids cannot be read, it fails like an OpenAI batch.
- It was cancelled first. Whatever rows an interrupted ingest left are replaced: a
  Message Batch gets one `cancelled` request per custom_id, without validating anything
  (`cancel_every_request`); an OpenAI batch keeps none (`keep_no_requests`; as OpenAI's:
  a batch cancelled while validating counts no requests). The caller finalises it.

Both read only the custom_ids of a Message Batch body, with one flat streaming pass
(`iter_custom_ids`), so a body whose `params` broke the ingest cannot break them. Rows go
in chunks, as at ingest, each only while the batch is still in the status the step
began in, and the last chunk commits with the counts.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO

import ijson
import sqlalchemy as sa

from freight import ids
from freight.store import batch_requests, batches, blob_store, faults, result_order, statuses
from freight.store.blob_store import BlobStorage
from freight.store.db import Database
from freight.store.statuses import BatchStatus, RequestStatus
from freight.worker import ingest

log = logging.getLogger(__name__)


def fail_uningested(db: Database, batch: batches.BatchRecord, message: str) -> batches.BatchRecord:
    """End a `validating` batch whose ingest failed every attempt: `failed`, with `message`
    as its `ingest_failed` error."""
    error = {"code": "ingest_failed", "message": message, "param": None, "line": None}
    return ingest.fail(db, batch.id, [error])


def error_every_request(
    db: Database, blobs: BlobStorage, batch: batches.BatchRecord, message: str
) -> batches.BatchRecord:
    """End a `validating` Message Batch whose ingest failed every attempt; `message` says why.

    It gets one `errored` request per custom_id of its body, each carrying `message`, and
    goes `in_progress` with nothing left open, so the worker finalises it as usual. If
    even its custom_ids cannot be read, it fails like an OpenAI batch.
    """
    error_json = json.dumps({"code": "ingest_failed", "message": message})

    def queued_errored(conn: sa.Connection, num: int) -> batches.BatchRecord:
        batches.set_values(conn, batch.id, model=None, **_counts(num, num_errored=num))
        return batches.transition(
            conn, batch.id, BatchStatus.IN_PROGRESS, detail=f"ingest failed: {num} requests errored"
        )

    try:
        queued = _queue_closed(
            db, blobs, batch.id, BatchStatus.VALIDATING, RequestStatus.ERRORED, error_json
        )
    except Exception as exc:
        if isinstance(exc, faults.STORAGE_ERRORS) and not isinstance(exc, FileNotFoundError):
            raise  # passes; the worker tries again
        log.exception("batch %s: its custom_ids cannot be read either", batch.id)
        return fail_uningested(db, batch, message)
    record = _commit_closed(db, batch.id, BatchStatus.VALIDATING, queued, then=queued_errored)
    if record.status == BatchStatus.IN_PROGRESS:
        blobs.delete(blob_store.message_batch_requests(batch.id))
    return record


def keep_no_requests(db: Database, batch: batches.BatchRecord) -> batches.BatchRecord:
    """Give an OpenAI batch cancelled before its requests were queued no rows at all.

    No request of it ever ran (it never was `in_progress`): whatever rows an interrupted
    ingest left go, and its counts are zero. The caller finalises.
    """
    with db.write() as conn:
        if (current := _cancelled_uningested(conn, batch.id)) is not None:
            return current
        batch_requests.delete_for_batch(conn, batch.id)
        batches.set_values(conn, batch.id, **_counts(0))
        return batches.get(conn, batch.id)


def cancel_every_request(
    db: Database, blobs: BlobStorage, batch: batches.BatchRecord
) -> batches.BatchRecord:
    """Give a Message Batch cancelled before its requests were queued its rows, all
    `cancelled`, one per custom_id its create accepted.

    No request of it ever ran (it never was `in_progress`), so whatever rows an
    interrupted ingest left are replaced. The caller finalises.
    """
    with db.write() as conn:
        if (current := _cancelled_uningested(conn, batch.id)) is not None:
            return current

    def queued_cancelled(conn: sa.Connection, num: int) -> batches.BatchRecord:
        batches.set_values(conn, batch.id, **_counts(num, num_cancelled=num))
        return batches.get(conn, batch.id)

    try:
        queued = _queue_closed(
            db,
            blobs,
            batch.id,
            BatchStatus.CANCELLING,
            RequestStatus.CANCELLED,
            statuses.CANCELLED_ERROR,
        )
    except FileNotFoundError:
        # The body is gone although the batch never was `in_progress` (a worker of an
        # older version deleted it once it had queued the rows; or it was lost): the
        # custom_ids there are, are the rows there are.
        return _cancel_queued(db, batch.id)
    return _commit_closed(db, batch.id, BatchStatus.CANCELLING, queued, then=queued_cancelled)


def _cancelled_uningested(conn: sa.Connection, batch_id: str) -> batches.BatchRecord | None:
    """Lock the batch: None while it is `cancelling` and never was `in_progress`, else
    the batch as it is now (nothing for a cancel before ingest to do)."""
    current = batches.lock(conn, batch_id)
    if current.status == BatchStatus.CANCELLING and current.in_progress_at is None:
        return None
    return current


def _cancel_queued(db: Database, batch_id: str) -> batches.BatchRecord:
    """Cancel the rows there are, the counters recounted from them."""
    with db.write() as conn:
        if (current := ingest.moved_from(conn, batch_id, BatchStatus.CANCELLING)) is not None:
            return current
        batch_requests.recount(conn, batch_id)
        batch_requests.close_open(conn, batch_id, RequestStatus.CANCELLED, statuses.CANCELLED_ERROR)
        return batches.get(conn, batch_id)


def _counts(num_total: int, **counts: int) -> dict[str, int]:
    values = dict.fromkeys(("num_succeeded", "num_errored", "num_cancelled", "num_expired"), 0)
    return {"num_total": num_total, **values, **counts}


def _queue_closed(
    db: Database,
    blobs: BlobStorage,
    batch_id: str,
    while_status: BatchStatus,
    status: RequestStatus,
    error_json: str,
) -> ingest.Queued | None:
    """Replace a Message Batch's rows by one finished `status` row per custom_id.

    Rows go in chunks while the batch stays `while_status`, all but the last, which
    `_commit_closed` commits (None: the batch left `while_status` meanwhile).
    FileNotFoundError, before anything changed, if the body is gone.
    """
    with blobs.open(blob_store.message_batch_requests(batch_id)) as fh:
        with db.write() as conn:
            if ingest.start_over(conn, batch_id, while_status) is not None:
                return None
        now = time.time()
        rows = (
            _closed_row(batch_id, line, custom_id, status, error_json, now)
            for line, custom_id in enumerate(iter_custom_ids(fh), start=1)
        )
        return ingest.queue_rows(db, batch_id, rows, while_status)


def _commit_closed(
    db: Database,
    batch_id: str,
    while_status: BatchStatus,
    queued: ingest.Queued | None,
    *,
    then: Callable[[sa.Connection, int], batches.BatchRecord],
) -> batches.BatchRecord:
    """Commit the last rows `_queue_closed` left, with `then(conn, num_rows)` setting the
    counts (and the status) in the same transaction, if the batch is still `while_status`.

    Returns what `then` returns, or the batch as it is now if it has moved on.
    """
    if queued is None:
        return ingest.moved_on(db, batch_id)
    with db.write() as conn:
        if (current := ingest.moved_from(conn, batch_id, while_status)) is not None:
            return current
        ingest.check_complete(conn, batch_id, queued)
        batch_requests.insert_many(conn, queued.last_chunk)
        result_order.number_finished(conn, batch_id)
        return then(conn, queued.num_rows)


def _closed_row(
    batch_id: str, line: int, custom_id: str, status: RequestStatus, error_json: str, now: float
) -> dict[str, Any]:
    return {
        "id": ids.new_request_id(),
        "batch_id": batch_id,
        "line": line,
        "custom_id": custom_id,
        "url": "/v1/messages",
        "body": "{}",  # never run: its params were not (or could not be) read
        "status": status,
        "attempts": 0,
        "error_json": error_json,
        "finished_at": now,
    }


def iter_custom_ids(fh: BinaryIO) -> Iterator[str]:
    """The custom_ids of a Message Batch body, in order, from one flat streaming pass.

    Only for a body whose envelope was checked at create (every request an object with
    a valid, unique custom_id). Nothing is built but the custom_ids, and no prefix paths
    are kept, so neither the depth nor the size of the `params` matters.
    """
    depth = 0  # 1: the body; 2: the requests array; 3: one request
    top_key: str | None = None
    item_key: str | None = None
    for event, value in ijson.basic_parse(fh, use_float=True):
        if event == "map_key":
            if depth == 1:
                top_key = value
            elif depth == 3:
                item_key = value
            continue
        if depth == 3 and top_key == "requests":
            if item_key == "custom_id" and event == "string":
                yield value
            item_key = None
        if event in ("start_map", "start_array"):
            depth += 1
        elif event in ("end_map", "end_array"):
            depth -= 1
