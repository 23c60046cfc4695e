"""Stored records rendered as wire objects: OpenAI's, and Anthropic's derived view."""

from __future__ import annotations

from freight.protocol import anthropic_wire, openai_wire
from freight.store.batches import BatchRecord
from freight.store.files import FileRecord
from freight.store.statuses import BatchStatus


def file_object(record: FileRecord) -> openai_wire.FileObject:
    return openai_wire.FileObject(
        id=record.id,
        bytes=record.bytes,
        created_at=record.created_at,
        filename=record.filename,
        purpose=record.purpose,
        expires_at=record.expires_at,
    )


def batch_object(record: BatchRecord) -> openai_wire.Batch:
    errors = record.errors
    usage = None
    if record.input_tokens or record.output_tokens:
        usage = openai_wire.BatchUsage(
            input_tokens=record.input_tokens,
            input_tokens_details=openai_wire.InputTokensDetails(cached_tokens=record.cached_tokens),
            output_tokens=record.output_tokens,
            output_tokens_details=openai_wire.OutputTokensDetails(reasoning_tokens=0),
            total_tokens=record.input_tokens + record.output_tokens,
        )
    return openai_wire.Batch(
        id=record.id,
        endpoint=record.endpoint,
        errors=openai_wire.BatchErrors(data=[openai_wire.BatchError(**e) for e in errors])
        if errors
        else None,
        input_file_id=record.input_file_id or "",
        completion_window=record.completion_window,
        status=record.status,  # type: ignore[arg-type]
        output_file_id=record.output_file_id,
        error_file_id=record.error_file_id,
        created_at=record.created_at,
        in_progress_at=record.in_progress_at,
        expires_at=record.expires_at,
        finalizing_at=record.finalizing_at,
        completed_at=record.completed_at,
        failed_at=record.failed_at,
        expired_at=record.expired_at,
        cancelling_at=record.cancelling_at,
        cancelled_at=record.cancelled_at,
        request_counts=openai_wire.BatchRequestCounts(
            total=record.num_total,
            completed=record.num_succeeded,
            failed=record.num_errored + record.num_cancelled + record.num_expired,
        ),
        metadata=record.metadata,
        model=record.model,
        usage=usage,
        expected_completion_at=record.expected_completion_at,
        cache=record.cache,
        priority=record.priority,
        at_risk=record.is_at_risk,
    )


def list_page(
    items: list[openai_wire.FileObject] | list[openai_wire.Batch], has_more: bool
) -> openai_wire.ListPage:
    return openai_wire.ListPage(
        data=items,
        first_id=items[0].id if items else None,
        last_id=items[-1].id if items else None,
        has_more=has_more,
    )


# One lifecycle, two views: Anthropic sees in_progress / canceling / ended.
_PROCESSING_STATUS: dict[BatchStatus, anthropic_wire.ProcessingStatus] = {
    BatchStatus.VALIDATING: "in_progress",
    BatchStatus.IN_PROGRESS: "in_progress",
    BatchStatus.FINALIZING: "in_progress",
    BatchStatus.CANCELLING: "canceling",
}


def message_batch(record: BatchRecord, base_url: str) -> anthropic_wire.MessageBatch:
    """The Anthropic MessageBatch for a batch; `base_url` makes `results_url` absolute.

    As Anthropic documents, every request counts as `processing` until the whole batch
    has ended; only then do the counts move to succeeded / errored / canceled / expired.
    Results exist once the batch has ended (a batch that failed ingest has none).
    """
    status = _PROCESSING_STATUS.get(record.status, "ended")
    is_ended = status == "ended"
    if not is_ended:
        counts = anthropic_wire.MessageBatchRequestCounts(
            processing=record.num_total, succeeded=0, errored=0, canceled=0, expired=0
        )
    else:
        counts = anthropic_wire.MessageBatchRequestCounts(
            processing=record.num_open if record.status != BatchStatus.FAILED else 0,
            succeeded=record.num_succeeded,
            errored=record.num_errored if record.status != BatchStatus.FAILED else record.num_total,
            canceled=record.num_cancelled,
            expired=record.num_expired,
        )
    has_results = is_ended and record.status != BatchStatus.FAILED
    return anthropic_wire.MessageBatch(
        id=record.id,
        processing_status=status,
        request_counts=counts,
        created_at=anthropic_wire.rfc3339(record.created_at) or "",
        expires_at=anthropic_wire.rfc3339(record.expires_at) or "",
        ended_at=anthropic_wire.rfc3339(record.ended_at),
        cancel_initiated_at=anthropic_wire.rfc3339(record.cancelling_at),
        archived_at=None,
        results_url=(
            f"{base_url.rstrip('/')}/v1/messages/batches/{record.id}/results"
            if has_results
            else None
        ),
    )
