"""Many processes and threads on one store: migrations, claims, results and cancels race.

Each runs on SQLite and on PostgreSQL; on PostgreSQL the racers really overlap (row
locks, SKIP LOCKED), where SQLite's write lock makes them take turns.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.config import Config as AlembicConfig
from alembic.script import ScriptDirectory

from freight.config import QuotaLimits, QuotaSettings
from freight.errors import ConfigError, QuotaExceeded
from freight.service import quotas
from freight.store import batch_requests, batches, files, project_usage
from freight.store import db as db_module
from freight.store.blob_store import BlobStore
from freight.store.db import Database, open_database
from freight.store.statuses import RequestStatus
from tests.conftest import REPO
from tests.integration.test_store import new_batch

MIGRATE = "import sys; from freight.store.db import open_database; open_database(sys.argv[1])"


@pytest.fixture
def db(database_url: str, tmp_path: Path) -> Iterator[Database]:
    database = open_database(database_url, tmp_path)
    yield database
    database.dispose()


def run_together(*jobs: Callable[[], Any]) -> list[Any]:
    """Start every job at the same moment in its own thread; re-raise the first failure."""
    barrier = threading.Barrier(len(jobs))
    results: list[Any] = [None] * len(jobs)
    failures: list[BaseException] = []

    def run(i: int, job: Callable[[], Any]) -> None:
        barrier.wait()
        try:
            results[i] = job()
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(i, job)) for i, job in enumerate(jobs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]
    return results


def test_processes_migrating_one_fresh_database_at_once_all_succeed(database_url: str) -> None:
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", MIGRATE, database_url],
            cwd=REPO,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    errors = [proc.communicate(timeout=300)[1] for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0, 0, 0], errors
    db = Database(database_url)
    with db.read() as conn:
        versions = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars()
        assert sorted(versions) == sorted(migration_heads())  # each applied once
        assert batches.with_status(conn, "in_progress") == []
    db.dispose()


def migration_heads() -> list[str]:
    config = AlembicConfig()
    config.set_main_option("script_location", str(Path(db_module.__file__).parent / "migrations"))
    return list(ScriptDirectory.from_config(config).get_heads())


def test_concurrent_claims_never_lease_a_request_twice(db: Database) -> None:
    new_batch(db, num_requests=400)

    def claimer(owner: str) -> Callable[[], list[str]]:
        def claim_all() -> list[str]:
            mine: list[str] = []
            while True:
                with db.write() as conn:
                    claimed = batch_requests.claim(conn, "batch_1", owner, 7, lease_seconds=60)
                if not claimed:
                    return mine
                mine += [c.id for c in claimed]

        return claim_all

    results = run_together(*(claimer(f"w{i}") for i in range(4)))
    every = [rid for mine in results for rid in mine]
    assert len(every) == len(set(every)) == 400
    with db.read() as conn:
        assert batch_requests.count_by_status(conn, "batch_1") == {"running": 400}


def shuffled_batch(db: Database, batch_id: str, num_requests: int) -> None:
    """A batch whose rows lie in an order unrelated to their ids (as real ids do)."""
    new_batch(db, batch_id)
    ids = [f"{batch_id}-{random.getrandbits(64):016x}" for _ in range(num_requests)]
    with db.write() as conn:
        batch_requests.insert_many(
            conn,
            [
                {
                    "id": rid,
                    "batch_id": batch_id,
                    "line": i + 1,
                    "custom_id": f"c{i}",
                    "url": "/v1/chat/completions",
                    "body": "{}",
                    "status": RequestStatus.QUEUED,
                    "attempts": 0,
                }
                for i, rid in enumerate(ids)
            ],
        )
        batches.set_values(conn, batch_id, num_total=num_requests)
        batches.transition(conn, batch_id, "in_progress")


@pytest.mark.parametrize("round_", range(3))
def test_racing_results_renewals_and_cancel_count_each_request_once(
    db: Database, round_: int
) -> None:
    """Overlapping multi-row updates in opposite orders: no deadlock, exact counters."""
    shuffled_batch(db, "batch_1", 600)
    with db.write() as conn:
        claimed = batch_requests.claim(conn, "batch_1", "w1", 600, lease_seconds=60)
    outcomes = [
        batch_requests.Outcome(
            c.id, "batch_1", RequestStatus.SUCCEEDED, status_code=200, output_tokens=1
        )
        for c in claimed
    ]
    random.shuffle(outcomes)

    def record(chunk: list[batch_requests.Outcome]) -> Callable[[], int]:
        def job() -> int:
            with db.write() as conn:
                return batch_requests.record(conn, chunk)

        return job

    def cancel() -> int:
        with db.write() as conn:
            return len(
                batch_requests.close_open(conn, "batch_1", RequestStatus.CANCELLED, '{"code":"x"}')
            )

    def renew() -> int:
        with db.write() as conn:
            return batch_requests.renew(conn, "w1", 60)

    run_together(
        record(outcomes[:400]),
        record(list(reversed(outcomes[200:]))),
        record(outcomes[::-1]),
        renew,
        cancel,
    )
    with db.read() as conn:
        record_ = batches.get(conn, "batch_1")
        by_status = batch_requests.count_by_status(conn, "batch_1")
    assert record_.num_succeeded + record_.num_cancelled == 600
    assert record_.num_succeeded == by_status.get("succeeded", 0) == record_.output_tokens
    assert record_.num_cancelled == by_status.get("cancelled", 0)
    assert record_.num_open == 0


def test_reclaim_returns_only_expired_leases_while_others_claim(db: Database) -> None:
    new_batch(db, num_requests=50)
    with db.write() as conn:
        batch_requests.claim(conn, "batch_1", "dead", 20, lease_seconds=-1)  # already expired

    def reclaim() -> int:
        with db.write() as conn:
            return batch_requests.reclaim_expired(conn)

    def claim() -> int:
        with db.write() as conn:
            return len(batch_requests.claim(conn, "batch_1", "alive", 30, lease_seconds=60))

    num_reclaimed, num_claimed = run_together(reclaim, claim)
    assert (num_reclaimed, num_claimed) == (20, 30)
    with db.read() as conn:
        assert batch_requests.count_by_status(conn, "batch_1") == {"queued": 20, "running": 30}


def test_an_unsupported_database_url_is_a_config_error_naming_the_supported_ones() -> None:
    with pytest.raises(ConfigError, match="postgresql\\+psycopg://"):
        Database("mysql://root@127.0.0.1/test")


# --- quotas: each check and the row it admits are one transaction ------------------------

QUOTAS = QuotaSettings(default=QuotaLimits(max_queued_requests=10, max_stored_bytes=100_000))
NUM_RACERS = 10


def try_admit(db: Database, blobs: BlobStore, quota: quotas.Quotas, i: int) -> bool:
    """Create a 3-request batch under the queue quota. Odd ones are OpenAI batches whose
    input file is still to be validated (their lines are counted from the blob)."""
    input_file = None
    if i % 2:
        input_file = files.new_record(project="p", filename="in", purpose="batch", num_bytes=9)
        with blobs.create(input_file.blob) as fh:
            fh.write(b"{}\n{}\n{}\n")
        with db.write() as conn:
            files.insert(conn, input_file)

    def insert(conn: sa.Connection) -> batches.BatchRecord:
        return batches.insert(
            conn,
            id=f"batch_{i}_{uuid.uuid4().hex[:8]}",
            project="p",
            api="openai" if input_file else "anthropic",
            endpoint="/v1/chat/completions",
            input_file_id=input_file.id if input_file else None,
            completion_window="24h",
            created_at=0,
            expires_at=86400,
            num_total=0 if input_file else 3,
        )

    try:
        quota.admit_batch(db, blobs, "p", lambda: 3, insert)
    except QuotaExceeded:
        return False
    return True


def try_store(db: Database, quota: quotas.Quotas, num_bytes: int) -> bool:
    """Upload `num_bytes` under a storage hold: declared first, then arriving in pieces."""
    blob = f"blob-{uuid.uuid4().hex}"
    try:
        hold = quota.reserve_storage(db, "p", blob, declared=num_bytes, max_bytes=10**9)
    except QuotaExceeded:
        return False
    try:
        for arrived in [*range(8192, num_bytes, 8192), num_bytes]:
            hold.cover(arrived)
    except QuotaExceeded:
        hold.release()
        return False
    record = files.new_record(
        project="p", filename="f", purpose="batch", num_bytes=num_bytes, file_id=hold.file_id
    )
    with db.write() as conn:
        hold.complete(conn, record)
    return True


def test_racing_batch_creates_queue_exactly_the_quota(database_url: str, tmp_path: Path) -> None:
    """Each racer on its own Database (engine and pool), as separate API processes are."""
    open_database(database_url, tmp_path).dispose()
    blobs = BlobStore(tmp_path / "files")
    quota = quotas.Quotas(QUOTAS)
    dbs = [Database(database_url) for _ in range(NUM_RACERS)]
    try:
        admitted = run_together(
            *(lambda i=i: try_admit(dbs[i], blobs, quota, i) for i in range(NUM_RACERS))
        )
        assert sum(admitted) == 3
        with dbs[0].read() as conn:
            work = project_usage.open_work(conn, "p")
        open_requests = work.num_open + 3 * len(work.unvalidated_blobs)
        assert open_requests == 9
    finally:
        for db in dbs:
            db.dispose()


def test_racing_uploads_store_exactly_the_quota(database_url: str, tmp_path: Path) -> None:
    open_database(database_url, tmp_path).dispose()
    quota = quotas.Quotas(QUOTAS)
    dbs = [Database(database_url) for _ in range(NUM_RACERS)]
    try:
        stored = run_together(*(lambda i=i: try_store(dbs[i], quota, 30_000) for i in range(10)))
        assert sum(stored) == 3
        with dbs[0].read() as conn:
            assert project_usage.stored_bytes(conn, "p") == 90_000
            page, _ = files.list_page(
                conn, project="p", purpose=None, after=None, limit=100, newest_first=True
            )
        assert len(page) == 3  # and no hold left behind
    finally:
        for db in dbs:
            db.dispose()


RACER = """
import json, sys
from pathlib import Path
from freight.service import quotas
from freight.store.blob_store import BlobStore
from freight.store.db import Database
from tests.integration import test_store_concurrency as t

url, root, first = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
db, blobs, quota = Database(url), BlobStore(root), quotas.Quotas(t.QUOTAS)
print("ready", flush=True)
sys.stdin.readline()
admitted = [t.try_admit(db, blobs, quota, first + i) for i in range(2)]
stored = [t.try_store(db, quota, 30_000) for _ in range(2)]
db.dispose()
print(json.dumps({"admitted": admitted, "stored": stored}), flush=True)
"""


def test_racing_processes_stay_within_both_quotas(database_url: str, tmp_path: Path) -> None:
    """Five processes, two batch creates and two uploads each, released together."""
    open_database(database_url, tmp_path).dispose()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, database_url, str(tmp_path / "files"), str(2 * n)],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(5)
    ]
    outcomes = []
    try:
        for proc in procs:  # every one imported, connected and waiting
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        for proc in procs:
            out, err = proc.communicate(timeout=300)
            assert proc.returncode == 0, err
            outcomes.append(json.loads(out))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert sum(sum(o["admitted"]) for o in outcomes) == 3
    assert sum(sum(o["stored"]) for o in outcomes) == 3
