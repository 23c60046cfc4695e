"""/v1/batches: create, retrieve, list (newest first), cancel."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Body, Depends, Query

from freight.api.deps import project, scope, service
from freight.protocol import openai_wire, views
from freight.service import intake
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


@router.get("/{batch_id}", response_model=openai_wire.Batch)
def retrieve_batch(
    batch_id: str, svc: Service = Depends(service), visible: str | None = Depends(scope)
) -> openai_wire.Batch:
    with svc.db.read() as conn:
        return views.batch_object(batches.get(conn, batch_id, visible, api="openai"))


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
