"""AsyncBlobs: blob calls from async code, in threads, with the same all-or-nothing writes.

A cancelled caller (a client that went away) may stop waiting, but what it started runs
to its end: the write in progress, then the blob's cleanup, and deletes.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import pytest

from freight.store import blob_store
from freight.store.blob_store import AsyncBlobs, BlobStore
from tests.waiting import wait_until_async


class GatedFile:
    """A file whose writes wait for `gate` and log when they start and end."""

    def __init__(self, fh: BinaryIO, store: GatedBlobs) -> None:
        self.fh = fh
        self.store = store

    def write(self, data: bytes) -> int:
        self.store.log.append("write started")
        assert self.store.gate.wait(30), "the test never opened the gate"
        self.store.log.append("write ended")
        return self.fh.write(data)


class GatedBlobs(BlobStore):
    """Local blobs whose writes and deletes wait for `gate`; `log` says what ran when."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.gate = threading.Event()
        self.log: list[str] = []

    @contextlib.contextmanager
    def create(self, name: str) -> Iterator[BinaryIO]:  # type: ignore[override]
        try:
            with super().create(name) as fh:
                yield GatedFile(fh, self)  # type: ignore[misc]
        finally:
            self.log.append("closed")

    def delete(self, name: str) -> None:
        self.log.append("delete started")
        assert self.gate.wait(30), "the test never opened the gate"
        super().delete(name)
        self.log.append("delete ended")


def test_small_writes_reach_the_blob_whole_in_large_pieces(tmp_path: Path) -> None:
    store = GatedBlobs(tmp_path)
    store.gate.set()
    piece = b"x" * 1000
    num_pieces = 3 * blob_store.WRITE_BYTES // len(piece)

    async def write() -> None:
        async with AsyncBlobs(store).create("a") as out:
            for _ in range(num_pieces):
                await out.write(piece)

    asyncio.run(write())
    assert (tmp_path / "a").read_bytes() == piece * num_pieces
    assert store.log.count("write ended") == 3  # full pieces, then the rest at the end


def test_a_failed_write_leaves_no_blob(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)

    async def write() -> None:
        async with AsyncBlobs(store).create("a") as out:
            await out.write(b"x" * (blob_store.WRITE_BYTES + 1))
            raise ValueError("the upload was refused")

    with pytest.raises(ValueError, match="refused"):
        asyncio.run(write())
    assert list(tmp_path.iterdir()) == []  # neither the blob nor its temporary file


async def cancel_until_done(task: asyncio.Task[None]) -> None:
    """Cancel `task` again and again (as anyio's cancel scopes do) until it ends."""
    deadline = time.monotonic() + 30
    while not task.done():
        assert time.monotonic() < deadline, "the task did not end within 30 s"
        task.cancel()
        await asyncio.sleep(0.01)
    with pytest.raises(asyncio.CancelledError):
        await task


def test_a_cancelled_writer_cleans_up_after_its_last_write_ends(tmp_path: Path) -> None:
    store = GatedBlobs(tmp_path)

    async def write() -> None:
        async with AsyncBlobs(store).create("a") as out:
            await out.write(b"x" * blob_store.WRITE_BYTES)

    async def cancel_mid_write() -> None:
        task = asyncio.create_task(write())
        await wait_until_async(lambda: "write started" in store.log, what="the write")
        await cancel_until_done(task)
        assert store.log == ["write started"]  # the caller stopped waiting; the write did not
        store.gate.set()
        await wait_until_async(lambda: "closed" in store.log, what="the cleanup")

    asyncio.run(cancel_mid_write())
    assert store.log == ["write started", "write ended", "closed"]
    assert list(tmp_path.iterdir()) == []


def test_a_cancelled_delete_still_deletes_when_it_waited_for_a_thread(tmp_path: Path) -> None:
    store = GatedBlobs(tmp_path)
    with BlobStore.create(store, "a") as fh:  # not gated
        fh.write(b"x")
    num_busy = blob_store.NUM_BLOB_THREADS

    async def cancel_mid_delete() -> None:
        async_blobs = AsyncBlobs(store)
        busy = [asyncio.create_task(async_blobs.delete(f"b{i}")) for i in range(num_busy)]
        await wait_until_async(
            lambda: store.log.count("delete started") == num_busy, what="busy threads"
        )
        task = asyncio.create_task(async_blobs.delete("a"))
        await asyncio.sleep(0)  # one turn of the loop: the task asks for a thread, and waits
        await cancel_until_done(task)
        store.gate.set()
        await asyncio.gather(*busy)
        await wait_until_async(
            lambda: store.log.count("delete ended") == num_busy + 1, what="the delete"
        )

    asyncio.run(cancel_mid_delete())
    assert not store.exists("a")
