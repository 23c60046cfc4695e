"""/v1/messages/batches: Anthropic's Message Batches API (create, retrieve, list, results,
cancel, delete), on the same store and worker as OpenAI batches (see service/intake.py).

Blob calls stay off the event loop: the create body streams in through api/uploads.py,
and the routes that read or delete a blob are plain `def`s (FastAPI's threadpool).
"""

from __future__ import annotations

import asyncio
import functools

from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import Response

from freight import ids
from freight.api import downloads, uploads
from freight.api.deps import anthropic_headers, project, scope, service
from freight.errors import Conflict, InvalidRequest, NotFound
from freight.protocol import anthropic_wire, views
from freight.service import intake
from freight.service.runtime import Service
from freight.store import batches, blob_store

router = APIRouter(
    prefix="/v1/messages/batches",
    tags=["message batches"],
    dependencies=[Depends(anthropic_headers)],
)
API = "anthropic"


def base_url(svc: Service, request: Request) -> str:
    """Where clients reach this server: the configured public URL, else what they called."""
    return svc.settings.public_base_url or str(request.base_url)


@router.post("", response_model=anthropic_wire.MessageBatch)
async def create_message_batch(
    request: Request, svc: Service = Depends(service), owner: str = Depends(project)
) -> anthropic_wire.MessageBatch:
    """Store the body as it streams in (within the size limit and under a storage hold),
    check it, queue it: the batch row replaces the hold (intake.create_message_batch)."""
    batch_id = ids.new_id("msgbatch_")
    name = blob_store.message_batch_requests(batch_id)
    max_bytes = svc.settings.limits.max_message_batch_bytes
    async with uploads.holding(request, svc, owner, name, max_bytes) as hold:
        await uploads.receive_json_body(request, svc.blobs, name, max_bytes, hold=hold)
        record = await asyncio.to_thread(
            functools.partial(intake.create_message_batch, svc, owner, batch_id, hold=hold)
        )
    svc.kick_worker()
    return views.message_batch(record, base_url(svc, request))


@router.get("/{message_batch_id}", response_model=anthropic_wire.MessageBatch)
def retrieve_message_batch(
    message_batch_id: str,
    request: Request,
    svc: Service = Depends(service),
    visible: str | None = Depends(scope),
) -> anthropic_wire.MessageBatch:
    with svc.db.read() as conn:
        record = batches.get(conn, message_batch_id, visible, api=API)
    return views.message_batch(record, base_url(svc, request))


@router.get("", response_model=anthropic_wire.MessageBatchPage)
def list_message_batches(
    request: Request,
    svc: Service = Depends(service),
    visible: str | None = Depends(scope),
    after_id: str | None = Query(None, description="The page after (older than) this id."),
    before_id: str | None = Query(None, description="The page before (newer than) this id."),
    limit: int = Query(20, ge=1, le=1000),
) -> anthropic_wire.MessageBatchPage:
    """Newest first. `first_id`/`last_id` are the page's ends, the SDK's next cursors."""
    if after_id is not None and before_id is not None:
        raise InvalidRequest("Give at most one of after_id and before_id.", param="before_id")
    with svc.db.read() as conn:
        records, has_more = batches.list_page(
            conn, api=API, project=visible, after=after_id, before=before_id, limit=limit
        )
    base = base_url(svc, request)
    data = [views.message_batch(r, base) for r in records]
    return anthropic_wire.MessageBatchPage(
        data=data,
        has_more=has_more,
        first_id=data[0].id if data else None,
        last_id=data[-1].id if data else None,
    )


@router.post("/{message_batch_id}/cancel", response_model=anthropic_wire.MessageBatch)
async def cancel_message_batch(
    message_batch_id: str,
    request: Request,
    svc: Service = Depends(service),
    visible: str | None = Depends(scope),
) -> anthropic_wire.MessageBatch:
    def cancel() -> batches.BatchRecord:
        with svc.db.write() as conn:
            return batches.request_cancel(conn, message_batch_id, visible, api=API)

    record = await asyncio.to_thread(cancel)
    svc.kick_worker()
    return views.message_batch(record, base_url(svc, request))


@router.delete("/{message_batch_id}", response_model=anthropic_wire.DeletedMessageBatch)
def delete_message_batch(
    message_batch_id: str, svc: Service = Depends(service), visible: str | None = Depends(scope)
) -> anthropic_wire.DeletedMessageBatch:
    """Only once processing has ended (a 409 before); removes its requests and results."""
    with svc.db.write() as conn:
        batches.delete_ended(conn, message_batch_id, visible, api=API)
    svc.blobs.delete(blob_store.message_batch_results(message_batch_id))
    svc.blobs.delete(blob_store.message_batch_requests(message_batch_id))
    return anthropic_wire.DeletedMessageBatch(id=message_batch_id)


@router.get("/{message_batch_id}/results")
def message_batch_results(
    message_batch_id: str, svc: Service = Depends(service), visible: str | None = Depends(scope)
) -> Response:
    """The results JSONL (one MessageBatchIndividualResponse per line), once ended."""
    with svc.db.read() as conn:
        record = batches.get(conn, message_batch_id, visible, api=API)
    if not record.is_terminal:
        raise Conflict(
            f"Message Batch {message_batch_id} is still processing; its results are "
            "available once processing_status is 'ended'.",
            param="message_batch_id",
        )
    return downloads.blob_response(
        svc.blobs,
        blob_store.message_batch_results(message_batch_id),
        media_type="application/x-jsonl",
        filename=f"{message_batch_id}_results.jsonl",
        missing=NotFound(f"Message Batch {message_batch_id} has no results."),
    )
