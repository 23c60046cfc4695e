"""A worker limited to some models (`freight worker --models`) claims only their requests.

On SQLite and on PostgreSQL, where two claimers really overlap (SKIP LOCKED).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command

from freight.store import batch_requests
from freight.store.db import Database, open_database
from freight.store.schema import requests
from freight.store.statuses import RequestStatus
from tests.integration.test_migrations import alembic
from tests.integration.test_store import new_batch
from tests.integration.test_store_concurrency import run_together

NUM_PER_MODEL = 60


@pytest.fixture
def db(database_url: str, tmp_path: Path) -> Iterator[Database]:
    database = open_database(database_url, tmp_path)
    yield database
    database.dispose()


def add_requests(db: Database, batch_id: str, models: list[str]) -> None:
    """Queued requests of `models`, interleaved in line order (as a message batch may be)."""
    new_batch(db, batch_id)
    rows = [
        {
            "id": f"{batch_id}-r{i}",
            "batch_id": batch_id,
            "line": i + 1,
            "custom_id": f"c{i}",
            "url": "/v1/chat/completions",
            "body": json.dumps({"model": model}),
            "status": RequestStatus.QUEUED,
            "attempts": 0,
            "model": model,
        }
        for i, model in enumerate(models)
    ]
    with db.write() as conn:
        batch_requests.insert_many(conn, rows)


def claim_until_empty(
    db: Database, batch_id: str, owner: str, models: list[str] | None
) -> list[str]:
    claimed: list[str] = []
    while True:
        with db.write() as conn:
            got = batch_requests.claim(conn, batch_id, owner, 7, 60, models=models)
        if not got:
            return claimed
        claimed += [json.loads(r.body)["model"] for r in got]


def test_two_limited_workers_each_claim_only_their_models_requests(db: Database) -> None:
    add_requests(db, "b1", ["a", "b", "c"] * NUM_PER_MODEL)
    got_a, got_b = run_together(
        lambda: claim_until_empty(db, "b1", "worker-a", ["a"]),
        lambda: claim_until_empty(db, "b1", "worker-b", ["b"]),
    )
    assert got_a == ["a"] * NUM_PER_MODEL
    assert got_b == ["b"] * NUM_PER_MODEL
    with db.read() as conn:
        counts = batch_requests.count_by_status(conn, "b1")
    assert counts[RequestStatus.QUEUED] == NUM_PER_MODEL  # model c's: no worker serves it
    assert counts[RequestStatus.RUNNING] == 2 * NUM_PER_MODEL


def test_a_worker_for_several_models_and_an_unlimited_one(db: Database) -> None:
    add_requests(db, "b1", ["a", "b", "c"] * 5)
    assert sorted(set(claim_until_empty(db, "b1", "w1", ["a", "c"]))) == ["a", "c"]
    assert claim_until_empty(db, "b1", "w2", None) == ["b"] * 5  # what is left
    with db.read() as conn:
        assert RequestStatus.QUEUED not in batch_requests.count_by_status(conn, "b1")


def test_the_migration_gives_open_requests_their_model(db: Database) -> None:
    """Requests queued before the upgrade reach a limited worker too; finished ones keep
    no model (nothing claims them again)."""
    new_batch(db, "b1")  # with today's columns: the downgrade keeps the row
    alembic(db, command.downgrade, "0013_merge_heads")
    with db.write() as conn:
        table = sa.Table("requests", sa.MetaData(), autoload_with=conn)
        for i, status in enumerate([RequestStatus.QUEUED, RequestStatus.SUCCEEDED]):
            conn.execute(
                table.insert(),
                {
                    "id": f"r{i}",
                    "batch_id": "b1",
                    "line": i + 1,
                    "custom_id": f"c{i}",
                    "url": "/v1/chat/completions",
                    "body": json.dumps({"model": "a", "messages": []}),
                    "status": status,
                    "attempts": 0,
                },
            )
    alembic(db, command.upgrade, "head")
    with db.read() as conn:
        models = dict(conn.execute(sa.select(requests.c.id, requests.c.model)).all())
    assert models == {"r0": "a", "r1": None}
    assert claim_until_empty(db, "b1", "w", ["a"]) == ["a"]
