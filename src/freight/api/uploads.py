"""Streaming uploads: a multipart file part, or a large JSON body, straight to the blob store.

The size limit is enforced while the bytes arrive, so an oversized upload is refused
after `max_bytes`, never buffered whole in memory or on disk first. So is the storage
quota: the caller holds storage for the declared size first (quotas.StorageHold), and
the hold grows, or the upload is refused, if more arrives than was held.

A form names each field once: a second `file` part, or a field sent twice, is refused
rather than one of the values silently winning.

The bytes go to the store in blob threads (store/blob_store.py AsyncBlobs), so a slow disk or
bucket holds up only this upload, not the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import unicodedata
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fastapi import Request
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from freight.errors import InvalidRequest, PayloadTooLarge
from freight.service.quotas import StorageHold
from freight.store.blob_store import AsyncBlobs, BlobStorage

if TYPE_CHECKING:
    from freight.service.runtime import Service

log = logging.getLogger(__name__)
MAX_FIELD_BYTES = 64 * 1024
# Control and format characters (terminal escapes, bidirectional overrides that disguise
# an extension), private-use and unassigned code points, and line separators.
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Co", "Cs", "Cn", "Zl", "Zp"})


def safe_filename(name: str) -> str:
    """The last path component without control characters (no traversal, no escapes)."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    base = "".join(c for c in base if unicodedata.category(c) not in _UNSAFE_CATEGORIES)
    base = base.strip()
    if base in ("", ".", ".."):
        return "upload.jsonl"
    return base[:255]


@dataclass
class Upload:
    filename: str | None = None
    num_bytes: int = 0
    fields: dict[str, str] = field(default_factory=dict)


class _FormReader:
    """python-multipart callbacks: the file part to `file_data`, small fields to
    `upload.fields`. The caller empties `file_data` into the blob after each chunk."""

    def __init__(self, max_bytes: int) -> None:
        self.file_data = bytearray()
        self.max_bytes = max_bytes
        self.upload = Upload()
        self._headers: dict[str, bytes] = {}
        self._header = b""
        self._value = b""
        self._name = ""
        self._is_file = False
        self._buffer = bytearray()
        self._seen: set[str] = set()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def on_header_end(self) -> None:
        self._headers[self._header.lower().decode("latin-1")] = self._value
        self._header = self._value = b""

    def on_headers_finished(self) -> None:
        _, disposition = parse_options_header(self._headers.get("content-disposition", b""))
        self._name = disposition.get(b"name", b"").decode("utf-8", "replace")
        if self._name in self._seen:
            what = "file" if self._name == "file" else "field"
            raise InvalidRequest(
                f"The form has more than one '{self._name}' part; send each field once "
                f"(one {what} per upload).",
                param=self._name,
            )
        if self._name:
            self._seen.add(self._name)
        filename = disposition.get(b"filename")
        self._is_file = self._name == "file" and filename is not None
        if filename is not None and self._is_file:
            self.upload.filename = safe_filename(filename.decode("utf-8", "replace"))
        self._buffer.clear()

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._is_file:
            self.upload.num_bytes += end - start
            if self.upload.num_bytes > self.max_bytes:
                raise PayloadTooLarge(
                    f"The file is larger than the limit of {self.max_bytes} bytes.", param="file"
                )
            self.file_data += data[start:end]
        else:
            self._buffer.extend(data[start:end])
            if len(self._buffer) > MAX_FIELD_BYTES:
                raise PayloadTooLarge(f"Form field '{self._name}' is too large.", param=self._name)

    def on_part_end(self) -> None:
        if not self._is_file and self._name:
            self.upload.fields[self._name] = self._buffer.decode("utf-8", "replace")
        self._headers.clear()

    def callbacks(self) -> dict[str, Any]:
        names = (
            "on_header_field",
            "on_header_value",
            "on_header_end",
            "on_headers_finished",
            "on_part_data",
            "on_part_end",
        )
        return {name: getattr(self, name) for name in names}


def declared_size(request: Request) -> int | None:
    """The body's Content-Length, if the client sent one."""
    declared = request.headers.get("content-length")
    return int(declared) if declared is not None and declared.isdigit() else None


@contextlib.asynccontextmanager
async def holding(
    request: Request, svc: Service, owner: str, blob: str, max_bytes: int
) -> AsyncIterator[StorageHold]:
    """Hold storage for `blob` (QuotaExceeded if there is no room) while the block writes
    it; if the block fails, the blob is deleted and the hold given back."""
    hold = await asyncio.to_thread(
        svc.quotas.reserve_storage,
        svc.db,
        owner,
        blob,
        declared=declared_size(request),
        max_bytes=max_bytes,
    )
    try:
        yield hold
    except BaseException:
        await abandon(AsyncBlobs(svc.blobs), hold)
        raise


async def abandon(blobs: AsyncBlobs, hold: StorageHold) -> None:
    """Delete a failed upload's blob and release its hold.

    Both run in threads to their end even while the request is being cancelled (a client
    that went away), when the awaiting here may be cancelled again. Whatever fails is left
    to store/orphans.py, which collects stale holds and their blobs.
    """
    try:
        await blobs.delete(hold.blob)
    except Exception:
        log.exception("could not delete the failed upload %s; the orphan sweep will", hold.blob)
    finally:
        await asyncio.shield(asyncio.to_thread(_release, hold))


def _release(hold: StorageHold) -> None:
    try:
        hold.release()
    except Exception:
        log.exception("could not release the hold %s; the orphan sweep will", hold.file_id)


async def receive(
    request: Request,
    blobs: BlobStorage,
    blob_name: str,
    max_bytes: int,
    *,
    hold: StorageHold | None = None,
) -> Upload:
    """Parse a multipart body, writing the `file` part to blob `blob_name`.

    `hold`: the storage held for the file, grown (or the upload refused) as it arrives.
    """
    content_type, params = parse_options_header(request.headers.get("content-type"))
    boundary = params.get(b"boundary")
    if content_type != b"multipart/form-data" or not boundary:
        raise InvalidRequest(
            "Expected a multipart/form-data body with fields 'file' and 'purpose'.",
            param="file",
        )
    async with AsyncBlobs(blobs).create(blob_name) as out:
        reader = _FormReader(max_bytes)
        parser = MultipartParser(boundary, reader.callbacks())  # type: ignore[arg-type]
        try:
            async for chunk in request.stream():
                parser.write(chunk)
                if hold is not None and reader.upload.num_bytes > hold.num_bytes:
                    await asyncio.to_thread(hold.cover, reader.upload.num_bytes)
                await out.write(reader.file_data)
                reader.file_data.clear()
            parser.finalize()
            await out.write(reader.file_data)
        except FormParserError as exc:
            raise InvalidRequest(
                f"The multipart/form-data body is malformed: {exc}. Send the fields "
                "'file' and 'purpose' as a standard multipart form.",
                param="file",
            ) from None
        if reader.upload.filename is None:
            raise InvalidRequest("The form has no 'file' part with a filename.", param="file")
    return reader.upload


async def receive_json_body(
    request: Request,
    blobs: BlobStorage,
    blob_name: str,
    max_bytes: int,
    *,
    hold: StorageHold | None = None,
) -> int:
    """Stream a JSON request body to blob `blob_name`, refusing it past `max_bytes`.

    For bodies too large to parse in memory (an Anthropic Message Batch create may be
    256 MB); the caller parses the blob incrementally. Returns the number of bytes.
    """
    content_type, _ = parse_options_header(request.headers.get("content-type"))
    if content_type != b"application/json":
        raise InvalidRequest("Expected a JSON body (content-type: application/json).")
    declared = declared_size(request)
    if declared is not None and declared > max_bytes:
        raise PayloadTooLarge(f"The request body is larger than the limit of {max_bytes} bytes.")
    num_bytes = 0
    async with AsyncBlobs(blobs).create(blob_name) as out:
        async for chunk in request.stream():
            num_bytes += len(chunk)
            if num_bytes > max_bytes:
                raise PayloadTooLarge(
                    f"The request body is larger than the limit of {max_bytes} bytes."
                )
            if hold is not None and num_bytes > hold.num_bytes:
                await asyncio.to_thread(hold.cover, num_bytes)
            await out.write(chunk)
    return num_bytes
