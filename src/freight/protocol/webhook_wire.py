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
import re
from typing import Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field

from freight.errors import InvalidRequest
from freight.store import webhook_store
from freight.store.webhook_store import EVENT_TYPES

SECRET_PREFIX = "whsec_"
MAX_URL_CHARS = 2048
# scheme://user:password@ at the start of a URL, up to the last @ before the path.
_USERINFO = re.compile(r"^([^:/?#]+://)[^/?#]*@")


class CreateWebhookEndpoint(BaseModel):
    """POST /v1/webhook_endpoints (the `openai` SDK's `client.webhooks.create`)."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(description="Where events are POSTed: an absolute http:// or https:// URL.")
    event_types: list[str] | None = Field(
        None, description=f"Event types to send (default: all of {', '.join(EVENT_TYPES)})."
    )
    name: str = Field("", max_length=255, description="A human-readable name.")


class UpdateWebhookEndpoint(BaseModel):
    """POST /v1/webhook_endpoints/{id}: what is given changes, the rest stays."""

    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(None, description="A new URL.")
    event_types: list[str] | None = Field(None, description="The complete set of event types.")
    name: str | None = Field(None, max_length=255, description="A new name.")


class TestWebhookEndpoint(BaseModel):
    """POST /v1/webhook_endpoints/{id}/test: send a sample event now."""

    model_config = ConfigDict(extra="forbid")

    event_type: str = Field(description="The event type of the sample event.")


class WebhookEndpointTestResult(BaseModel):
    object: Literal["webhook_endpoint.test"] = "webhook_endpoint.test"
    webhook_endpoint_id: str
    event_type: str
    status_code: int = Field(description="The receiver's HTTP status for the sample event.")
    success: Literal[True] = Field(True, description="The request completed (see status_code).")


class WebhookEndpoint(BaseModel):
    id: str
    object: Literal["webhook_endpoint"] = "webhook_endpoint"
    name: str
    url: str
    event_types: list[str]
    created_at: int
    updated_at: int
    signing_secret_hint: str = Field(description="The secret's prefix and last 4 characters.")


class WebhookEndpointWithSecret(WebhookEndpoint):
    signing_secret: str = Field(
        description="The signing secret (whsec_...): returned only on create and rotate."
    )


class WebhookEndpointDeleted(BaseModel):
    id: str
    object: Literal["webhook_endpoint.deleted"] = "webhook_endpoint.deleted"
    deleted: bool = True


class WebhookDelivery(BaseModel):
    """One event's delivery to one endpoint (a Freight extension of OpenAI's API)."""

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


class WebhookEndpointList(BaseModel):
    object: Literal["list"] = "list"
    data: list[WebhookEndpoint]
    first_id: str | None = None
    last_id: str | None = None
    has_more: bool


class WebhookDeliveryList(BaseModel):
    object: Literal["list"] = "list"
    data: list[WebhookDelivery]
    has_more: bool


def display_url(url: str) -> str:
    """The URL with any credentials (`user:password@`) masked, for logs, errors and views."""
    return _USERINFO.sub(r"\1***@", url)


def check_url(url: str) -> str:
    """The URL if events can be POSTed to it; InvalidRequest naming what is accepted.

    Only its form is checked here; where it points is `netguard`'s business.
    """
    accepted = "an absolute http:// or https:// URL such as https://example.com/hooks"
    shown = display_url(url)
    if len(url) > MAX_URL_CHARS:
        raise InvalidRequest(
            f"Invalid url: it is {len(url)} characters long; at most {MAX_URL_CHARS} are accepted.",
            param="url",
        )
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise InvalidRequest(
            f"Invalid url {shown!r}: {exc}; use {accepted}.", param="url"
        ) from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise InvalidRequest(f"Invalid url {shown!r}: use {accepted}.", param="url")
    if parsed.userinfo:
        raise InvalidRequest(
            f"Invalid url {shown!r}: credentials (user:password@) are not accepted in a "
            "webhook URL; receivers authenticate deliveries by their webhook-signature "
            "header, made with the endpoint's signing secret.",
            param="url",
        )
    return url


def check_event_types(event_types: list[str] | None) -> list[str]:
    """The subscribed event types, in the canonical order (all of them when None)."""
    if event_types is None:
        return list(EVENT_TYPES)
    unknown = [e for e in event_types if e not in EVENT_TYPES]
    if unknown or not event_types:
        what = f"{unknown[0]!r} is not an event Freight sends" if unknown else "the list is empty"
        raise InvalidRequest(
            f"Invalid event_types: {what}; accepted: {', '.join(EVENT_TYPES)}.",
            param="event_types",
        )
    return [e for e in EVENT_TYPES if e in event_types]


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


def endpoint_object(record: webhook_store.EndpointRecord) -> WebhookEndpoint:
    return WebhookEndpoint(
        id=record.id,
        name=record.name,
        url=display_url(record.url),  # endpoints made before credentials were refused
        event_types=list(record.event_types),
        created_at=record.created_at,
        updated_at=record.updated_at,
        signing_secret_hint=f"{SECRET_PREFIX}...{record.secret[-4:]}",
    )


def endpoint_with_secret(record: webhook_store.EndpointRecord) -> WebhookEndpointWithSecret:
    return WebhookEndpointWithSecret(
        **endpoint_object(record).model_dump(), signing_secret=record.secret
    )


def _seconds(unix: float | None) -> int | None:
    return None if unix is None else int(unix)


def delivery_object(record: webhook_store.DeliveryRecord) -> WebhookDelivery:
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
            _seconds(record.next_attempt_at) if record.status == webhook_store.PENDING else None
        ),
        last_status_code=record.last_status_code,
        last_error=record.last_error,
        delivered_at=_seconds(record.delivered_at),
    )
