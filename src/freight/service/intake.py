"""Accepting work: the checks and inserts behind creating a batch (API and `freight run`).

Both APIs create the same thing: a `batches` row in `validating` that the worker ingests
(worker/ingest.py) into one `requests` row per request. An Anthropic Message Batch is
`api="anthropic"`, endpoint `/v1/messages`, and its requests come from the create body.
"""

from __future__ import annotations

import json
import re
import time

import sqlalchemy as sa

from freight import ids
from freight.config import MIN_BATCH_PRIORITY, LimitSettings, Settings
from freight.errors import FreightError, InvalidRequest
from freight.protocol import batch_input, endpoints, message_batch_input, openai_wire
from freight.service import completion, quotas
from freight.service.runtime import Service
from freight.store import batches, blob_store, files

_WINDOW = re.compile(r"^([1-9][0-9]{0,6})([smhd])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def window_seconds(window: str) -> int:
    """`24h` as upstream; any `<n>s|m|h|d` as an extension (e.g. `5s` for tests, `7d`)."""
    match = _WINDOW.fullmatch(window)
    if match is None:
        raise InvalidRequest(
            f"Invalid completion_window {window!r}: use '24h' (or any '<n>s', '<n>m', "
            "'<n>h', '<n>d').",
            param="completion_window",
        )
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def bounded_window_seconds(window: str, limits: LimitSettings) -> int:
    """`window_seconds`, refusing a window longer than `[limits] max_completion_window`."""
    seconds = window_seconds(window)
    longest = limits.max_completion_window
    if seconds > window_seconds(longest):
        raise InvalidRequest(
            f"completion_window {window!r} is longer than this server allows: use from '1s' "
            f"up to {longest!r} ([limits] max_completion_window), e.g. '24h'.",
            param="completion_window",
        )
    return seconds


def check_metadata(metadata: dict[str, str] | None, limits: LimitSettings) -> None:
    if not metadata:
        return
    if len(metadata) > limits.max_metadata_pairs:
        raise InvalidRequest(
            f"metadata has {len(metadata)} pairs; at most {limits.max_metadata_pairs} allowed.",
            param="metadata",
        )
    for key, value in metadata.items():
        if len(key) > limits.max_metadata_key_chars:
            raise InvalidRequest(
                f"metadata key {key[:20]!r}... is {len(key)} characters; at most "
                f"{limits.max_metadata_key_chars} allowed.",
                param="metadata",
            )
        if len(value) > limits.max_metadata_value_chars:
            raise InvalidRequest(
                f"metadata value for {key!r} is {len(value)} characters; at most "
                f"{limits.max_metadata_value_chars} allowed.",
                param="metadata",
            )


def check_priority(priority: int | None, settings: Settings, project: str) -> int:
    """The batch's priority (default 0), refused beyond the project's bound."""
    if priority is None:
        return 0
    highest = settings.max_batch_priority(project)
    if not MIN_BATCH_PRIORITY <= priority <= highest:
        raise InvalidRequest(
            f"priority {priority} is out of range: use an integer from {MIN_BATCH_PRIORITY} "
            f"up to {highest}, this project's bound ([scheduler] max_batch_priority, or "
            "[quotas.projects.NAME] max_batch_priority). Higher runs first; default 0.",
            param="priority",
        )
    return priority


def create_openai_batch(
    svc: Service, owner: str, req: openai_wire.CreateBatch, *, is_bounded: bool = True
) -> batches.BatchRecord:
    """Check a create-batch request and insert the batch as `validating`.

    `is_bounded=False` lifts `[limits] max_completion_window` (`freight run` has no
    deadline). The queue quota is checked in the transaction that inserts (service/quotas.py).
    """
    endpoints.get(req.endpoint, api="openai")  # a 400 naming the endpoints there are
    if is_bounded:
        seconds = bounded_window_seconds(req.completion_window, svc.settings.limits)
    else:
        seconds = window_seconds(req.completion_window)
    check_metadata(req.metadata, svc.settings.limits)
    priority = check_priority(req.priority, svc.settings, owner)
    now_ns = time.time_ns()
    now = now_ns // 1_000_000_000
    with svc.db.read() as conn:
        input_file = _input_file(conn, req.input_file_id, owner)
    model = _first_model(svc, input_file.blob)
    with svc.db.read() as conn:
        # An estimate from the line count (service/completion.py), outside the write lock.
        expected = completion.initial_completion_at(
            conn,
            model=model,
            endpoint_url=req.endpoint,
            num_requests=lambda: svc.quotas.line_count(svc.blobs, input_file.blob),
            expires_at=now + seconds,
            created_ns=now_ns,
            now=now_ns / 1e9,
            priority=priority,
        )

    def insert(conn: sa.Connection) -> batches.BatchRecord:
        _input_file(conn, input_file.id, owner)  # still there
        return batches.insert(
            conn,
            id=ids.new_id("batch_"),
            project=owner,
            api="openai",
            endpoint=req.endpoint,
            input_file_id=input_file.id,
            completion_window=req.completion_window,
            metadata_json=json.dumps(req.metadata) if req.metadata else None,
            output_expires_after=(
                req.output_expires_after.seconds if req.output_expires_after else None
            ),
            created_at=now,
            created_ns=now_ns,
            expires_at=now + seconds,
            expected_completion_at=expected,
            cache=req.cache,
            priority=priority,
        )

    return svc.quotas.admit_batch(
        svc.db, svc.blobs, owner, lambda: svc.quotas.line_count(svc.blobs, input_file.blob), insert
    )


def _first_model(svc: Service, blob: str) -> str | None:
    """The model of the file's first line, if it names a known one: what the batch's
    expected completion is first estimated for (reads only the first line)."""
    try:
        with svc.blobs.open(blob) as fh:
            first = batch_input.first_object(fh, svc.settings.limits.max_line_bytes)
    except FileNotFoundError:
        return None
    body = first.get("body") if first else None
    model = body.get("model") if isinstance(body, dict) else None
    return model if isinstance(model, str) and svc.registry.has(model) else None


def _input_file(conn: sa.Connection, file_id: str, owner: str) -> files.FileRecord:
    input_file = files.get(conn, file_id, owner)
    if input_file.purpose != "batch":
        raise InvalidRequest(
            f"File {input_file.id} has purpose '{input_file.purpose}'; a batch input file "
            "must be uploaded with purpose 'batch'.",
            param="input_file_id",
        )
    return input_file


MESSAGE_BATCH_WINDOW = "24h"  # Anthropic: a batch expires 24 hours after creation


def create_message_batch(
    svc: Service,
    owner: str,
    batch_id: str,
    *,
    window: str = MESSAGE_BATCH_WINDOW,
    hold: quotas.StorageHold | None = None,
) -> batches.BatchRecord:
    """Check a stored Message Batch create body and insert the batch as `validating`.

    The body is already in the blob store under `blobs.message_batch_requests(batch_id)`;
    an invalid one is deleted and rejected here, with the index of the offending request.
    `hold`, the storage held while the body arrived, is released in the transaction that
    inserts the batch: from then on the batch row is what keeps the body.
    """
    name = blob_store.message_batch_requests(batch_id)
    try:
        with svc.blobs.open(name) as fh:
            num_requests = message_batch_input.check_envelope(fh, svc.settings.limits)
    except Exception:
        svc.blobs.delete(name)
        raise

    def insert(conn: sa.Connection) -> batches.BatchRecord:
        if hold is not None:
            hold.release(conn)
        now_ns = time.time_ns()
        now = now_ns // 1_000_000_000
        return batches.insert(
            conn,
            id=batch_id,
            project=owner,
            api="anthropic",
            endpoint="/v1/messages",
            completion_window=window,
            created_at=now,
            created_ns=now_ns,
            expires_at=now + window_seconds(window),
            num_total=num_requests,
        )

    try:
        return svc.quotas.admit_batch(svc.db, svc.blobs, owner, lambda: num_requests, insert)
    except Exception:
        svc.blobs.delete(name)
        raise


def add_uploaded_file(
    svc: Service,
    hold: quotas.StorageHold,
    *,
    filename: str | None,
    purpose: str,
    num_bytes: int,
    expires_after: int | None = None,
) -> files.FileRecord:
    """An upload streamed under `hold` becomes its file (the Files API and the dashboard)."""
    record = files.new_record(
        project=hold.project,
        filename=filename or "upload.jsonl",
        purpose=purpose,
        num_bytes=num_bytes,
        expires_after=expires_after,
        blob=hold.blob,
        file_id=hold.file_id,
    )
    with svc.db.write() as conn:
        hold.complete(conn, record)
    return record


def create_openai_batch_from_upload(
    svc: Service,
    hold: quotas.StorageHold,
    create: openai_wire.CreateBatch,
    *,
    filename: str | None,
    num_bytes: int,
) -> batches.BatchRecord:
    """Upload, then create, in one step (the dashboard's form): the held upload becomes the
    batch's input file; if the batch is refused, the file goes too (the caller's hold
    deletes its blob)."""
    record = add_uploaded_file(svc, hold, filename=filename, purpose="batch", num_bytes=num_bytes)
    try:
        return create_openai_batch(
            svc, hold.project, create.model_copy(update={"input_file_id": record.id})
        )
    except FreightError:
        with svc.db.write() as conn:
            files.delete(conn, record.id)
        raise
