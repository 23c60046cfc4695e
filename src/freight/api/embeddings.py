"""POST /v1/embeddings in real time (batches of embeddings run through the worker)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Depends
from fastapi.responses import JSONResponse

from freight import ids
from freight.api import inference
from freight.api.deps import service
from freight.service import Service

router = APIRouter(tags=["embeddings"])
URL = "/v1/embeddings"


@router.post(URL)
async def create_embeddings(
    raw: dict[str, Any] = Body(...), svc: Service = Depends(service)
) -> JSONResponse:
    body = inference.parse(svc, URL, raw)
    answer = await inference.run(svc, URL, body, ids.new_id("emb-"))
    return JSONResponse(answer.body)
