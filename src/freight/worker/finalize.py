"""Finalisation: write a batch's results in its API's shape and move it to its end status.

OpenAI batches get an output and an error file (`files` rows the Files API serves).
Anthropic Message Batches get one results JSONL blob named after the batch, served by
GET /v1/messages/batches/{id}/results. Results are written here, once, when processing
ends, rather than streamed from the requests table at each download: Anthropic offers
results only after the batch has ended anyway, a download is then a plain file send
(no long read transaction per client), and both APIs share this one resumable pass.

Idempotent and resumable: results are written to fresh (or deterministically named,
atomically replaced) blobs first, then the file rows, the batch's file ids and its
status change commit in one transaction. A crash before that commit leaves the batch
where it was, and the next worker starts over. When several workers finalise the same
batch at once, the conditional status change lets exactly one commit; the others roll
back their file rows, delete their blobs and step aside (`_another_worker_won`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from typing import Any

from freight.errors import IllegalTransition
from freight.protocol import anthropic
from freight.store import batches, files, requests
from freight.store import blobs as blob_names
from freight.store.blobs import BlobStorage
from freight.store.db import Database

log = logging.getLogger(__name__)

CANCELLED_ERROR = json.dumps(
    {
        "code": "batch_cancelled",
        "message": "This request was not executed because the batch was cancelled.",
    }
)
EXPIRED_ERROR = json.dumps(
    {
        "code": "batch_expired",
        "message": "This request could not be executed before the completion window expired.",
    }
)


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
    if row.status == requests.SUCCEEDED:
        result = f'{{"type":"succeeded","message":{row.response_json}}}'
    elif row.status == requests.CANCELLED:
        result = '{"type":"canceled"}'
    elif row.status == requests.EXPIRED:
        result = '{"type":"expired"}'
    else:
        request_id = "req_" + row.id.removeprefix("batch_req_")
        if row.response_json is not None:  # a rejected request, stored in Anthropic's shape
            error = json.loads(row.response_json)
            error["request_id"] = request_id
        else:  # the worker gave up on it (error_json: {code, message})
            reason = json.loads(row.error_json or "{}").get("message", "no result")
            error = anthropic.error_body(500, reason, request_id)
        result = json.dumps({"type": "errored", "error": error}, ensure_ascii=False)
    return f'{{"custom_id":{custom_id},"result":{result}}}\n'.encode()


def _finalize_message_batch(
    db: Database, blobs: BlobStorage, batch: batches.BatchRecord, end_status: str
) -> batches.BatchRecord:
    num_lines = 0
    with blobs.create(blob_names.message_batch_results(batch.id)) as fh, db.read() as conn:
        for row in requests.iter_finished(conn, batch.id):
            if row.status not in requests.OPEN:
                fh.write(format_message_result(row))
                num_lines += 1
    try:
        with db.write() as conn:
            batch = batches.transition(conn, batch.id, end_status, detail=f"{num_lines} results")
    except IllegalTransition:
        return _another_worker_won(db, batch.id)
    log.info("message batch %s %s: %d results", batch.id, end_status, num_lines)
    return batch


def _another_worker_won(db: Database, batch_id: str) -> batches.BatchRecord:
    """After a lost status change: step aside if another worker moved the batch on."""
    with db.read() as conn:
        batch = batches.get(conn, batch_id)
    if batch.status != "finalizing" and not batch.is_terminal:
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


def finalize(
    db: Database, blobs: BlobStorage, batch_id: str, end_status: str
) -> batches.BatchRecord:
    """Write the result files and move the batch to `end_status` (from its current status)."""
    with db.read() as conn:
        batch = batches.get(conn, batch_id)
    if batch.is_terminal:
        return batch  # another worker finished it since this one looked
    if batch.status == "in_progress" and end_status == "completed":
        try:
            with db.write() as conn:
                batch = batches.transition(conn, batch_id, "finalizing")
        except IllegalTransition:
            return _another_worker_won(db, batch_id)
    if batch.api == "anthropic":
        return _finalize_message_batch(db, blobs, batch, end_status)
    output = _new_file(blobs, batch, f"{batch_id}_output.jsonl")
    error = _new_file(blobs, batch, f"{batch_id}_error.jsonl")
    num_output = num_error = 0
    with (
        blobs.create(output.blob) as out_fh,
        blobs.create(error.blob) as err_fh,
        db.read() as conn,
    ):
        for row in requests.iter_finished(conn, batch_id):
            if row.status in requests.OPEN:
                continue  # cannot happen once num_open is 0; never write half a result
            if row.status == requests.SUCCEEDED:
                out_fh.write(format_line(row))
                num_output += 1
            else:
                err_fh.write(format_line(row))
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
            batch = batches.transition(
                conn,
                batch_id,
                end_status,
                detail=f"{num_output} output lines, {num_error} error lines",
                **values,
            )
    except Exception as exc:
        for record in kept:
            blobs.delete(record.blob)
        if isinstance(exc, IllegalTransition):
            return _another_worker_won(db, batch_id)
        raise
    log.info("batch %s %s: %d ok, %d errors", batch_id, end_status, num_output, num_error)
    return batch
