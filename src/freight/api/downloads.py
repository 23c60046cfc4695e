"""Serving a blob as an HTTP download, from local disk or from an object store."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import quote

from fastapi.responses import FileResponse, StreamingResponse
from starlette.responses import Response

from freight.errors import NotFound
from freight.service.runtime import Service
from freight.store import files
from freight.store.blob_store import BlobStorage

CHUNK_BYTES = 1024 * 1024


def blob_response(
    blobs: BlobStorage, name: str, *, media_type: str, filename: str, missing: NotFound
) -> Response:
    """The blob as an attachment; `missing` if it is gone.

    A blob on local disk goes out with sendfile (FileResponse); one in an object store is
    streamed through in chunks, never held whole in memory.
    """
    path = blobs.local_path(name)
    if path is not None:
        if not path.is_file():
            raise missing
        return FileResponse(path, media_type=media_type, filename=filename)
    try:
        size = blobs.size(name)
        fh = blobs.open(name)
    except FileNotFoundError:
        raise missing from None

    def chunks() -> Iterator[bytes]:
        with fh:
            while chunk := fh.read(CHUNK_BYTES):
                yield chunk

    quoted = quote(filename)
    disposition = (
        f'attachment; filename="{filename}"'
        if quoted == filename
        else f"attachment; filename*=utf-8''{quoted}"
    )
    headers = {"content-disposition": disposition, "content-length": str(size)}
    return StreamingResponse(chunks(), media_type=media_type, headers=headers)


def file_response(svc: Service, file_id: str, visible: str | None, *, media_type: str) -> Response:
    """A stored file's content as an attachment under its upload name (404 when the file
    is not `visible` to the caller, or its content is gone)."""
    with svc.db.read() as conn:
        record = files.get(conn, file_id, visible)
    return blob_response(
        svc.blobs,
        record.blob,
        media_type=media_type,
        filename=record.filename,
        missing=NotFound(f"The content of file {file_id} is no longer available.", param="file_id"),
    )
