"""Abandoned blobs are collected, and counted toward the storage quota until they are.

On SQLite and PostgreSQL, with the blobs on local disk and in S3 (moto). "A crash" is
what one leaves: a storage hold whose upload never completed, or a blob whose row was
never written; the sweep runs with a clock past the grace period.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from freight import ids
from freight.config import QuotaLimits, QuotaSettings
from freight.service import quotas
from freight.store import batches, blob_store, files, orphans, project_usage
from freight.store.blob_store import BlobStorage, BlobStore
from freight.store.db import Database, open_database
from freight.store.s3 import S3BlobStore
from tests.s3 import new_bucket, s3_server

GRACE = 3600.0


def later() -> float:
    """A sweep clock past the grace period of anything written until now (read at call
    time: the suite may import this module long before the test runs)."""
    return time.time() + GRACE + 60


@pytest.fixture
def db(database_url: str, tmp_path: Path) -> Iterator[Database]:
    database = open_database(database_url, tmp_path / "home")
    yield database
    database.dispose()


@pytest.fixture(params=["local", "s3"])
def blobs(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[BlobStorage]:
    if request.param == "local":
        yield BlobStore(tmp_path / "files")
        return
    with s3_server(monkeypatch) as settings:
        yield S3BlobStore.from_url(f"s3://{new_bucket(settings)}/freight", settings)


def write(blobs: BlobStorage, name: str, data: bytes = b"x" * 100) -> str:
    with blobs.create(name) as fh:
        fh.write(data)
    return name


def sweep(db: Database, blobs: BlobStorage, **kwargs: object) -> orphans.SweepResult:
    return orphans.sweep(db, blobs, grace_seconds=GRACE, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", ["upload", "message-batch"])
def test_a_crashed_upload_counts_toward_the_quota_until_the_sweep_collects_it(
    db: Database, blobs: BlobStorage, kind: str
) -> None:
    quota = quotas.Quotas(QuotaSettings(default=QuotaLimits(max_stored_bytes=1000)))
    if kind == "upload":
        blob = ids.new_id("blob-")
    else:  # a Message Batch create's body, held while it arrives
        blob = blob_store.message_batch_requests(ids.new_id("msgbatch_"))
    quota.reserve_storage(db, "p", blob, declared=600, max_bytes=10_000)
    write(blobs, blob, b"x" * 600)  # ... and the process died before the upload completed
    with db.read() as conn:
        assert project_usage.stored_bytes(conn, "p") == 600
    second = quota.reserve_storage(db, "p", ids.new_id("blob-"), declared=600, max_bytes=10_000)
    assert second.num_bytes == 400  # the room left; the rest of the upload does not fit
    with pytest.raises(quotas.QuotaExceeded):
        second.cover(600)
    second.release()
    assert sweep(db, blobs).num_holds_collected == 0  # within the grace period: kept
    assert blobs.exists(blob)
    result = sweep(db, blobs, now=later())
    assert result.num_holds_collected == 1
    assert not blobs.exists(blob)
    with db.read() as conn:
        assert project_usage.stored_bytes(conn, "p") == 0
    quota.reserve_storage(db, "p", ids.new_id("blob-"), declared=600, max_bytes=10_000).cover(600)


def test_blobs_without_rows_are_collected_and_every_kept_blob_stays(
    db: Database, blobs: BlobStorage
) -> None:
    kept_batch = ids.new_id("msgbatch_")
    with db.write() as conn:
        batches.insert(
            conn,
            id=kept_batch,
            project="p",
            api="anthropic",
            endpoint="/v1/messages",
            completion_window="24h",
            created_at=0,
            expires_at=86400,
        )
        kept_file = files.new_record(project="p", filename="f", purpose="batch", num_bytes=100)
        files.insert(conn, kept_file)
    kept = {
        write(blobs, kept_file.blob),
        write(blobs, blob_store.message_batch_requests(kept_batch)),
        write(blobs, blob_store.message_batch_results(kept_batch)),
        write(blobs, "notes.txt"),  # not a name Freight gives: never its to remove
    }
    crashed_batch = ids.new_id("msgbatch_")  # a Message Batch create that died mid-way
    orphaned = {
        write(blobs, blob_store.message_batch_requests(crashed_batch)),
        write(blobs, ids.new_id("file-")),  # a result file whose row was never written
        write(blobs, ids.new_id("blob-")),
    }
    assert sweep(db, blobs).num_blobs_collected == 0  # too young: maybe still in progress
    result = sweep(db, blobs, now=later())
    assert result.num_blobs_collected == len(orphaned)
    assert {b.name for b in blobs.list(None, 100)} == kept


def test_a_stopped_local_write_is_collected_once_stale(db: Database, tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "files")
    name = ids.new_id("blob-")
    with pytest.raises(RuntimeError), store.create(name) as fh:
        fh.write(b"half")
        (tmp,) = (tmp_path / "files").iterdir()  # the write in progress
        raise RuntimeError("stop here")
    # A killed process leaves its temporary file behind (the `finally` never ran).
    tmp.write_bytes(b"half")
    assert sweep(db, store).num_blobs_collected == 0
    at = later()
    os.utime(tmp, (at - 2 * GRACE, at - 2 * GRACE))
    assert sweep(db, store, now=at).num_blobs_collected == 1
    assert list((tmp_path / "files").iterdir()) == []


def test_each_pass_examines_a_bounded_number_and_the_next_continues(
    db: Database, blobs: BlobStorage
) -> None:
    orphaned = {write(blobs, ids.new_id("blob-")) for _ in range(7)}
    after = None
    passes = []
    while True:
        result = sweep(db, blobs, now=later(), after=after, num_blobs=3)
        passes.append(result.num_blobs_examined)
        after = result.next_after
        if after is None:
            break
    assert max(passes) <= 3 and len(passes) >= 3
    assert not any(blobs.exists(name) for name in orphaned)
