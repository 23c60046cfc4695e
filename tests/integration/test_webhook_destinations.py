"""The sender checks each delivery's destination as it connects, whatever was stored:
endpoints stored before the policy (or before an allow-list entry was removed) are
refused, credentials in a stored URL are neither sent nor logged, and errors recorded
by earlier versions are shown without the receiver's body.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from freight.service.webhook_sender import WebhookSender
from freight.store import webhook_store
from freight.store.db import open_database
from tests.integration.test_webhook_outbox import (
    FAST,
    add_batch,
    add_endpoint,
    deliveries,
    end_batch,
    send_until,
)
from tests.netstubs import StubResolver
from tests.webhook_receiver import WebhookReceiver

NOT_ALLOWED = FAST.model_copy(update={"allow_hosts": [], "max_retry_seconds": 0.0})


def test_a_stored_loopback_endpoint_is_refused_at_delivery_unless_allow_listed(
    tmp_path: Path, database_url: str
) -> None:
    db = open_database(database_url, tmp_path)
    with WebhookReceiver() as receiver:
        add_endpoint(db, receiver.url)
        add_batch(db, "batch_1")
        end_batch(db, "batch_1")
        asyncio.run(
            send_until(
                [WebhookSender(NOT_ALLOWED, db)], lambda: deliveries(db)[0].status != "pending"
            )
        )
        assert receiver.requests == []
    (delivery,) = deliveries(db)
    assert delivery.status == "failed" and delivery.last_status_code is None
    assert (delivery.last_error or "").startswith(
        "refused: 127.0.0.1 is a loopback address; webhooks are sent only to public addresses, "
        "unless [webhooks] allow_hosts"
    )


def test_a_name_resolving_to_loopback_at_delivery_is_refused(
    tmp_path: Path, database_url: str
) -> None:
    db = open_database(database_url, tmp_path)
    resolver = StubResolver({"hooks.example.com": ["127.0.0.1"]})
    with WebhookReceiver() as receiver:
        add_endpoint(db, f"http://hooks.example.com:{receiver.port}/hooks")
        add_batch(db, "batch_1")
        end_batch(db, "batch_1")
        sender = WebhookSender(NOT_ALLOWED, db, resolver=resolver)
        asyncio.run(send_until([sender], lambda: deliveries(db)[0].status != "pending"))
        assert receiver.requests == [] and resolver.looked_up == ["hooks.example.com"]
    (delivery,) = deliveries(db)
    assert (delivery.last_error or "").startswith(
        "refused: hooks.example.com resolves to a loopback address"
    )


def test_credentials_in_a_stored_url_are_neither_sent_nor_logged(
    tmp_path: Path, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    db = open_database(database_url, tmp_path)
    with WebhookReceiver() as receiver:
        add_endpoint(db, receiver.url.replace("http://", "http://bob:hunter2@"))
        add_batch(db, "batch_1")
        end_batch(db, "batch_1")
        settings = FAST.model_copy(update={"max_retry_seconds": 0.0})
        with caplog.at_level(logging.DEBUG):
            asyncio.run(
                send_until(
                    [WebhookSender(settings, db)], lambda: deliveries(db)[0].status != "pending"
                )
            )
        assert receiver.requests == []
    (delivery,) = deliveries(db)
    assert delivery.last_error == (
        "refused: the url carries credentials (user:password@); remove them"
    )
    assert "attempt 1 failed" in caplog.text and "http://***@127.0.0.1" in caplog.text
    assert "hunter2" not in caplog.text


def test_errors_recorded_by_earlier_versions_are_shown_without_the_receivers_answer(
    tmp_path: Path, database_url: str
) -> None:
    db = open_database(database_url, tmp_path)
    add_endpoint(db, "http://127.0.0.1:9/x")
    for i, old_error in enumerate(
        [
            "HTTP 500: <html>SECRET stack trace</html>",
            "ConnectError: [Errno 111] Connection refused",
            "no answer within 10 s",
        ]
    ):
        add_batch(db, f"batch_{i}")
        end_batch(db, f"batch_{i}", "failed")
        with db.write() as conn:
            (due,) = webhook_store.claim_due(conn, "old-sender", 10, lease_seconds=30)
            webhook_store.record_attempt(
                conn, due.id, "old-sender", status_code=None, error=old_error, retry_at=None
            )
    shown = {d.batch_id: d.last_error for d in deliveries(db)}
    assert shown == {
        "batch_0": "receiver answered 5xx",
        "batch_1": "could not connect",
        "batch_2": "no answer within 10 s",
    }
