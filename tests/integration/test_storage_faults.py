"""Storage faults while results are written: a full disk, a locked database.

Neither fails a request or a batch: the worker logs what is wrong in plain words, keeps
what it holds, leaves no half-written file (results are written to a temporary name and
renamed into place), and carries on once space returns or the lock is released.
"""

from __future__ import annotations

import asyncio
import errno
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

import pytest
import sqlalchemy as sa

from freight.config import Settings
from freight.engines.echo import EchoEngine
from freight.engines.pool import EnginePool
from freight.engines.registry import Registry
from freight.service.runtime import Service
from freight.store import batch_requests, batches, files
from freight.store.blob_store import BlobStore
from tests.conftest import chat_line, make_settings
from tests.integration.test_worker import TERMINAL, result_lines, run_until, submit

NUM_REQUESTS = 30


class FillingWriter:
    """A file that takes `budget` more bytes, then fails as a full disk does."""

    def __init__(self, fh: BinaryIO, budget: int) -> None:
        self.fh = fh
        self.budget = budget

    def write(self, data: bytes) -> int:
        if len(data) > self.budget:
            self.fh.write(data[: self.budget])
            self.budget = 0
            raise OSError(errno.ENOSPC, "No space left on device")
        self.budget -= len(data)
        return self.fh.write(data)


class FullDisk(BlobStore):
    """Local blobs whose disk fills up after `budget` bytes of each new blob while `is_full`."""

    def __init__(self, root: Path, budget: int = 200) -> None:
        super().__init__(root)
        self.is_full = False
        self.budget = budget
        self.num_failed = 0

    @contextmanager
    def create(self, name: str) -> Iterator[BinaryIO]:  # type: ignore[override]
        with super().create(name) as fh:
            if not self.is_full:
                yield fh
                return
            try:
                yield FillingWriter(fh, self.budget)  # type: ignore[misc]
            except OSError:
                self.num_failed += 1
                raise


def service(settings: Settings, blobs: BlobStore | None = None) -> Service:
    pool = EnginePool(settings, Registry(settings))
    pool.add(EchoEngine("echo"))
    return Service(settings, engines=pool, blobs=blobs)


def lines() -> list[dict[str, Any]]:
    return [chat_line(f"r{i}", f"say {i}", model="echo") for i in range(NUM_REQUESTS)]


def test_disk_full_while_writing_results_leaves_no_half_file_and_resumes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(tmp_path)
    disk = FullDisk(settings.files_dir)
    svc = service(settings, disk)
    batch_id = submit(svc, lines())
    input_blobs = set(p.name for p in settings.files_dir.iterdir())
    disk.is_full = True
    seen_while_full: dict[str, Any] = {}

    async def free_space_after_failures(record: batches.BatchRecord) -> bool:
        if disk.num_failed < 2:
            return False
        # Finalising failed twice: the batch waits, no result file exists, whole or half.
        with svc.db.read() as conn:
            seen_while_full["status"] = batches.get(conn, batch_id).status
            seen_while_full["output_files"] = files.list_page(
                conn,
                project="default",
                purpose="batch_output",
                after=None,
                limit=100,
                newest_first=True,
            )[0]
        seen_while_full["blobs"] = set(p.name for p in settings.files_dir.iterdir())
        disk.is_full = False
        return True

    with caplog.at_level(logging.ERROR, logger="freight.worker.dispatcher"):
        record = asyncio.run(
            run_until(svc, batch_id, TERMINAL, action=free_space_after_failures, timeout=60)
        )
    assert seen_while_full["status"] == "finalizing"
    assert seen_while_full["output_files"] == []
    assert seen_while_full["blobs"] == input_blobs  # no partial or temporary file left
    assert any(
        f"batch {batch_id}: finalize could not finish: the disk is full" in message
        for message in caplog.messages
    ), caplog.messages
    assert record.status == "completed" and record.num_succeeded == NUM_REQUESTS
    out = result_lines(svc, record)
    assert sorted(x["custom_id"] for x in out) == sorted(f"r{i}" for i in range(NUM_REQUESTS))


@pytest.mark.usefixtures("no_backoff")  # recovery is checked, not the pauses
def test_locked_database_while_recording_results_keeps_them_and_resumes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    svc = service(make_settings(tmp_path))
    batch_id = submit(svc, lines())
    real_record = batch_requests.record
    num_refused = 0

    def locked_at_first(conn: sa.Connection, outcomes: list[batch_requests.Outcome]) -> int:
        nonlocal num_refused
        if num_refused < 3:
            num_refused += 1
            raise sa.exc.OperationalError("UPDATE requests", {}, Exception("database is locked"))
        return real_record(conn, outcomes)

    monkeypatch.setattr(batch_requests, "record", locked_at_first)
    with caplog.at_level(logging.ERROR, logger="freight.worker.dispatcher"):
        record = asyncio.run(run_until(svc, batch_id, TERMINAL, timeout=60))
    assert num_refused == 3
    assert any(
        "could not record" in m and "the database is locked by another process" in m
        for m in caplog.messages
    ), caplog.messages
    assert record.status == "completed" and record.num_succeeded == NUM_REQUESTS
    out = result_lines(svc, record)
    assert sorted(x["custom_id"] for x in out) == sorted(f"r{i}" for i in range(NUM_REQUESTS))
    assert svc.worker is not None and svc.worker.num_recorded == NUM_REQUESTS


@pytest.mark.usefixtures("no_backoff")  # recovery is checked, not the pauses
def test_the_worker_loop_survives_an_unreachable_store(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    svc = service(make_settings(tmp_path))
    batch_id = submit(svc, lines())
    real_with_status = batches.with_status
    num_refused = 0

    def unreachable_at_first(conn: sa.Connection, *statuses: str) -> Any:
        nonlocal num_refused
        if num_refused < 2:
            num_refused += 1
            raise sa.exc.OperationalError("SELECT", {}, Exception("disk I/O error"))
        return real_with_status(conn, *statuses)

    monkeypatch.setattr(batches, "with_status", unreachable_at_first)
    with caplog.at_level(logging.ERROR, logger="freight.worker.dispatcher"):
        record = asyncio.run(run_until(svc, batch_id, TERMINAL, timeout=60))
    assert any("cannot reach the store" in m for m in caplog.messages), caplog.messages
    assert record.status == "completed" and record.num_succeeded == NUM_REQUESTS
