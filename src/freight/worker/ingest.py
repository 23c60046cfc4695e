"""Turn a `validating` batch into request rows: one streaming pass over its input.

OpenAI batches read their input file; Anthropic Message Batches read the create body
stored beside them (store/blob_store.py). Both end the same way: rows queued (invalid ones
already `errored`), totals set, and the batch moved to `in_progress`.

Several workers may see the same `validating` batch. Each ingest starts and ends with
the batch row locked: it starts only while the batch still needs ingesting, and it
commits (last rows, totals, status) only if the rows present are exactly the lines it
accepted; otherwise another worker's ingest interfered, and the batch is left for the
next attempt, which starts over or finds the work done. Every chunk of rows goes in only
while the batch is still `validating`: once it is cancelled, its rows are the cancel's.
A batch whose ingest cannot finish, or that is cancelled first, ends without one:
worker/unqueued.py.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from freight import ids
from freight.config import LimitSettings
from freight.errors import FreightError, IllegalTransition, NotFound
from freight.protocol import cache_keys, message_batch_input
from freight.protocol.batch_input import (
    AcceptedLine,
    FileValidator,
    TooLong,
    iter_lines,
    same_name,
)
from freight.store import batch_requests, batches, blob_store, files, result_order
from freight.store.blob_store import BlobStorage
from freight.store.db import Database
from freight.store.statuses import BatchStatus, RequestStatus
from freight.worker import scheduler, steps

log = logging.getLogger(__name__)
CHUNK = 5000


def no_upstream(model: str | None) -> str | None:
    """The default route: every model runs on this worker's engines."""
    return None


def _row(
    batch_id: str,
    accepted: AcceptedLine,
    policy: scheduler.OrderPolicy,
    route: Callable[[str | None], str | None] = no_upstream,
    key_of: cache_keys.KeyOf | None = None,
) -> dict[str, Any]:
    # every row carries the same keys: an executemany takes its columns from the first row
    upstream = route(accepted.model) if accepted.error_body is None else None
    row: dict[str, Any] = {
        "id": ids.new_request_id(),
        "batch_id": batch_id,
        "line": accepted.line,
        "custom_id": accepted.custom_id,
        "url": accepted.url,
        "body": accepted.body_json,
        "status": RequestStatus.QUEUED,
        "attempts": 0,
        "status_code": None,
        "response_json": None,
        "admission_key": scheduler.admission_key(accepted.body, policy),
        "dedup_key": scheduler.dedup_key(accepted.url, accepted.body, policy),
        # the model, when it runs through an upstream Batch API (upstream/passthrough.py)
        "upstream": upstream,
        "model": accepted.model if accepted.error_body is None else None,  # claims filter by it
        # the result cache's key (store/result_cache.py); never for upstream Batch APIs
        "cache_key": key_of(accepted) if key_of is not None and upstream is None else None,
    }
    if accepted.error_body is not None:
        row.update(
            status=RequestStatus.ERRORED,
            status_code=accepted.error_status,
            response_json=json.dumps(accepted.error_body, separators=(",", ":")),
        )
    return row


def ingest_openai_batch(
    db: Database,
    blobs: BlobStorage,
    batch: batches.BatchRecord,
    limits: LimitSettings,
    policy: scheduler.OrderPolicy,
    *,
    has_model: Callable[[str], bool],
    check_model: Callable[[str, str], str | None],
    route: Callable[[str | None], str | None] = no_upstream,
    canonical_model: Callable[[str], str] = same_name,
    key_of: cache_keys.KeyOf | None = None,
) -> batches.BatchRecord:
    """Validate the batch's input file and queue its lines, or fail the batch.

    Rows go in chunks of CHUNK, each in its own short transaction, so the worker keeps
    recording other batches' results meanwhile. A crash mid-way leaves the batch
    `validating`; the next attempt starts by deleting what the last one inserted.
    """
    with db.write() as conn:
        if (current := start_over(conn, batch.id)) is not None:
            return current
        try:
            input_file = files.get(conn, batch.input_file_id or "")
        except NotFound:
            input_file = None
    if input_file is None:  # deleted after the create: nothing will bring it back
        return fail(db, batch.id, [_input_missing(f"input file {batch.input_file_id}")])
    validator = FileValidator(
        batch.endpoint,
        limits,
        has_model=has_model,
        check_model=check_model,
        canonical_model=canonical_model,
    )
    try:
        fh = blobs.open(input_file.blob)
    except FileNotFoundError:  # not a passing storage fault: the contents are gone
        return fail(db, batch.id, [_input_missing(f"the contents of {input_file.id}")])
    with fh:
        lines = _accepted(validator, iter_lines(fh, limits.max_line_bytes))
        queued = queue_rows(db, batch.id, (_row(batch.id, a, policy, route, key_of) for a in lines))
    if queued is None:
        return moved_on(db, batch.id)
    problems = validator.finish()
    return _commit(
        db, batch.id, queued, model=validator.model, errors=[p.model_dump() for p in problems]
    )


def _accepted(
    validator: FileValidator, lines: Iterable[tuple[int, bytes | TooLong]]
) -> Iterator[AcceptedLine]:
    """The lines to queue, while the file may still be queued (see FileValidator)."""
    for line_no, raw in lines:
        accepted = validator.feed(line_no, raw)
        if validator.is_truncated:
            return
        if accepted is not None and not validator.is_failed:
            yield accepted


def ingest_message_batch(
    db: Database,
    blobs: BlobStorage,
    batch: batches.BatchRecord,
    limits: LimitSettings,
    policy: scheduler.OrderPolicy,
    *,
    has_model: Callable[[str], bool],
    check_model: Callable[[str, str], str | None],
    route: Callable[[str | None], str | None] = no_upstream,
    canonical_model: Callable[[str], str] = same_name,
    key_of: cache_keys.KeyOf | None = None,
) -> batches.BatchRecord:
    """Queue an Anthropic Message Batch's requests from its stored create body.

    The body's shape and custom_ids were checked when it was created; here each
    request's `params` is validated, and an invalid one is stored `errored`. Resumable
    like the OpenAI ingest; the body is deleted once the batch is `in_progress`.
    Requests are read to `[limits] max_json_depth`, as the create read them: a body
    stored while the setting allowed more cannot be read, and the batch ends at once.
    """
    with db.write() as conn:
        if (current := start_over(conn, batch.id)) is not None:
            return current
    name = blob_store.message_batch_requests(batch.id)
    models: set[str | None] = set()
    errors: list[dict[str, Any]] = []
    try:
        with blobs.open(name) as fh:
            requests = message_batch_input.iter_requests(
                fh,
                has_model=has_model,
                check_model=check_model,
                canonical_model=canonical_model,
                max_depth=limits.max_json_depth,
            )
            queued = queue_rows(
                db,
                batch.id,
                (
                    _row(batch.id, a, policy, route, key_of)
                    for a in _noting_models(requests, models)
                ),
            )
    except FileNotFoundError:
        queued = Queued(0, 0, [])
        errors = [_input_missing("the batch's requests")]
    except FreightError as exc:
        # The body passed check_envelope at create, but a request in it still cannot be
        # read here (stored by an older version, or nested deeper than the setting now
        # allows). Trying again cannot help: the step's give-up (worker/unqueued.py) ends
        # the batch at once, with one `errored` line per custom_id, saying why.
        raise steps.Unretryable(f"its requests cannot be read: {exc.message}") from exc
    if queued is None:
        return moved_on(db, batch.id)
    record = _commit(
        db,
        batch.id,
        queued,
        model=models.pop() if len(models) == 1 else None,  # mixed models: no single model
        errors=errors,
    )
    if record.status in (
        BatchStatus.IN_PROGRESS,
        BatchStatus.FAILED,
    ):  # a cancel still needs the custom_ids
        blobs.delete(name)
    return record


def _noting_models(
    requests: Iterable[AcceptedLine], models: set[str | None]
) -> Iterator[AcceptedLine]:
    """`requests` as they come, each one's model added to `models` on the way."""
    for accepted in requests:
        models.add(accepted.model)
        yield accepted


def _input_missing(what: str) -> dict[str, Any]:
    return {
        "code": "input_missing",
        "message": f"The batch's input is gone: {what} no longer exists.",
        "param": None,
        "line": None,
    }


def start_over(
    conn: sa.Connection, batch_id: str, status: BatchStatus = BatchStatus.VALIDATING
) -> batches.BatchRecord | None:
    """Delete what an earlier attempt inserted, if the batch is still `status`.

    None when it is; otherwise the batch as it is now, and nothing was deleted.
    """
    current = moved_from(conn, batch_id, status)
    if current is None:
        batch_requests.delete_for_batch(conn, batch_id)
    return current


def moved_from(
    conn: sa.Connection, batch_id: str, status: BatchStatus
) -> batches.BatchRecord | None:
    """Lock the batch: None while it is still `status`, else the batch as it is now.

    The guard every write of a step takes first: once a batch has moved on (cancelled,
    or ingested by another worker), nothing a late step does may change its rows.
    """
    current = batches.lock(conn, batch_id)
    if current.status == status:
        return None
    log.info("batch %s moved on meanwhile (now %s); stopping", batch_id, current.status)
    return current


@dataclass(frozen=True)
class Queued:
    """What `queue_rows` inserted, and the last chunk it left for the commit."""

    num_rows: int  # in all, the last chunk included
    num_errored: int
    last_chunk: list[dict[str, Any]]


def queue_rows(
    db: Database,
    batch_id: str,
    rows: Iterable[dict[str, Any]],
    status: BatchStatus = BatchStatus.VALIDATING,
) -> Queued | None:
    """Insert `rows` in chunks of CHUNK, each in its own transaction while the batch is
    still `status`; None (the later chunks never written) once it has moved on.

    The last chunk (up to CHUNK rows) is not inserted: the caller commits it with the
    counts and the status change, after `check_complete`.
    """
    num_rows = num_errored = 0
    chunk: list[dict[str, Any]] = []
    for row in rows:
        chunk.append(row)
        num_rows += 1
        num_errored += row["status"] == RequestStatus.ERRORED
        if len(chunk) >= CHUNK:
            if not insert_chunk(db, batch_id, chunk, status):
                return None
            chunk = []
    return Queued(num_rows, num_errored, chunk)


def insert_chunk(
    db: Database,
    batch_id: str,
    chunk: list[dict[str, Any]],
    status: BatchStatus = BatchStatus.VALIDATING,
) -> bool:
    """Insert rows while the batch is still `status`; False (nothing written) otherwise."""
    with db.write() as conn:
        if moved_from(conn, batch_id, status) is not None:
            return False
        batch_requests.insert_many(conn, chunk)
        return True


def moved_on(db: Database, batch_id: str) -> batches.BatchRecord:
    """The batch as it is now, after it left the status a step began in."""
    with db.read() as conn:
        return batches.get(conn, batch_id)


def check_complete(conn: sa.Connection, batch_id: str, queued: Queued) -> None:
    """Refuse to commit unless the stored rows plus the last chunk are every row queued."""
    num_stored = batch_requests.count_for_batch(conn, batch_id)
    num_last = len(queued.last_chunk)
    if num_stored + num_last != queued.num_rows:
        raise IllegalTransition(
            f"batch {batch_id}: another worker's ingest interfered "
            f"({num_stored} + {num_last} rows for {queued.num_rows} lines); it starts over"
        )


def _commit(
    db: Database,
    batch_id: str,
    queued: Queued,
    *,
    model: str | None,
    errors: list[dict[str, Any]],
) -> batches.BatchRecord:
    """Insert the last rows and move the batch on: in_progress, or failed with `errors`."""
    if errors:
        return fail(db, batch_id, errors, detail=f"{len(errors)} validation errors")
    with db.write() as conn:
        # Ingested by another worker, or cancelled: the cancel queues its own rows.
        if (current := moved_from(conn, batch_id, BatchStatus.VALIDATING)) is not None:
            return current
        check_complete(conn, batch_id, queued)
        batch_requests.insert_many(conn, queued.last_chunk)
        batches.set_values(
            conn,
            batch_id,
            model=model,
            num_total=queued.num_rows,
            num_errored=queued.num_errored,
        )
        result_order.number_finished(conn, batch_id)  # lines invalid at ingest: results now
        return batches.transition(
            conn, batch_id, BatchStatus.IN_PROGRESS, detail=f"{queued.num_rows} requests"
        )


def fail(
    db: Database, batch_id: str, errors: list[dict[str, Any]], *, detail: str | None = None
) -> batches.BatchRecord:
    """Move a `validating` batch to `failed` with `errors` (OpenAI's batch `errors` items)."""
    with db.write() as conn:
        if (current := start_over(conn, batch_id)) is not None:
            return current
        log.info("batch %s failed: %s", batch_id, errors[0]["message"])
        return batches.transition(
            conn,
            batch_id,
            BatchStatus.FAILED,
            detail=detail or f"{len(errors)} errors",
            errors_json=json.dumps(errors),
        )
