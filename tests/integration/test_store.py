"""The store on a real SQLite file and a real PostgreSQL database: transitions, events,
leases, idempotent results, paging; concurrent claims and migrations on PostgreSQL."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from freight.errors import Conflict, IllegalTransition, NotFound
from freight.store import batch_requests, batches, files
from freight.store.db import Database, open_database
from freight.store.statuses import RequestStatus
from tests.sqlite_plans import plans_of


@pytest.fixture
def db(database_url: str, tmp_path: Path) -> Iterator[Database]:
    database = open_database(database_url, tmp_path)
    yield database
    database.dispose()


def new_batch(
    db: Database, batch_id: str = "batch_1", created_at: int | None = None, num_requests: int = 0
) -> batches.BatchRecord:
    now = created_at or int(time.time())
    with db.write() as conn:
        record = batches.insert(
            conn,
            id=batch_id,
            project="p",
            api="openai",
            endpoint="/v1/chat/completions",
            input_file_id="file-1",
            completion_window="24h",
            created_at=now,
            created_ns=now,
            expires_at=now + 86400,
        )
        rows = [
            {
                "id": f"{batch_id}-r{i}",
                "batch_id": batch_id,
                "line": i + 1,
                "custom_id": f"c{i}",
                "url": "/v1/chat/completions",
                "body": "{}",
                "status": RequestStatus.QUEUED,
                "attempts": 0,
            }
            for i in range(num_requests)
        ]
        batch_requests.insert_many(conn, rows)
        if num_requests:
            batches.set_values(conn, batch_id, num_total=num_requests)
            record = batches.transition(conn, batch_id, "in_progress")
    return record


def test_sqlite_database_runs_in_wal_mode(tmp_path: Path) -> None:
    db = open_database(f"sqlite:///{tmp_path / 'freight.db'}", tmp_path)
    with db.read() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"


def test_legal_transitions_set_timestamps_and_record_events(db: Database) -> None:
    new_batch(db)
    with db.write() as conn:
        batches.transition(conn, "batch_1", "in_progress")
        batches.transition(conn, "batch_1", "finalizing")
        record = batches.transition(conn, "batch_1", "completed")
        history = [(e["from_status"], e["to_status"]) for e in batches.events(conn, "batch_1")]
    assert record.in_progress_at and record.finalizing_at and record.completed_at
    assert history == [
        (None, "validating"),
        ("validating", "in_progress"),
        ("in_progress", "finalizing"),
        ("finalizing", "completed"),
    ]


@pytest.mark.parametrize(
    ("path", "illegal"),
    [
        ([], "completed"),
        (["in_progress"], "failed"),
        (["failed"], "in_progress"),
        (["cancelling"], "in_progress"),
        (["in_progress", "finalizing"], "cancelling"),
    ],
)
def test_illegal_transition_raises_and_changes_nothing(
    db: Database, path: list[str], illegal: str
) -> None:
    new_batch(db)
    with db.write() as conn:
        for status in path:
            batches.transition(conn, "batch_1", status)
    with pytest.raises(IllegalTransition), db.write() as conn:
        batches.transition(conn, "batch_1", illegal)
    with db.read() as conn:
        assert batches.get(conn, "batch_1").status == (path[-1] if path else "validating")


def test_status_column_cannot_be_set_outside_transition(db: Database) -> None:
    new_batch(db)
    with pytest.raises(IllegalTransition), db.write() as conn:
        batches.set_values(conn, "batch_1", status="completed")


def test_cancel_of_an_ended_batch_is_a_conflict(db: Database) -> None:
    new_batch(db)
    with db.write() as conn:
        batches.transition(conn, "batch_1", "failed")
    with pytest.raises(Conflict), db.write() as conn:
        batches.request_cancel(conn, "batch_1", "p")


def test_other_projects_batches_are_not_found(db: Database) -> None:
    new_batch(db)
    with pytest.raises(NotFound), db.read() as conn:
        batches.get(conn, "batch_1", project="someone-else")


def test_claim_leases_in_line_order_and_never_twice(db: Database) -> None:
    new_batch(db, num_requests=5)
    with db.write() as conn:
        first = batch_requests.claim(conn, "batch_1", "w1", 3, lease_seconds=60)
        second = batch_requests.claim(conn, "batch_1", "w2", 10, lease_seconds=60)
    assert [c.line for c in first] == [1, 2, 3]
    assert [c.line for c in second] == [4, 5]
    assert all(c.attempts == 1 for c in first + second)


def test_claims_and_records_seek_indexes_not_every_queued_request(tmp_path: Path) -> None:
    """A claim must cost the same with 10 or 1,000,000 requests queued: on SQLite no
    statement of a claim or a record may walk the queue through the status index."""
    db = open_database(f"sqlite:///{tmp_path / 'plan.db'}", tmp_path)
    new_batch(db, num_requests=1200)
    with db.write() as conn:
        claimed = batch_requests.claim(conn, "batch_1", "w1", 512, lease_seconds=60)
    plans = plans_of(db, lambda conn: batch_requests.claim(conn, "batch_1", "w1", 512, 60))
    outcomes = [
        batch_requests.Outcome(c.id, "batch_1", RequestStatus.SUCCEEDED, 200, "{}") for c in claimed
    ]
    plans |= plans_of(db, lambda conn: batch_requests.record(conn, outcomes))
    db.dispose()
    assert len(plans) >= 4, plans  # claim: select, update; record: select, update
    assert not any("ix_requests_status_lease" in plan for plan in plans.values()), plans


def test_result_is_recorded_once_even_if_two_workers_race(db: Database) -> None:
    new_batch(db, num_requests=1)
    with db.write() as conn:
        (claimed,) = batch_requests.claim(conn, "batch_1", "w1", 1, lease_seconds=60)
    outcome = batch_requests.Outcome(
        claimed.id,
        "batch_1",
        RequestStatus.SUCCEEDED,
        status_code=200,
        response_json='{"usage": {}}',
        input_tokens=3,
        output_tokens=4,
    )
    with db.write() as conn:
        assert batch_requests.record(conn, [outcome]) == 1
        assert batch_requests.record(conn, [outcome]) == 0
        record = batches.get(conn, "batch_1")
    assert (record.num_succeeded, record.input_tokens, record.output_tokens) == (1, 3, 4)


def test_expired_leases_are_reclaimed_and_renewed_ones_are_not(db: Database) -> None:
    new_batch(db, num_requests=2)
    start = time.time()
    with db.write() as conn:
        batch_requests.claim(conn, "batch_1", "dead", 1, lease_seconds=10, now=start)
        batch_requests.claim(conn, "batch_1", "alive", 1, lease_seconds=10, now=start)
    later = start + 11  # both leases have run out
    with db.write() as conn:
        assert batch_requests.reclaim_expired(conn, now=start + 9) == 0
        assert batch_requests.renew(conn, "alive", 60, now=later) == 1
        assert batch_requests.reclaim_expired(conn, now=later) == 1
        assert batch_requests.count_by_status(conn, "batch_1") == {"queued": 1, "running": 1}


def test_release_returns_requests_without_counting_the_attempt(db: Database) -> None:
    new_batch(db, num_requests=2)
    with db.write() as conn:
        batch_requests.claim(conn, "batch_1", "w1", 2, lease_seconds=60)
        assert batch_requests.release(conn, "w1") == 2
        again = batch_requests.claim(conn, "batch_1", "w2", 2, lease_seconds=60)
    assert [c.attempts for c in again] == [1, 1]


def test_close_open_ends_queued_and_running_and_counts_them(db: Database) -> None:
    new_batch(db, num_requests=3)
    with db.write() as conn:
        (running,) = batch_requests.claim(conn, "batch_1", "w1", 1, lease_seconds=60)
        ids = batch_requests.close_open(conn, "batch_1", RequestStatus.CANCELLED, '{"code": "x"}')
        record = batches.get(conn, "batch_1")
    assert ids == [running.id]
    assert record.num_cancelled == 3
    assert record.num_open == 0


def test_batch_list_pages_newest_first_both_ways(db: Database) -> None:
    for i in range(5):
        new_batch(db, f"batch_{i}", created_at=1000 + i)
    with db.read() as conn:
        page1, more1 = batches.list_page(conn, api="openai", project="p", limit=2)
        page2, more2 = batches.list_page(
            conn, api="openai", project="p", after=page1[-1].id, limit=2
        )
        page3, more3 = batches.list_page(
            conn, api="openai", project="p", after=page2[-1].id, limit=2
        )
        back, more_back = batches.list_page(
            conn, api="openai", project="p", before=page3[0].id, limit=2
        )
    assert [b.id for b in page1 + page2 + page3] == [f"batch_{i}" for i in (4, 3, 2, 1, 0)]
    assert (more1, more2, more3) == (True, True, False)
    assert [b.id for b in back] == ["batch_2", "batch_1"]
    assert more_back is True


def test_file_paging_and_delete(db: Database) -> None:
    with db.write() as conn:
        for i in range(3):
            record = files.new_record(
                project="p", filename=f"f{i}.jsonl", purpose="batch", num_bytes=i
            )
            files.insert(conn, files.FileRecord(**{**record.__dict__, "created_ns": 100 + i}))
    with db.read() as conn:
        page, more = files.list_page(
            conn, project="p", purpose=None, after=None, limit=2, newest_first=True
        )
        assert [f.filename for f in page] == ["f2.jsonl", "f1.jsonl"] and more
    with db.write() as conn:
        files.delete(conn, page[0].id, "p")
    with pytest.raises(NotFound), db.read() as conn:
        files.get(conn, page[0].id)


def test_claims_follow_the_admission_key_then_the_line(db: Database) -> None:
    new_batch(db)
    keys = ["b", "a", "", "a", "c"]
    with db.write() as conn:
        batch_requests.insert_many(
            conn,
            [
                {
                    "id": f"r{i}",
                    "batch_id": "batch_1",
                    "line": i + 1,
                    "custom_id": f"c{i}",
                    "url": "/v1/chat/completions",
                    "body": "{}",
                    "status": RequestStatus.QUEUED,
                    "attempts": 0,
                    "admission_key": key,
                }
                for i, key in enumerate(keys)
            ],
        )
        claimed = batch_requests.claim(conn, "batch_1", "w1", 10, lease_seconds=60)
    assert [c.id for c in claimed] == ["r2", "r1", "r3", "r0", "r4"]
