"""/v1/batches: create, retrieve, list (newest first), cancel; estimate (an extension)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Body, Depends, Query
from fastapi.responses import JSONResponse
from pydantic import ConfigDict, Field

from freight.api.deps import project, scope, service
from freight.protocol import openai_wire, request_model, views
from freight.service import completion, estimate, intake
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
