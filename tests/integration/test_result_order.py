"""Results numbered as they land (store/result_order.py) on SQLite and PostgreSQL: the
cursor of GET /v1/batches/{id}/results never serves a line twice, nor skips one, whatever
order requests finish in and however they end (recorded, closed by a cancel, invalid at
ingest)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from freight.store import batch_requests, result_order, retry_lines, statuses
from freight.store.batch_requests import Outcome
from freight.store.db import Database, open_database
from freight.store.statuses import RequestStatus
from tests.integration.test_store import new_batch


@pytest.fixture
def db(database_url: str, tmp_path: Path) -> Iterator[Database]:
    database = open_database(database_url, tmp_path)
    yield database
    database.dispose()


def finish(db: Database, batch_id: str, lines: list[int], status: RequestStatus) -> None:
    """Claim and record the requests of `lines` as `status`."""
    with db.write() as conn:
        claimed = batch_requests.claim(conn, batch_id, "w", 10_000, 60)
        wanted = {f"{batch_id}-r{line - 1}" for line in lines}
        batch_requests.release(conn, "w", [c.id for c in claimed if c.id not in wanted])
        outcomes = [
            Outcome(c.id, batch_id, status, status_code=200, response_json='{"ok":1}')
            if status == RequestStatus.SUCCEEDED
            else Outcome(c.id, batch_id, status, error_json='{"code":"x","message":"m"}')
            for c in claimed
            if c.id in wanted
        ]
        assert batch_requests.record(conn, outcomes) == len(lines)


def read_all(db: Database, batch_id: str, after: int, limit: int) -> tuple[list[str], int]:
    """Every page from `after` on: the custom_ids read, and the last cursor."""
    seen: list[str] = []
    while True:
        with db.read() as conn:
            page = result_order.page(conn, batch_id, after=after, limit=limit)
        if not page.rows:
            return seen, after
        assert page.next_cursor > after
        seen += [row.custom_id for row in page.rows]
        after = page.next_cursor


def test_pages_serve_each_finished_line_once_in_the_order_they_landed(db: Database) -> None:
    new_batch(db, num_requests=10)
    finish(db, "batch_1", [7, 2], RequestStatus.SUCCEEDED)
    first, cursor = read_all(db, "batch_1", 0, 1)
    assert first == ["c6", "c1"] or first == ["c1", "c6"]  # one flush: one order, kept
    finish(db, "batch_1", [1, 9, 3], RequestStatus.ERRORED)
    second, cursor = read_all(db, "batch_1", cursor, 2)
    assert sorted(second) == ["c0", "c2", "c8"]
    with db.write() as conn:  # a cancel closes the rest at once
        batch_requests.close_open(
            conn, "batch_1", RequestStatus.CANCELLED, statuses.CANCELLED_ERROR
        )
    third, cursor = read_all(db, "batch_1", cursor, 3)
    assert sorted(third) == ["c3", "c4", "c5", "c7", "c9"]
    everything, _ = read_all(db, "batch_1", 0, 1000)
    assert everything == first + second + third
    assert read_all(db, "batch_1", cursor, 5) == ([], cursor)


def test_a_line_recorded_twice_keeps_its_first_number(db: Database) -> None:
    new_batch(db, num_requests=2)
    finish(db, "batch_1", [1], RequestStatus.SUCCEEDED)
    with db.write() as conn:  # a late duplicate result of the same request
        late = Outcome("batch_1-r0", "batch_1", RequestStatus.ERRORED, error_json="{}")
        assert batch_requests.record(conn, [late]) == 0
    seen, _ = read_all(db, "batch_1", 0, 10)
    assert seen == ["c0"]


def test_lines_invalid_at_ingest_are_numbered_once_numbered_in_bulk(db: Database) -> None:
    new_batch(db, num_requests=3)
    with db.write() as conn:
        conn.execute(
            batch_requests.requests.update()
            .where(batch_requests.requests.c.line == 2)
            .values(status=RequestStatus.ERRORED, status_code=400, response_json="{}")
        )
        assert result_order.number_finished(conn, "batch_1") == 1
        assert result_order.number_finished(conn, "batch_1") == 0  # never renumbered
    finish(db, "batch_1", [1], RequestStatus.SUCCEEDED)
    seen, _ = read_all(db, "batch_1", 0, 10)
    assert seen == ["c1", "c0"]


def test_concurrent_writers_never_make_a_reader_skip_a_line(db: Database) -> None:
    """Flushes from several threads while a reader follows the cursor: the reader ends
    with every line exactly once (numbers commit in order: the batch row's lock)."""
    num = 120
    new_batch(db, num_requests=num)
    with db.write() as conn:
        claimed = batch_requests.claim(conn, "batch_1", "w", num, 60)
    chunks = [claimed[i::4] for i in range(4)]
    done = threading.Event()

    def write(chunk: list[batch_requests.ClaimedRequest]) -> None:
        for start in range(0, len(chunk), 3):
            outcomes = [
                Outcome(c.id, "batch_1", RequestStatus.SUCCEEDED, 200, json.dumps({"n": c.line}))
                for c in chunk[start : start + 3]
            ]
            with db.write() as conn:
                batch_requests.record(conn, outcomes)

    writers = [threading.Thread(target=write, args=(chunk,)) for chunk in chunks]
    for thread in writers:
        thread.start()
    seen: list[str] = []
    cursor = 0
    while not done.is_set():
        finished = not any(t.is_alive() for t in writers)
        with db.read() as conn:
            page = result_order.page(conn, "batch_1", after=cursor, limit=7)
        seen += [row.custom_id for row in page.rows]
        cursor = page.next_cursor
        if finished and not page.rows:
            done.set()
    assert len(seen) == num and len(set(seen)) == num


def test_retry_picks_server_side_failures_and_invalid_ones_only_when_asked(
    db: Database,
) -> None:
    new_batch(db, num_requests=5)
    finish(db, "batch_1", [1], RequestStatus.SUCCEEDED)
    finish(db, "batch_1", [2], RequestStatus.ERRORED)  # no HTTP status: the worker gave up
    with db.write() as conn:
        claimed = batch_requests.claim(conn, "batch_1", "w", 1, 60)
        refused = Outcome(claimed[0].id, "batch_1", RequestStatus.ERRORED, 400, "{}")
        batch_requests.record(conn, [refused])  # line 3: a 4xx, the request's own fault
        batch_requests.close_open(conn, "batch_1", RequestStatus.EXPIRED, statuses.EXPIRED_ERROR)
    with db.read() as conn:
        default = [
            r.line for r in retry_lines.iter_retryable(conn, "batch_1", include_invalid=False)
        ]
        every = [r.line for r in retry_lines.iter_retryable(conn, "batch_1", include_invalid=True)]
    assert default == [2, 4, 5]
    assert every == [2, 3, 4, 5]
