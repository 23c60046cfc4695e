"""Where file contents live: the BlobStorage interface and its local-disk implementation.

File metadata lives in the database; file bodies (uploads, result files, Message Batch
bodies and results) live in a BlobStorage, chosen by `files_url`: a directory (the
default, `FREIGHT_HOME/files`; a shared directory such as NFS serves several nodes), or
an S3-compatible object store (`s3://bucket/prefix`, store/s3.py).

BlobStorage calls block (a disk, a network), so async code goes through AsyncBlobs,
which makes them in threads of its own, off the event loop.
"""

from __future__ import annotations

import asyncio
import heapq
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent import futures
from contextlib import AbstractContextManager, asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol, TypeVar

from freight.store import private

if TYPE_CHECKING:
    pass

T = TypeVar("T")


@dataclass(frozen=True)
class BlobInfo:
    """A stored blob as a listing sees it: its name and when it was last written."""

    name: str
    modified_at: float  # unix seconds


class BlobStorage(Protocol):
    """File bodies by name. A blob becomes visible only once completely written."""

    def create(self, name: str) -> AbstractContextManager[BinaryIO]:
        """Write blob `name`; it appears (or is replaced) whole when the block ends cleanly."""
        ...

    def open(self, name: str) -> BinaryIO:
        """Read blob `name` as a stream; FileNotFoundError if there is none."""
        ...

    def exists(self, name: str) -> bool: ...

    def size(self, name: str) -> int: ...

    def delete(self, name: str) -> None:
        """Remove blob `name` if it exists."""
        ...

    def local_path(self, name: str) -> Path | None:
        """The blob's path on this machine's disk, if it has one (served with sendfile)."""
        ...

    def list(self, after: str | None, limit: int) -> list[BlobInfo]:
        """Up to `limit` blobs whose names sort after `after`, in name order.

        Includes what an interrupted write left behind (store/orphans.py collects it).
        """
        ...


class BlobStore:
    """The local-disk BlobStorage: one file per blob under `root`, renamed into place.

    The folder is 0700 and every blob 0600 (store/private.py), whatever the umask.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        private.make_dir(self.root)

    def path(self, name: str) -> Path:
        return self.root / name

    def local_path(self, name: str) -> Path | None:
        return self.path(name)

    def exists(self, name: str) -> bool:
        return self.path(name).is_file()

    @contextmanager
    def create(self, name: str) -> Iterator[BinaryIO]:
        """Write `name` through a temporary file renamed into place on success."""
        tmp = self.root / f".{name}.{uuid.uuid4().hex}{TMP_SUFFIX}"
        try:
            with os.fdopen(private.open_new(tmp), "wb") as fh:
                yield fh
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path(name))
        finally:
            tmp.unlink(missing_ok=True)

    def open(self, name: str) -> BinaryIO:
        return open(self.path(name), "rb")

    def size(self, name: str) -> int:
        return self.path(name).stat().st_size

    def delete(self, name: str) -> None:
        self.path(name).unlink(missing_ok=True)

    def list(self, after: str | None, limit: int) -> list[BlobInfo]:
        with os.scandir(self.root) as entries:
            names = heapq.nsmallest(
                limit,
                (e.name for e in entries if (after is None or e.name > after) and _is_blob(e)),
            )
        found = []
        for name in names:
            try:
                found.append(BlobInfo(name, self.path(name).lstat().st_mtime))
            except FileNotFoundError:
                continue  # deleted since the listing
        return found


def _is_blob(entry: os.DirEntry[str]) -> bool:
    # A link is a blob too (`freight run` links its input file in); folders are not.
    return entry.is_symlink() or entry.is_file(follow_symlinks=False)


TMP_SUFFIX = ".tmp"  # a local blob being written: `.{name}.{random}.tmp`


# --- from async code ----------------------------------------------------------------------

NUM_BLOB_THREADS = 32  # blob calls from async code at once; more wait for a thread
WRITE_BYTES = 1024 * 1024  # an async writer hands its thread pieces this large
# Freight's own threads, not asyncio's default executor (a handful on a small machine):
# uploads waiting on a slow store must not queue the database calls that every request
# makes through asyncio.to_thread.
_threads = futures.ThreadPoolExecutor(NUM_BLOB_THREADS, thread_name_prefix="freight-blobs")


class AsyncBlobs:
    """BlobStorage for async code: every call runs in a blob thread, off the event loop.

    A slow disk or object store (a 200 MB upload, S3's `upload_fileobj`) then holds up
    only the request that waits for it, never real-time requests, `/health` or the
    in-process worker. Deletes, and closing a blob being written, run to their end even
    if the awaiting task is cancelled (a client that went away): the waiting stops, the
    work does not.
    """

    def __init__(self, blobs: BlobStorage) -> None:
        self.blobs = blobs

    @asynccontextmanager
    async def create(self, name: str) -> AsyncIterator[AsyncBlobWriter]:
        """Write blob `name` (BlobStorage.create): it appears whole when the block ends cleanly."""
        writing = self.blobs.create(name)
        out = await _in_thread(writing.__enter__)
        writer = AsyncBlobWriter(out)
        try:
            yield writer
            await writer.flush()
        except BaseException as exc:
            # The blob's own cleanup (its temporary file), after its last write ended.
            is_suppressed = await _to_the_end(
                writer.last_step, writing.__exit__, type(exc), exc, exc.__traceback__
            )
            if not is_suppressed:
                raise
        else:
            await _to_the_end(writer.last_step, writing.__exit__, None, None, None)

    async def delete(self, name: str) -> None:
        """Remove blob `name` if it exists."""
        await _to_the_end(None, self.blobs.delete, name)


class AsyncBlobWriter:
    """The writing end of AsyncBlobs.create; bytes reach the blob WRITE_BYTES at a time.

    Its writes run one after the other in blob threads (each waits for the one before),
    so about WRITE_BYTES wait in memory, and the piece being written.
    """

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self._buffer = bytearray()
        self.last_step: futures.Future[Any] | None = None

    async def write(self, data: bytes | bytearray) -> None:
        self._buffer += data
        if len(self._buffer) >= WRITE_BYTES:
            await self.flush()

    async def flush(self) -> None:
        """Write what is buffered."""
        if not self._buffer:
            return
        piece, self._buffer = self._buffer, bytearray()
        self.last_step = _submit(self.last_step, self._out.write, piece)
        await asyncio.wrap_future(self.last_step)


def _submit(
    after: futures.Future[Any] | None, func: Callable[..., T], *args: Any
) -> futures.Future[T]:
    """`func(*args)` in a blob thread, once `after` (an earlier step on the same blob) ended.

    `after` was submitted first and the pool takes work in order, so it is already
    running or done when this step waits for it.
    """

    def step() -> T:
        if after is not None:
            futures.wait([after])
        return func(*args)

    return _threads.submit(step)


async def _in_thread(func: Callable[..., T], *args: Any) -> T:
    return await asyncio.wrap_future(_submit(None, func, *args))


async def _to_the_end(after: futures.Future[Any] | None, func: Callable[..., T], *args: Any) -> T:
    """As _in_thread, but a cancellation of the caller neither stops nor drops the call."""
    return await asyncio.shield(asyncio.wrap_future(_submit(after, func, *args)))


# Blobs of Anthropic Message Batches, named after the batch: no `files` row points at
# them (they are not OpenAI files), so the name is how the worker and the API find them.


def message_batch_requests(batch_id: str) -> str:
    """The create body as received, kept until the worker has queued its requests."""
    return f"{batch_id}.requests.json"


def message_batch_results(batch_id: str) -> str:
    """The results JSONL, written once when processing ends."""
    return f"{batch_id}.results.jsonl"
