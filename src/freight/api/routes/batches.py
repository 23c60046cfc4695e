"""/v1/batches: create, retrieve, list (newest first), cancel; estimate, results and retry
(Freight extensions)."""

from __future__ import annotations

import asyncio
from typing import Literal

from fastapi import APIRouter, Body, Depends, Query
from fastapi.responses import JSONResponse
from pydantic import ConfigDict, Field
from starlette.responses import Response

from freight.api.deps import project, scope, service
from freight.protocol import openai_wire, request_model, views
from freight.service import completion, estimate, intake, live_results, retry
from freight.service.runtime import Service
from freight.store import batches

router = APIRouter(prefix="/v1/batches", tags=["batches"])


@router.post("", response_model=openai_wire.Batch)
async def create_batch(
    req: openai_wire.CreateBatch = Body(...),
    svc: Service = Depends(service),
    owner: str = Depends(project),
) -> openai_wire.Batch:
    record = await asyncio.to_thread(intake.create_openai_batch, svc, owner, req)
    svc.kick_worker()
    return views.batch_object(record)


class EstimateBatch(request_model.RequestModel):
    """What to estimate: an uploaded batch input file, or the input of an existing batch."""

    model_config = ConfigDict(extra="forbid", strict=True)

    input_file_id: str | None = Field(None, description="A file with purpose `batch`.")
    batch_id: str | None = Field(None, description="A batch: its input file and endpoint.")
    endpoint: str | None = Field(
        None, description="With input_file_id: the endpoint (default: the first line's url)."
    )


@router.post("/estimate", response_model=None)
async def estimate_batch(
    req: EstimateBatch = Body(...),
    svc: Service = Depends(service),
    visible: str | None = Depends(scope),
) -> JSONResponse:
    """Freight extension: what the file would take here (tokens, time, cost), run nothing."""
    try:
        result = await asyncio.to_thread(
            estimate.estimate_request,
            svc,
            visible,
            input_file_id=req.input_file_id,
            batch_id=req.batch_id,
            endpoint=req.endpoint,
        )
    except estimate.InvalidInput as exc:
        # OpenAI's error shape, plus every problem that creating the batch would report
        # (its `errors.data`: code, message, param, line).
        error = {
            "message": exc.api_message,
            "type": exc.openai_type,
            "param": exc.param,
            "code": exc.code,
            "errors": [p.model_dump() for p in exc.problems],
        }
        return JSONResponse({"error": error}, status_code=exc.status_code)
    return JSONResponse(estimate.to_json_dict(result))


@router.get("/{batch_id}", response_model=openai_wire.Batch)
def retrieve_batch(
    batch_id: str, svc: Service = Depends(service), visible: str | None = Depends(scope)
) -> openai_wire.Batch:
    with svc.db.read() as conn:
        record = batches.get(conn, batch_id, visible, api="openai")
        return views.batch_object(completion.with_live_completion(conn, record))


@router.get("", response_model=openai_wire.ListPage)
def list_batches(
    svc: Service = Depends(service),
    visible: str | None = Depends(scope),
    after: str | None = None,
    limit: int = Query(20, ge=1, le=100),
) -> openai_wire.ListPage:
    with svc.db.read() as conn:
        records, has_more = batches.list_page(
            conn, api="openai", project=visible, after=after, limit=limit
        )
        records = completion.with_live_completions(conn, records)
    return views.list_page([views.batch_object(r) for r in records], has_more)


@router.post("/{batch_id}/cancel", response_model=openai_wire.Batch)
async def cancel_batch(
    batch_id: str, svc: Service = Depends(service), visible: str | None = Depends(scope)
) -> openai_wire.Batch:
    def cancel() -> batches.BatchRecord:
        with svc.db.write() as conn:
            return batches.request_cancel(conn, batch_id, visible, api="openai")

    record = await asyncio.to_thread(cancel)
    svc.kick_worker()
    return views.batch_object(record)


@router.get(
    "/{batch_id}/results",
    response_class=Response,
    responses={200: {"content": {"application/jsonl": {}}}},
)
def batch_results(
    batch_id: str,
    svc: Service = Depends(service),
    visible: str | None = Depends(scope),
    after: str | None = Query(
        None, description="The Freight-Next-Cursor header of the last page; none: the first."
    ),
    limit: str | None = Query(
        None,
        description=f"Lines per page, 1 to {live_results.MAX_LIMIT} "
        f"(default {live_results.DEFAULT_LIMIT}).",
    ),
) -> Response:
    """Freight extension: the batch's finished lines so far (JSONL, the output and error
    files' lines, in the order they landed), while it runs and after it ends.

    Headers: `Freight-Next-Cursor` (pass as `after` for the next page), `Freight-Batch-Status`,
    and `Freight-Results-Complete: true` once the batch has ended and no line is left.
    """
    page = live_results.read_page(svc, batch_id, visible, after=after, limit=limit)
    headers = {
        "Freight-Next-Cursor": page.next_cursor,
        "Freight-Batch-Status": page.batch_status,
        "Freight-Results-Complete": "true" if page.is_complete else "false",
    }
    return Response(page.body, media_type="application/jsonl", headers=headers)


class RetryBatch(request_model.RequestModel):
    """Which requests that did not succeed to run again, beyond the default ones."""

    model_config = ConfigDict(extra="forbid", strict=True)

    include: list[Literal["invalid_request"]] = Field(
        default_factory=list,
        max_length=len(retry.INCLUDABLE),
        description="`invalid_request`: also those refused as invalid (a 4xx line). By "
        "default only cancelled, expired and server-side failures run again.",
    )


@router.post("/{batch_id}/retry", response_model=openai_wire.Batch)
async def retry_batch(
    batch_id: str,
    req: RetryBatch | None = Body(None),
    svc: Service = Depends(service),
    visible: str | None = Depends(scope),
) -> openai_wire.Batch:
    """Freight extension: a new batch of an ended batch's requests that did not succeed
    (same custom_ids, endpoint and window; metadata `freight_retry_of`). 409 before it ends."""
    include = list(req.include) if req is not None else []
    record = await asyncio.to_thread(retry.retry_batch, svc, batch_id, visible, include=include)
    svc.kick_worker()
    return views.batch_object(record)
