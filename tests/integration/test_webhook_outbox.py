"""The webhook outbox on SQLite and PostgreSQL: written with the terminal status change,
delivered once by one of several senders, retried with backoff, failed when time runs out.
"""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import pytest

from freight.config import WebhookSettings
from freight.service.webhook_sender import WebhookSender
from freight.store import batches, webhook_store
from freight.store.db import Database, open_database
from tests.webhook_receiver import WebhookReceiver

FAST = WebhookSettings(
    initial_backoff_seconds=0.05,
    max_backoff_seconds=0.2,
    poll_seconds=0.02,
    timeout_seconds=5,
    allow_hosts=["127.0.0.1"],  # the receivers listen on loopback
)


def add_batch(db: Database, batch_id: str, project: str = "default") -> None:
    now = int(time.time())
    with db.write() as conn:
        batches.insert(
            conn,
            id=batch_id,
            project=project,
            api="openai",
            endpoint="/v1/chat/completions",
            input_file_id="file-x",
            completion_window="24h",
            created_at=now,
            expires_at=now + 86400,
        )


def end_batch(db: Database, batch_id: str, status: str = "completed") -> None:
    with db.write() as conn:
        if status == "failed":
            batches.transition(conn, batch_id, "failed")
            return
        batches.transition(conn, batch_id, "in_progress")
        if status == "completed":
            batches.transition(conn, batch_id, "finalizing")
        elif status == "cancelled":
            batches.transition(conn, batch_id, "cancelling")
        batches.transition(conn, batch_id, status)


def add_endpoint(db: Database, url: str, project: str = "default", **kwargs: object) -> str:
    values = {
        "event_types": list(webhook_store.EVENT_TYPES),
        "secret": "whsec_" + "A" * 44,
        **kwargs,
    }
    with db.write() as conn:
        record = webhook_store.add_endpoint(conn, project=project, url=url, **values)  # type: ignore[arg-type]
    return record.id


def deliveries(db: Database, **kwargs: object) -> list[webhook_store.DeliveryRecord]:
    with db.read() as conn:
        return webhook_store.list_deliveries(conn, limit=1000, **kwargs)  # type: ignore[arg-type]


async def send_until(senders: list[WebhookSender], done: object, timeout: float = 30) -> None:
    stop = asyncio.Event()
    tasks = [asyncio.create_task(s.run(stop)) for s in senders]
    deadline = time.monotonic() + timeout
    try:
        while not done():  # type: ignore[operator]
            assert time.monotonic() < deadline, "deliveries did not finish"
            await asyncio.sleep(0.02)
    finally:
        stop.set()
        await asyncio.gather(*tasks)


def test_terminal_transitions_queue_one_delivery_per_subscribed_endpoint(
    tmp_path: Path, database_url: str
) -> None:
    db = open_database(database_url, tmp_path)
    everything = add_endpoint(db, "http://127.0.0.1:9/all")
    only_failed = add_endpoint(db, "http://127.0.0.1:9/failed", event_types=["batch.failed"])
    add_endpoint(db, "http://127.0.0.1:9/other", project="other")
    for status in ("completed", "failed", "cancelled", "expired"):
        add_batch(db, f"batch_{status}")
        end_batch(db, f"batch_{status}", status)
    add_batch(db, "batch_running")
    with db.write() as conn:
        batches.transition(conn, "batch_running", "in_progress")
    queued = {(d.endpoint_id, d.event_type, d.batch_id) for d in deliveries(db)}
    assert queued == {
        (everything, "batch.completed", "batch_completed"),
        (everything, "batch.failed", "batch_failed"),
        (everything, "batch.cancelled", "batch_cancelled"),
        (everything, "batch.expired", "batch_expired"),
        (only_failed, "batch.failed", "batch_failed"),
    }
    # both endpoints get the same event (one webhook-id) for the failed batch
    failed = [d for d in deliveries(db) if d.batch_id == "batch_failed"]
    assert len({d.event_id for d in failed}) == 1 and failed[0].event_id.startswith("evt_")
    assert all(d.status == "pending" and d.attempts == 0 for d in deliveries(db))


def test_a_rolled_back_status_change_queues_no_event(tmp_path: Path, database_url: str) -> None:
    db = open_database(database_url, tmp_path)
    add_endpoint(db, "http://127.0.0.1:9/all")
    add_batch(db, "batch_1")
    with pytest.raises(RuntimeError), db.write() as conn:
        batches.transition(conn, "batch_1", "failed")
        assert len(webhook_store.list_deliveries(conn)) == 1  # inside the transaction
        raise RuntimeError("crash before commit")
    assert deliveries(db) == []
    with db.read() as conn:
        assert batches.get(conn, "batch_1").status == "validating"


def test_two_senders_deliver_each_event_exactly_once(tmp_path: Path, database_url: str) -> None:
    db = open_database(database_url, tmp_path)
    other_db = Database(database_url)  # a second process's connections
    num_batches = 30
    with WebhookReceiver() as receiver:
        endpoint_id = add_endpoint(db, receiver.url)
        with db.read() as conn:
            receiver.secret = webhook_store.get_endpoint(conn, endpoint_id).secret
        for i in range(num_batches):
            add_batch(db, f"batch_{i:02d}")
            end_batch(db, f"batch_{i:02d}")
        senders = [
            WebhookSender(FAST.model_copy(update={"max_concurrent": 4}), db),
            WebhookSender(FAST.model_copy(update={"max_concurrent": 4}), other_db),
        ]
        asyncio.run(send_until(senders, lambda: all(d.status != "pending" for d in deliveries(db))))
        assert sorted(e.data.id for e in receiver.events) == [
            f"batch_{i:02d}" for i in range(num_batches)
        ]
        assert set(receiver.posts_per_id().values()) == {1}  # no event was POSTed twice
    assert all(d.status == "delivered" and d.attempts == 1 for d in deliveries(db))
    assert all(d.last_status_code == 200 and d.last_error is None for d in deliveries(db))
    assert senders[0].num_delivered + senders[1].num_delivered == num_batches
    assert senders[0].num_delivered > 0 and senders[1].num_delivered > 0
    other_db.dispose()


def test_a_receiver_that_fails_twice_gets_the_event_once_after_three_attempts(
    tmp_path: Path, database_url: str
) -> None:
    db = open_database(database_url, tmp_path)
    with WebhookReceiver(num_failures=2) as receiver:
        endpoint_id = add_endpoint(db, receiver.url)
        with db.read() as conn:
            receiver.secret = webhook_store.get_endpoint(conn, endpoint_id).secret
        add_batch(db, "batch_1")
        end_batch(db, "batch_1")
        asyncio.run(
            send_until([WebhookSender(FAST, db)], lambda: deliveries(db)[0].status != "pending")
        )
        assert [e.data.id for e in receiver.events] == ["batch_1"]
        ((event_id, num_posts),) = receiver.posts_per_id().items()
    (delivery,) = deliveries(db, endpoint_id=endpoint_id)
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("delivered", 3, 200)
    assert num_posts == 3 and delivery.event_id == event_id
    assert delivery.last_error is None and delivery.delivered_at is not None


def test_a_delivery_that_keeps_failing_is_marked_failed_after_max_retry_seconds(
    tmp_path: Path, database_url: str
) -> None:
    db = open_database(database_url, tmp_path)
    with WebhookReceiver(num_failures=1000) as receiver:
        add_endpoint(db, receiver.url)
        add_batch(db, "batch_1")
        end_batch(db, "batch_1", "expired")
        settings = FAST.model_copy(update={"max_retry_seconds": 0.5})
        asyncio.run(
            send_until([WebhookSender(settings, db)], lambda: deliveries(db)[0].status != "pending")
        )
        num_posts = len(receiver.requests)
    (delivery,) = deliveries(db)
    assert delivery.status == "failed" and delivery.delivered_at is None
    assert delivery.attempts == num_posts >= 2
    assert delivery.last_status_code == 500
    assert re.fullmatch(r"receiver answered 5xx in \d+ ms", delivery.last_error or "")


def test_an_unreachable_endpoint_records_that_it_could_not_connect(
    tmp_path: Path, database_url: str
) -> None:
    db = open_database(database_url, tmp_path)
    add_endpoint(db, "http://127.0.0.1:9/nobody-listens")
    add_batch(db, "batch_1")
    end_batch(db, "batch_1", "failed")
    settings = FAST.model_copy(update={"max_retry_seconds": 0.0})
    asyncio.run(
        send_until([WebhookSender(settings, db)], lambda: deliveries(db)[0].status != "pending")
    )
    (delivery,) = deliveries(db)
    assert delivery.status == "failed" and delivery.attempts == 1
    assert delivery.last_status_code is None and delivery.last_error == "could not connect"


def test_a_delivery_whose_sender_died_is_sent_again_after_its_lease(
    tmp_path: Path, database_url: str
) -> None:
    db = open_database(database_url, tmp_path)
    with WebhookReceiver() as receiver:
        endpoint_id = add_endpoint(db, receiver.url)
        with db.read() as conn:
            receiver.secret = webhook_store.get_endpoint(conn, endpoint_id).secret
        add_batch(db, "batch_1")
        end_batch(db, "batch_1")
        with db.write() as conn:  # a sender leases it, then dies before POSTing
            assert len(webhook_store.claim_due(conn, "dead-sender", 10, lease_seconds=0.3)) == 1
        with db.write() as conn:  # leased: nobody else takes it meanwhile
            assert webhook_store.claim_due(conn, "other", 10, lease_seconds=5) == []
        asyncio.run(
            send_until([WebhookSender(FAST, db)], lambda: deliveries(db)[0].status != "pending")
        )
        assert [e.data.id for e in receiver.events] == ["batch_1"]
    (delivery,) = deliveries(db)
    assert delivery.status == "delivered" and delivery.attempts == 2
    with db.write() as conn:  # the dead sender's late outcome is not recorded
        assert not webhook_store.record_attempt(
            conn, delivery.id, "dead-sender", status_code=500, error="HTTP 500", retry_at=None
        )


def test_a_receiver_slower_than_the_timeout_counts_as_a_failed_attempt(
    tmp_path: Path, database_url: str
) -> None:
    db = open_database(database_url, tmp_path)
    with WebhookReceiver(delay_seconds=1.0) as receiver:
        add_endpoint(db, receiver.url)
        add_batch(db, "batch_1")
        end_batch(db, "batch_1")
        settings = FAST.model_copy(update={"timeout_seconds": 0.2, "max_retry_seconds": 0.0})
        asyncio.run(
            send_until([WebhookSender(settings, db)], lambda: deliveries(db)[0].status != "pending")
        )
    (delivery,) = deliveries(db)
    assert delivery.status == "failed" and delivery.attempts == 1
    assert delivery.last_error == "no answer within 0.2 s" and delivery.last_status_code is None
