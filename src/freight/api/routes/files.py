"""/v1/files: upload, list, retrieve, content, delete.

The upload streams to the blob store in blob threads (api/uploads.py); the routes that
read or delete a blob are plain `def`s, which FastAPI runs in its threadpool, so a slow
store never holds up the event loop (tests/e2e/test_event_loop.py).
"""

from __future__ import annotations

import asyncio
import functools
from typing import Literal

from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import Response

from freight import ids
from freight.api import downloads, uploads
from freight.api.deps import project, scope, service
from freight.errors import InvalidRequest
from freight.protocol import openai_wire, views
from freight.service import intake
from freight.service.runtime import Service
from freight.store import files

router = APIRouter(prefix="/v1/files", tags=["files"])


@router.post("", response_model=openai_wire.FileObject)
async def upload_file(
    request: Request, svc: Service = Depends(service), owner: str = Depends(project)
) -> openai_wire.FileObject:
    """Stream the file to the blob store under a storage hold that becomes its row."""
    blob = ids.new_id("blob-")
    max_bytes = svc.settings.limits.max_file_bytes
    async with uploads.holding(request, svc, owner, blob, max_bytes) as hold:
        upload = await uploads.receive(request, svc.blobs, blob, max_bytes, hold=hold)
        purpose = upload.fields.get("purpose")
        if purpose not in files.UPLOAD_PURPOSES:
            raise InvalidRequest(
                f"Invalid purpose {purpose!r}. Accepted: {', '.join(files.UPLOAD_PURPOSES)}.",
                param="purpose",
            )
        record = await asyncio.to_thread(
            functools.partial(
                intake.add_uploaded_file,
                svc,
                hold,
                filename=upload.filename,
                purpose=purpose,
                num_bytes=upload.num_bytes,
                expires_after=_expires_after(upload.fields),
            )
        )
    return views.file_object(record)


def _expires_after(fields: dict[str, str]) -> int | None:
    anchor = fields.get("expires_after[anchor]")
    seconds = fields.get("expires_after[seconds]")
    if anchor is None and seconds is None:
        return None
    if anchor != "created_at":
        raise InvalidRequest("expires_after[anchor] must be 'created_at'.", param="expires_after")
    try:
        value = int(seconds or "")
    except ValueError:
        raise InvalidRequest(
            "expires_after[seconds] must be an integer.", param="expires_after"
        ) from None
    if not 3600 <= value <= 2_592_000:
        raise InvalidRequest(
            "expires_after[seconds] must be between 3600 and 2592000.", param="expires_after"
        )
    return value


@router.get("", response_model=openai_wire.ListPage)
def list_files(
    svc: Service = Depends(service),
    visible: str | None = Depends(scope),
    after: str | None = None,
    limit: int = Query(10000, ge=1, le=10000),
    order: Literal["asc", "desc"] = "desc",
    purpose: str | None = None,
) -> openai_wire.ListPage:
    with svc.db.read() as conn:
        records, has_more = files.list_page(
            conn,
            project=visible,
            purpose=purpose,
            after=after,
            limit=limit,
            newest_first=order == "desc",
        )
    return views.list_page([views.file_object(r) for r in records], has_more)


@router.get("/{file_id}", response_model=openai_wire.FileObject)
def retrieve_file(
    file_id: str, svc: Service = Depends(service), visible: str | None = Depends(scope)
) -> openai_wire.FileObject:
    with svc.db.read() as conn:
        return views.file_object(files.get(conn, file_id, visible))


@router.get("/{file_id}/content")
def file_content(
    file_id: str, svc: Service = Depends(service), visible: str | None = Depends(scope)
) -> Response:
    return downloads.file_response(svc, file_id, visible, media_type="application/octet-stream")


@router.delete("/{file_id}", response_model=openai_wire.FileDeleted)
def delete_file(
    file_id: str, svc: Service = Depends(service), visible: str | None = Depends(scope)
) -> openai_wire.FileDeleted:
    with svc.db.write() as conn:
        record = files.delete(conn, file_id, visible)
    svc.blobs.delete(record.blob)
    return openai_wire.FileDeleted(id=file_id)
