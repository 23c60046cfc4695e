"""Upstream batches in the store (store/upstream.py) on SQLite and PostgreSQL: packing
within limits, ordinary claims passing upstream requests by, give-back and adoption."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from freight.store import batch_requests, batches, upstream
from freight.store.db import Database, open_database
from freight.store.statuses import RequestStatus
from tests.sqlite_plans import plans_of


@pytest.fixture
def db(database_url: str, tmp_path: Path) -> Iterator[Database]:
    database = open_database(database_url, tmp_path)
    yield database
    database.dispose()


def new_batch(db: Database, *, num_upstream: int, num_local: int) -> None:
    now = int(time.time())
    rows = [
        {
            "id": f"r{i:02d}",
            "batch_id": "batch_1",
            "line": i + 1,
            "custom_id": f"c{i}",
            "url": "/v1/chat/completions",
            "body": '{"model":"up","messages":[]}' if i < num_upstream else "{}",
            "status": RequestStatus.QUEUED,
            "attempts": 0,
            "upstream": "up" if i < num_upstream else None,
        }
        for i in range(num_upstream + num_local)
    ]
    with db.write() as conn:
        batches.insert(
            conn,
            id="batch_1",
            project="p",
            api="openai",
            endpoint="/v1/chat/completions",
            input_file_id="file-1",
            completion_window="24h",
            created_at=now,
            created_ns=now,
            expires_at=now + 86400,
            num_total=len(rows),
        )
        batch_requests.insert_many(conn, rows)
        batches.transition(conn, "batch_1", "in_progress")


def pack(db: Database, owner: str, max_requests: int = 100, max_bytes: int = 10_000) -> Any:
    with db.write() as conn:
        return upstream.pack(
            conn,
            "batch_1",
            "up",
            "openai",
            owner,
            60,
            max_requests=max_requests,
            max_bytes=max_bytes,
        )


def test_ordinary_claims_pass_upstream_requests_by(db: Database) -> None:
    new_batch(db, num_upstream=3, num_local=2)
    with db.write() as conn:
        claimed = batch_requests.claim(conn, "batch_1", "w1", 10, 60)
        leased = batch_requests.claim_all(conn, "batch_1", "w1", 60)
        (waiting,) = upstream.waiting(conn, ["up"])
        assert upstream.waiting(conn, ["another"]) == upstream.waiting(conn, []) == []
    assert [r.id for r in claimed] == ["r03", "r04"]
    assert leased is None
    assert waiting == upstream.Waiting("batch_1", "up", None)


def test_waiting_and_packing_seek_indexes_not_every_queued_request(tmp_path: Path) -> None:
    """The worker asks these every poll: on SQLite they must not walk every queued request
    through the status index (a million-line local batch made each poll a scan)."""
    db = open_database(f"sqlite:///{tmp_path / 'plan.db'}", tmp_path)
    new_batch(db, num_upstream=600, num_local=600)
    plans = plans_of(db, lambda conn: upstream.waiting(conn, ["up"]))
    plans |= plans_of(
        db,
        lambda conn: upstream.pack(
            conn, "batch_1", "up", "openai", "w1", 60, max_requests=512, max_bytes=10**6
        ),
    )
    db.dispose()
    assert any("ix_requests_upstream" in plan for plan in plans.values()), plans
    assert not any("ix_requests_status_lease" in plan for plan in plans.values()), plans


def test_packing_respects_request_and_byte_limits_in_line_order(db: Database) -> None:
    new_batch(db, num_upstream=5, num_local=0)
    first = pack(db, "w1", max_requests=2)
    assert first is not None
    record, claimed = first
    assert [r.id for r in claimed] == ["r00", "r01"]
    assert (record.status, record.num_requests, record.upstream_id) == ("pending", 2, None)
    body_bytes = len('{"model":"up","messages":[]}') + 200
    second = pack(db, "w1", max_bytes=2 * body_bytes + 1)  # two lines fit, not three
    assert second is not None and [r.id for r in second[1]] == ["r02", "r03"]
    third = pack(db, "w1", max_bytes=1)  # one line always goes, whatever its size
    assert third is not None and [r.id for r in third[1]] == ["r04"]
    assert pack(db, "w1") is None
    with db.read() as conn:
        assert [b.num_requests for b in upstream.for_batch(conn, "batch_1")] == [2, 2, 1]
        assert upstream.num_running(conn, record.id, "w1") == 2
        assert [r.id for r in upstream.requests_of(conn, record.id)] == ["r00", "r01"]


def test_given_back_requests_are_adopted_with_their_upstream_batch(db: Database) -> None:
    new_batch(db, num_upstream=3, num_local=0)
    packed = pack(db, "w1")
    assert packed is not None
    record = packed[0]
    with db.write() as conn:
        upstream.submitted(conn, record.id, "batch_upstream_1", "validating")
        assert batch_requests.release(conn, "w1") == 3  # the worker stops
        (waiting,) = upstream.waiting(conn, ["up"])
        assert waiting.upstream_batch_id == record.id
        adopted = upstream.adopt(conn, record.id, "w2", 60)
        assert upstream.adopt(conn, record.id, "w3", 60) is None  # one adopter wins
    assert adopted is not None
    assert (adopted.status, adopted.upstream_id) == ("submitted", "batch_upstream_1")
    with db.read() as conn:
        assert upstream.num_running(conn, record.id, "w2") == 3
        assert upstream.waiting(conn, ["up"]) == []
    outcomes = [
        batch_requests.Outcome(f"r0{i}", "batch_1", RequestStatus.SUCCEEDED, 200, "{}")
        for i in range(3)
    ]
    with db.write() as conn:
        assert batch_requests.record(conn, outcomes) == 3
        upstream.ended(conn, record.id, "completed", "3 succeeded")
        assert batches.get(conn, "batch_1").num_open == 0
        assert upstream.get(conn, record.id).status == "ended"  # type: ignore[union-attr]
