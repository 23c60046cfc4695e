"""Retry an ended batch: a new batch of the requests that did not succeed (a Freight extension).

POST /v1/batches/{id}/retry, `freight batches retry ID` and the dashboard's button. The
new batch runs the same lines (custom_id, url, body) as the original's input, for the
requests store/retry_lines.py picks, with the same endpoint, completion window, output
expiry (`output_expires_after`), priority and result-cache switch; its
input file (purpose `batch`, held to the project's storage quota like an upload) is
written from the stored requests, so it works after the original input file is gone.
Its metadata is the original's plus `freight_retry_of`: the original batch's id.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from freight import ids
from freight.errors import Conflict, FreightError
from freight.protocol import openai_wire
from freight.service import intake, quotas
from freight.service.runtime import Service
from freight.store import batches, files, retry_lines
from freight.store.statuses import BatchStatus

RETRY_OF = "freight_retry_of"
INCLUDABLE = (retry_lines.INVALID_REQUEST,)


def retry_batch(
    svc: Service, batch_id: str, visible: str | None, *, include: Sequence[str]
) -> batches.BatchRecord:
    """Create the retry of `batch_id` (in its project); Conflict unless it has ended and
    has a request to run again."""
    with svc.db.read() as conn:
        original = batches.get(conn, batch_id, visible, api="openai")
    if not original.is_terminal:
        raise Conflict(
            f"Batch {batch_id} is still {original.status}; a batch can be retried once it "
            "has ended. Wait for it, or cancel it first.",
            param="batch_id",
            code="batch_not_ended",
        )
    include_invalid = retry_lines.INVALID_REQUEST in include
    blob = ids.new_id("blob-")
    max_bytes = svc.settings.limits.max_file_bytes
    hold = svc.quotas.reserve_storage(svc.db, original.project, blob, declared=0, max_bytes=0)
    try:
        num_lines, num_bytes = _write_input(svc, original, blob, include_invalid, hold, max_bytes)
        if num_lines == 0:
            raise _nothing_to_retry(original, include_invalid)
        record = intake.add_uploaded_file(
            svc, hold, filename=f"{batch_id}_retry.jsonl", purpose="batch", num_bytes=num_bytes
        )
    except BaseException:
        svc.blobs.delete(blob)
        hold.release()
        raise
    create = openai_wire.CreateBatch(
        input_file_id=record.id,
        endpoint=original.endpoint,
        completion_window=original.completion_window,
        metadata=_metadata(original, svc.settings.limits.max_metadata_pairs),
        output_expires_after=_output_expiry(original),
        cache=original.cache,
        priority=original.priority,
    )
    try:
        return intake.create_openai_batch(svc, original.project, create)
    except FreightError:
        with svc.db.write() as conn:
            files.delete(conn, record.id)
        svc.blobs.delete(blob)
        raise


def _write_input(
    svc: Service,
    original: batches.BatchRecord,
    blob: str,
    include_invalid: bool,
    hold: quotas.StorageHold,
    max_bytes: int,
) -> tuple[int, int]:
    """Write the retry's input lines to `blob`, growing `hold` as they go; (lines, bytes)."""
    num_lines = num_bytes = 0
    with svc.blobs.create(blob) as fh, svc.db.read() as conn:
        for row in retry_lines.iter_retryable(conn, original.id, include_invalid=include_invalid):
            custom_id = json.dumps(row.custom_id, ensure_ascii=False)
            line = (
                f'{{"custom_id":{custom_id},"method":"POST","url":{json.dumps(row.url)},'
                f'"body":{row.body}}}\n'
            ).encode()
            num_bytes += len(line)
            if num_bytes > max_bytes:
                raise Conflict(
                    f"The retry of batch {original.id} would need an input file larger than "
                    f"{max_bytes} bytes ([limits] max_file_bytes).",
                    param="batch_id",
                    code="retry_too_large",
                )
            hold.cover(num_bytes)
            fh.write(line)
            num_lines += 1
    return num_lines, num_bytes


def _nothing_to_retry(original: batches.BatchRecord, include_invalid: bool) -> Conflict:
    if original.status == BatchStatus.FAILED:
        why = "it failed validation, so none of its requests ran; fix its input file instead"
    elif include_invalid:
        why = "every request of it succeeded"
    else:
        why = (
            "every request of it succeeded or was refused as invalid; send "
            '{"include": ["invalid_request"]} to run those again too'
        )
    return Conflict(
        f"Batch {original.id} has nothing to retry: {why}.",
        param="batch_id",
        code="nothing_to_retry",
    )


def _output_expiry(original: batches.BatchRecord) -> openai_wire.ExpiresAfter | None:
    seconds = original.output_expires_after
    if seconds is None:
        return None
    return openai_wire.ExpiresAfter(anchor="created_at", seconds=seconds)


def _metadata(original: batches.BatchRecord, max_pairs: int) -> dict[str, str]:
    """The original's metadata and `freight_retry_of`, within the metadata limit (the
    original's last keys give way)."""
    kept = {k: v for k, v in (original.metadata or {}).items() if k != RETRY_OF}
    pairs = list(kept.items())[: max(max_pairs - 1, 0)]
    return {**dict(pairs), RETRY_OF: original.id}
