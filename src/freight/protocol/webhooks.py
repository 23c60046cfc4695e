"""Webhooks on the wire: endpoint and delivery objects, input checks, and signatures.

Signatures follow Standard Webhooks (standardwebhooks.com), the scheme OpenAI's webhooks
use, so `openai.OpenAI().webhooks.unwrap(body, headers, secret=...)` verifies ours:

    webhook-id:        the event id (the same on every retry: receivers dedupe on it)
    webhook-timestamp: Unix seconds of this attempt
    webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">

keyed with the base64-decoded part of the endpoint's `whsec_...` secret.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from typing import Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field

from freight.errors import InvalidRequest
from freight.store import webhooks as store
from freight.store.webhooks import EVENT_TYPES

SECRET_PREFIX = "whsec_"
MAX_URL_CHARS = 2048


class CreateWebhookEndpoint(BaseModel):
    """POST /v1/webhooks/endpoints."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(description="Where events are POSTed: an absolute http:// or https:// URL.")
    events: list[str] | None = Field(
        None, description=f"Event types to send (default: all of {', '.join(EVENT_TYPES)})."
    )


class WebhookEndpoint(BaseModel):
    id: str
    object: Literal["webhook_endpoint"] = "webhook_endpoint"
    url: str
    events: list[str]
    created_at: int
    secret: str | None = Field(
        None, description="The signing secret (whsec_...): returned only when created."
    )


class WebhookEndpointDeleted(BaseModel):
    id: str
    object: Literal["webhook_endpoint.deleted"] = "webhook_endpoint.deleted"
    deleted: bool = True


class WebhookDelivery(BaseModel):
    id: str
    object: Literal["webhook_delivery"] = "webhook_delivery"
    endpoint_id: str
    event_id: str = Field(description="The event's id, also sent as the webhook-id header.")
    event_type: str
    batch_id: str
    status: Literal["pending", "delivered", "failed"]
    attempts: int = Field(description="POSTs made so far (including one in progress).")
    created_at: int
    last_attempt_at: int | None
    next_attempt_at: int | None = Field(description="When the next try is due, while pending.")
    last_status_code: int | None = Field(description="The receiver's last HTTP status, if any.")
    last_error: str | None = Field(description="Why the last attempt failed, if it did.")
    delivered_at: int | None


class WebhookList(BaseModel):
    object: Literal["list"] = "list"
    data: list[WebhookEndpoint] | list[WebhookDelivery]


def check_url(url: str) -> str:
    """The URL if events can be POSTed to it; InvalidRequest naming what is accepted."""
    accepted = "an absolute http:// or https:// URL such as https://example.com/hooks"
    if len(url) > MAX_URL_CHARS:
        raise InvalidRequest(
            f"Invalid url: it is {len(url)} characters long; at most {MAX_URL_CHARS} are accepted.",
            param="url",
        )
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise InvalidRequest(f"Invalid url {url!r}: {exc}; use {accepted}.", param="url") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise InvalidRequest(f"Invalid url {url!r}: use {accepted}.", param="url")
    return url


def check_events(events: list[str] | None) -> list[str]:
    """The subscribed event types, in the canonical order (all of them when None)."""
    if events is None:
        return list(EVENT_TYPES)
    unknown = [e for e in events if e not in EVENT_TYPES]
    if unknown or not events:
        what = f"unknown event type {unknown[0]!r}" if unknown else "the list is empty"
        raise InvalidRequest(
            f"Invalid events: {what}; accepted: {', '.join(EVENT_TYPES)}.", param="events"
        )
    return [e for e in EVENT_TYPES if e in events]


def new_secret() -> str:
    """A fresh signing secret: `whsec_` + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(os.urandom(32)).decode("ascii")


def signature_headers(secret: str, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The Standard Webhooks headers that sign `body` as message `msg_id` at `timestamp`."""
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": "v1," + base64.b64encode(digest).decode("ascii"),
    }


def endpoint_object(record: store.EndpointRecord, *, with_secret: bool = False) -> WebhookEndpoint:
    return WebhookEndpoint(
        id=record.id,
        url=record.url,
        events=list(record.events),
        created_at=record.created_at,
        secret=record.secret if with_secret else None,
    )


def _seconds(unix: float | None) -> int | None:
    return None if unix is None else int(unix)


def delivery_object(record: store.DeliveryRecord) -> WebhookDelivery:
    return WebhookDelivery(
        id=record.id,
        endpoint_id=record.endpoint_id,
        event_id=record.event_id,
        event_type=record.event_type,
        batch_id=record.batch_id,
        status=record.status,  # type: ignore[arg-type]
        attempts=record.attempts,
        created_at=int(record.created_at),
        last_attempt_at=_seconds(record.last_attempt_at),
        next_attempt_at=(
            _seconds(record.next_attempt_at) if record.status == store.PENDING else None
        ),
        last_status_code=record.last_status_code,
        last_error=record.last_error,
        delivered_at=_seconds(record.delivered_at),
    )
