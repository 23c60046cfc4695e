"""Finalisation: write a batch's results in its API's shape and move it to its end status.

OpenAI batches get an output and an error file (`files` rows the Files API serves):
`write_files`. Anthropic Message Batches get one results JSONL blob named after the
batch, served by GET /v1/messages/batches/{id}/results: `write_message_results`. Which
one a batch gets is its lifecycle's choice (worker/lifecycle.py), which runs `start`
first. Results are written here, once, when processing ends, rather than streamed from
the requests table at each download: Anthropic offers results only after the batch has
ended anyway, a download is then a plain file send (no long read transaction per
client), and both APIs share this one resumable pass.

Idempotent and resumable: results are written to fresh (or deterministically named,
atomically replaced) blobs first, then the file rows, the batch's file ids and its
status change commit in one transaction. A crash before that commit leaves the batch
where it was, and the next worker starts over. When several workers finalise the same
batch at once, the conditional status change lets exactly one commit; the others roll
back their file rows, delete their blobs and step aside (`_another_worker_won`).

When finalising has failed every attempt (worker/steps.py), two ends remain, and the
batch reaches its end status either way (worker/lifecycle.py `give_up_end`):

- writing with `salvage`: every result line that can be written is. A result that
  cannot be written (its stored JSON does not load or format) becomes an error line for
  its custom_id, saying why, and the request is recorded `errored`, so the counts still
  match the lines. This is what the worker tries first.
- `end_without_results`, if even that fails: the batch ends with no result files (an
  empty results file for a Message Batch) and `errors` saying why. The requests' rows
  are kept; nothing is deleted.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
from collections.abc import Callable
from typing import Any, NamedTuple

from freight.errors import IllegalTransition
from freight.protocol import anthropic_wire
from freight.store import batch_requests, batches, blob_store, faults, files, statuses
from freight.store.blob_store import BlobStorage
from freight.store.db import Database
from freight.store.statuses import BatchStatus, RequestStatus

log = logging.getLogger(__name__)


def format_line(row: Any) -> bytes:
    """One BatchRequestOutput line, assembled from stored JSON without re-encoding it."""
    custom_id = json.dumps(row.custom_id, ensure_ascii=False)
    if row.response_json is not None:
        request_id = "req_" + row.id.removeprefix("batch_req_")
        response = (
            f'{{"status_code":{row.status_code},"request_id":"{request_id}",'
            f'"body":{row.response_json}}}'
        )
        line = f'{{"id":"{row.id}","custom_id":{custom_id},"response":{response},"error":null}}'
    else:
        error = row.error_json or json.dumps({"code": "unknown", "message": "no result"})
        line = f'{{"id":"{row.id}","custom_id":{custom_id},"response":null,"error":{error}}}'
    return line.encode() + b"\n"


def format_message_result(row: Any) -> bytes:
    """One Anthropic result line (MessageBatchIndividualResponse) from a finished request."""
    custom_id = json.dumps(row.custom_id, ensure_ascii=False)
    if row.status == RequestStatus.SUCCEEDED:
        result = f'{{"type":"succeeded","message":{row.response_json}}}'
    elif row.status == RequestStatus.CANCELLED:
        result = '{"type":"canceled"}'
    elif row.status == RequestStatus.EXPIRED:
        result = '{"type":"expired"}'
    else:
        request_id = "req_" + row.id.removeprefix("batch_req_")
        if row.response_json is not None:  # a rejected request, stored in Anthropic's shape
            error = json.loads(row.response_json)
            error["request_id"] = request_id
        else:  # the worker gave up on it (error_json: {code, message})
            reason = json.loads(row.error_json or "{}").get("message", "no result")
            error = anthropic_wire.error_body(500, reason, request_id)
        result = json.dumps({"type": "errored", "error": error}, ensure_ascii=False)
    return f'{{"custom_id":{custom_id},"result":{result}}}\n'.encode()


def format_line_or_error(row: Any) -> bytes:
    """`format_line`, or, for a result that cannot be formatted, the error line a
    salvaging finalise writes for it (`_Lines`): what GET /v1/batches/{id}/results serves."""
    return _Lines("results").format(format_line, row)


class ResultRow(NamedTuple):
    """What a result line is made from (store/line_pages.py, RESULT_COLUMNS)."""

    id: str
    line: int
    custom_id: str
    status: str
    status_code: int | None
    response_json: str | None
    error_json: str | None


class _Lines:
    """Formats result lines; when salvaging, one that fails becomes an error line."""

    def __init__(self, salvage: str | None) -> None:
        self.salvage = salvage
        self.replaced: dict[str, str] = {}  # request id -> the error_json it now carries

    def format(self, fmt: Callable[[Any], bytes], row: Any) -> bytes:
        if self.salvage is None:
            return fmt(row)
        try:
            return fmt(row)
        except Exception as exc:
            if faults.is_storage_fault(exc):
                raise
            reason = f"{type(exc).__name__}: {exc}"[:500]
            error_json = json.dumps(
                {
                    "code": "result_unwritable",
                    "message": f"This request's result could not be written ({reason}).",
                }
            )
            self.replaced[row.id] = error_json
            errored = ResultRow(
                row.id, row.line, row.custom_id, RequestStatus.ERRORED, None, None, error_json
            )
            return fmt(errored)

    def is_replaced(self, row: Any) -> bool:
        return row.id in self.replaced

    def record(self, conn: Any, batch_id: str) -> None:
        """Store the replaced results as the errors their lines say (same transaction)."""
        for request_id, error_json in self.replaced.items():
            batch_requests.replace_result(conn, batch_id, request_id, error_json)
        if self.replaced:
            log.error(
                "batch %s: %d results could not be written; their lines say so",
                batch_id,
                len(self.replaced),
            )


def _another_worker_won(db: Database, batch_id: str) -> batches.BatchRecord:
    """After a lost status change: step aside if another worker moved the batch on."""
    with db.read() as conn:
        batch = batches.get(conn, batch_id)
    if batch.status != BatchStatus.FINALIZING and not batch.is_terminal:
        raise IllegalTransition(f"batch {batch_id} is {batch.status}; it cannot be finalised")
    log.info("batch %s: another worker is finalising it (now %s)", batch_id, batch.status)
    return batch


def _new_file(blobs: BlobStorage, batch: batches.BatchRecord, name: str) -> files.FileRecord:
    return files.new_record(
        project=batch.project,
        filename=name,
        purpose=files.BATCH_OUTPUT,
        num_bytes=0,
        expires_after=batch.output_expires_after,
    )


def _detail(num_lines: int, salvage: str | None) -> str:
    detail = f"{num_lines} results"
    return detail if salvage is None else f"{detail}, salvaged after {salvage}"


def start(db: Database, batch_id: str, end_status: BatchStatus) -> batches.BatchRecord:
    """The batch about to be finalised as `end_status`: moved to `finalizing` if it ends
    `completed`; returned as it is if it has already ended (its results are written)."""
    with db.read() as conn:
        batch = batches.get(conn, batch_id)
    if batch.is_terminal:
        return batch  # another worker finished it since this one looked
    if batch.status == BatchStatus.IN_PROGRESS and end_status == BatchStatus.COMPLETED:
        try:
            with db.write() as conn:
                batch = batches.transition(conn, batch_id, BatchStatus.FINALIZING)
        except IllegalTransition:
            return _another_worker_won(db, batch_id)
    return batch


def write_files(
    db: Database,
    blobs: BlobStorage,
    batch: batches.BatchRecord,
    end_status: BatchStatus,
    salvage: str | None,
) -> batches.BatchRecord:
    """Write an OpenAI batch's output and error files and move it to `end_status` (after
    `start`).

    `salvage`: why earlier attempts failed, when this is the last one; then a result that
    cannot be written becomes an error line (see the module docstring).
    """
    batch_id = batch.id
    output = _new_file(blobs, batch, f"{batch_id}_output.jsonl")
    error = _new_file(blobs, batch, f"{batch_id}_error.jsonl")
    num_output = num_error = 0
    lines = _Lines(salvage)
    with (
        blobs.create(output.blob) as out_fh,
        blobs.create(error.blob) as err_fh,
        db.read() as conn,
    ):
        for row in batch_requests.iter_finished(conn, batch_id):
            if row.status in batch_requests.OPEN:
                continue  # cannot happen once num_open is 0; never write half a result
            line = lines.format(format_line, row)
            if row.status == RequestStatus.SUCCEEDED and not lines.is_replaced(row):
                out_fh.write(line)
                num_output += 1
            else:
                err_fh.write(line)
                num_error += 1
    kept = []
    values: dict[str, Any] = {"output_file_id": None, "error_file_id": None}
    for record, count, key in (
        (output, num_output, "output_file_id"),
        (error, num_error, "error_file_id"),
    ):
        if count:
            kept.append(dataclasses.replace(record, bytes=blobs.size(record.blob)))
            values[key] = record.id
        else:
            blobs.delete(record.blob)
    try:
        with db.write() as conn:
            for record in kept:
                files.insert(conn, record)
            lines.record(conn, batch_id)
            detail = f"{num_output} output lines, {num_error} error lines"
            if salvage is not None:
                detail += f", salvaged after {salvage}"
            batch = batches.transition(conn, batch_id, end_status, detail=detail, **values)
    except Exception as exc:
        for record in kept:
            blobs.delete(record.blob)
        if isinstance(exc, IllegalTransition):
            return _another_worker_won(db, batch_id)
        raise
    log.info("batch %s %s: %d ok, %d errors", batch_id, end_status, num_output, num_error)
    return batch


def write_message_results(
    db: Database,
    blobs: BlobStorage,
    batch: batches.BatchRecord,
    end_status: BatchStatus,
    salvage: str | None,
) -> batches.BatchRecord:
    """Write a Message Batch's results blob and move it to `end_status` (after `start`).

    `salvage`: why earlier attempts failed, when this is the last one; then a result that
    cannot be written becomes an error line (see the module docstring).
    """
    num_lines = 0
    lines = _Lines(salvage)
    with blobs.create(blob_store.message_batch_results(batch.id)) as fh, db.read() as conn:
        for row in batch_requests.iter_finished(conn, batch.id):
            if row.status not in batch_requests.OPEN:
                fh.write(lines.format(format_message_result, row))
                num_lines += 1
    try:
        with db.write() as conn:
            lines.record(conn, batch.id)
            detail = _detail(num_lines, salvage)
            batch = batches.transition(conn, batch.id, end_status, detail=detail)
    except IllegalTransition:
        return _another_worker_won(db, batch.id)
    log.info("message batch %s %s: %d results", batch.id, end_status, num_lines)
    return batch


# A batch's end status -> how its open requests end with it.
CLOSING = {
    BatchStatus.CANCELLED: (RequestStatus.CANCELLED, statuses.CANCELLED_ERROR),
    BatchStatus.EXPIRED: (RequestStatus.EXPIRED, statuses.EXPIRED_ERROR),
}


def close_open(db: Database, batch_id: str, end_status: BatchStatus) -> None:
    """End the open requests of a batch that ends `end_status` without its step (a cancel
    or expiry that failed every attempt), as that step would have ended them."""
    if end_status not in CLOSING:
        return
    with db.write() as conn:
        if not batches.lock(conn, batch_id).is_terminal:
            batch_requests.close_open(conn, batch_id, *CLOSING[end_status])
            batch_requests.recount(conn, batch_id)


def end_without_results(
    db: Database,
    blobs: BlobStorage,
    batch_id: str,
    end_status: BatchStatus,
    reason: str,
    *,
    empty_blob: str | None = None,
) -> batches.BatchRecord:
    """The last resort: end the batch as `end_status` with no result lines.

    Open requests end as the cancel or expiry would end them; `errors` (OpenAI's batch
    errors shape, also stored for a Message Batch) says why there are no results.
    `empty_blob`: the results blob the batch's API serves once it has ended, written
    empty so that it answers, if only with nothing.
    """
    with db.read() as conn:
        batch = batches.get(conn, batch_id)
    if batch.is_terminal:
        return batch
    if empty_blob is not None:
        with contextlib.suppress(Exception), blobs.create(empty_blob):
            pass
    message = f"The batch's results could not be written: {reason}"
    error = {"code": "results_unavailable", "message": message, "param": None, "line": None}
    with db.write() as conn:
        batch = batches.lock(conn, batch_id)
        if batch.is_terminal:
            return batch
        if end_status in CLOSING:
            batch_requests.close_open(conn, batch_id, *CLOSING[end_status])
        batch_requests.recount(conn, batch_id)  # a never-ingested batch's total: the rows there are
        if batch.status == BatchStatus.IN_PROGRESS and end_status == BatchStatus.COMPLETED:
            batches.transition(conn, batch_id, BatchStatus.FINALIZING)
        batch = batches.transition(
            conn,
            batch_id,
            end_status,
            detail="no results: " + reason[:200],
            errors_json=json.dumps([error]),
            output_file_id=None,
            error_file_id=None,
        )
    log.error("batch %s ended %s without results: %s", batch_id, end_status, reason)
    return batch
