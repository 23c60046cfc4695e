"""Webhook signatures, retry timing and input checks, without a server."""

from __future__ import annotations

import json
import time

import openai
import pytest

from freight.config import WebhookSettings
from freight.errors import InvalidRequest
from freight.protocol import webhook_wire
from freight.service.webhook_sender import retry_at
from freight.store import webhook_store

CLIENT = openai.OpenAI(api_key="unused", base_url="http://127.0.0.1:9/v1")


def signed(secret: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    return webhook_wire.signature_headers(secret, "evt_abc", timestamp or int(time.time()), body)


def test_openai_sdk_unwraps_a_signed_batch_event() -> None:
    secret = webhook_wire.new_secret()
    body = webhook_store.event_payload(
        "evt_abc", "batch.completed", 1_700_000_000, "batch_1"
    ).encode()
    event = CLIENT.webhooks.unwrap(body, signed(secret, body), secret=secret)
    assert event.type == "batch.completed" and event.id == "evt_abc"
    assert event.data.id == "batch_1" and event.created_at == 1_700_000_000
    assert event.object == "event"


def test_signature_fails_for_another_body_secret_or_an_old_timestamp() -> None:
    secret = webhook_wire.new_secret()
    body = json.dumps({"object": "event"}).encode()
    headers = signed(secret, body)
    with pytest.raises(openai.InvalidWebhookSignatureError):
        CLIENT.webhooks.verify_signature(body + b" ", headers, secret=secret)
    with pytest.raises(openai.InvalidWebhookSignatureError):
        CLIENT.webhooks.verify_signature(body, headers, secret=webhook_wire.new_secret())
    with pytest.raises(openai.InvalidWebhookSignatureError):
        old = signed(secret, body, int(time.time()) - 3600)
        CLIENT.webhooks.verify_signature(body, old, secret=secret)
    assert headers["webhook-signature"].startswith("v1,") and headers["webhook-id"] == "evt_abc"


def test_secrets_are_whsec_with_32_random_bytes() -> None:
    import base64

    first, second = webhook_wire.new_secret(), webhook_wire.new_secret()
    assert first.startswith("whsec_") and first != second
    assert len(base64.b64decode(first.removeprefix("whsec_"))) == 32


def test_retry_waits_double_up_to_the_cap_with_jitter_in_the_upper_half() -> None:
    settings = WebhookSettings(initial_backoff_seconds=2, max_backoff_seconds=10)
    waits = [
        retry_at(settings, num_attempts=n, first_at=0, now=100, jitter=1.0) - 100
        for n in range(1, 6)
    ]
    assert waits == [2, 4, 8, 10, 10]
    assert retry_at(settings, num_attempts=3, first_at=0, now=100, jitter=0.0) == 104
    assert retry_at(settings, num_attempts=3, first_at=0, now=100, jitter=0.5) == 106


def test_no_retry_is_scheduled_past_max_retry_seconds() -> None:
    settings = WebhookSettings(initial_backoff_seconds=60, max_retry_seconds=3600)
    assert retry_at(settings, num_attempts=1, first_at=0, now=3000, jitter=1.0) == 3060
    assert retry_at(settings, num_attempts=1, first_at=0, now=3590, jitter=1.0) is None
    assert WebhookSettings().max_retry_seconds == 86400


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("ftp://example.com/x", "use an absolute http:// or https:// URL"),
        ("/hooks", "use an absolute http:// or https:// URL"),
        ("https://", "use an absolute http:// or https:// URL"),
        ("https://example.com/" + "x" * 2100, "at most 2048 are accepted"),
    ],
)
def test_bad_urls_are_rejected_saying_what_is_accepted(url: str, why: str) -> None:
    with pytest.raises(InvalidRequest) as excinfo:
        webhook_wire.check_url(url)
    assert why in excinfo.value.message and excinfo.value.param == "url"


def test_event_types_default_to_all_and_unknown_ones_are_named() -> None:
    assert webhook_wire.check_event_types(None) == list(webhook_store.EVENT_TYPES)
    assert webhook_wire.check_event_types(["batch.failed", "batch.completed"]) == [
        "batch.completed",
        "batch.failed",
    ]
    with pytest.raises(InvalidRequest) as excinfo:
        webhook_wire.check_event_types(["batch.completed", "response.completed"])
    assert "'response.completed' is not an event Freight sends" in excinfo.value.message
    assert excinfo.value.param == "event_types"
    with pytest.raises(InvalidRequest, match="the list is empty"):
        webhook_wire.check_event_types([])
