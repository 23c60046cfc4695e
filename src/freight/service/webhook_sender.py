"""The webhook sender: POSTs queued batch events to their endpoints, signed, with retries.

Every process that runs the batch worker (`freight serve` unless `--no-worker`, `freight
worker`) runs one. Senders share the outbox (store/webhook_store.py) and lease each delivery
before POSTing it, so with any number of processes one attempt at a time is made for
each delivery, and a delivered event is not sent again. A 2xx answer delivers it;
anything else (another status, a refused connection, a timeout) is retried with
exponential backoff and jitter until `[webhooks] max_retry_seconds` after the event,
then the delivery is marked failed. Connections go only to addresses `netguard` allows,
checked as they are made.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time

import httpcore
import httpx

from freight import __version__, ids, netguard
from freight.config import WebhookSettings
from freight.protocol import webhook_wire
from freight.store import webhook_store
from freight.store.db import Database
from freight.usage.recorder import node_name

log = logging.getLogger(__name__)
# A lease outlasts the POST's timeout by this much, so it never runs out mid-attempt.
LEASE_MARGIN_SECONDS = 30.0


def retry_at(
    settings: WebhookSettings, *, num_attempts: int, first_at: float, now: float, jitter: float
) -> float | None:
    """When to try again after `num_attempts` failed attempts, or None to give up.

    The wait doubles from `initial_backoff_seconds` up to `max_backoff_seconds`; `jitter`
    (0 to 1) spreads it over its upper half, so that many deliveries failing together do
    not retry together. No retry is scheduled past `max_retry_seconds` after `first_at`.
    """
    backoff = min(
        settings.max_backoff_seconds, settings.initial_backoff_seconds * 2 ** (num_attempts - 1)
    )
    at = now + backoff * (0.5 + jitter / 2)
    return at if at <= first_at + settings.max_retry_seconds else None


async def post_event(
    client: httpx.AsyncClient,
    url: str,
    secret: str,
    event_id: str,
    payload: str,
    *,
    timeout_seconds: float,
) -> tuple[int | None, str | None]:
    """POST one signed event; the receiver's status code (if any) and why it failed (if so).

    Why is one of a few fixed phrases with the status class and the time taken, never
    the receiver's body or the socket's error: the outcome is shown to whoever set the
    URL, and must not make the sender a probe of what answers there. The body is not
    even read.
    """
    if httpx.URL(url).userinfo:  # an endpoint stored before they were refused
        return None, "refused: the url carries credentials (user:password@); remove them"
    body = payload.encode()
    headers = webhook_wire.signature_headers(secret, event_id, int(time.time()), body)
    headers["content-type"] = "application/json"
    started = time.monotonic()
    try:
        # httpx's timeout bounds each read; this bounds the whole attempt, so that a
        # receiver trickling its answer cannot outlast the sender's lease.
        async with (
            asyncio.timeout(timeout_seconds),
            client.stream("POST", url, content=body, headers=headers) as response,
        ):
            status_code = response.status_code
            elapsed_ms = round((time.monotonic() - started) * 1000)
    except netguard.RefusedDestination as exc:
        return None, f"refused: {exc.message}"
    except (httpx.TimeoutException, TimeoutError):
        return None, f"no answer within {timeout_seconds:g} s"
    except httpx.ConnectError:  # refused, unreachable, TLS: alike, or they map the network
        return None, "could not connect"
    except httpx.HTTPError:
        return None, "no valid HTTP answer"
    if 200 <= status_code < 300:
        return status_code, None
    return status_code, f"receiver answered {status_code // 100}xx in {elapsed_ms} ms"


def http_client(
    settings: WebhookSettings,
    *,
    resolver: netguard.Resolver | None = None,
    network: httpcore.AsyncNetworkBackend | None = None,
) -> httpx.AsyncClient:
    """The client webhooks are sent with: it connects only where `[webhooks]` allows.

    `resolver` and `network` (name resolution, opening connections) are the system's
    unless a test stubs them.
    """
    policy = netguard.AddressPolicy.from_allow_hosts(settings.allow_hosts)
    return httpx.AsyncClient(
        timeout=settings.timeout_seconds,
        follow_redirects=False,  # a redirect is a failure, as in Standard Webhooks
        trust_env=False,  # no proxy from the environment: it would connect unchecked
        headers={"user-agent": f"Freight/{__version__} (webhooks)"},
        transport=netguard.GuardedTransport(policy, resolver=resolver, network=network),
    )


class WebhookSender:
    """Delivers due webhook events until stopped."""

    def __init__(
        self,
        settings: WebhookSettings,
        db: Database,
        *,
        owner: str | None = None,
        resolver: netguard.Resolver | None = None,
        network: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        self.settings = settings
        self.db = db
        self.owner = owner or f"webhooks-{node_name()}-{ids.new_id('')[:8]}"
        self.resolver = resolver
        self.network = network
        self.num_delivered = 0
        self.num_failed_attempts = 0

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until `stop` is set; attempts in flight then finish (within the timeout)."""
        client = http_client(self.settings, resolver=self.resolver, network=self.network)
        async with client:
            while not stop.is_set():
                try:
                    num = await self.deliver_due(client)
                except Exception:  # the database was unreachable, say: try again next round
                    log.exception("webhook delivery round failed")
                    num = 0
                if num < self.settings.max_concurrent:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), self.settings.poll_seconds)

    async def deliver_due(self, client: httpx.AsyncClient) -> int:
        """Lease the deliveries due now and make one attempt at each; how many were due."""
        due = await asyncio.to_thread(self._claim)
        outcomes = await asyncio.gather(
            *(self._attempt(client, delivery) for delivery in due), return_exceptions=True
        )
        for delivery, outcome in zip(due, outcomes, strict=True):
            if isinstance(outcome, Exception):  # its lease runs out and it is tried again
                log.error("webhook delivery %s: %r", delivery.id, outcome)
        return len(due)

    def _claim(self) -> list[webhook_store.DueDelivery]:
        lease = self.settings.timeout_seconds + LEASE_MARGIN_SECONDS
        with self.db.write() as conn:
            return webhook_store.claim_due(conn, self.owner, self.settings.max_concurrent, lease)

    async def _attempt(
        self, client: httpx.AsyncClient, delivery: webhook_store.DueDelivery
    ) -> None:
        status_code, error = await post_event(
            client,
            delivery.url,
            delivery.secret,
            delivery.event_id,
            delivery.payload,
            timeout_seconds=self.settings.timeout_seconds,
        )
        next_at = None
        if error is None:
            self.num_delivered += 1
        else:
            self.num_failed_attempts += 1
            next_at = retry_at(
                self.settings,
                num_attempts=delivery.attempts,
                first_at=delivery.created_at,
                now=time.time(),
                jitter=random.random(),
            )
            log.warning(
                "webhook %s to endpoint %s (%s), attempt %d failed: %s (%s)",
                delivery.event_id,
                delivery.endpoint_id,
                webhook_wire.display_url(delivery.url),
                delivery.attempts,
                error,
                "will retry" if next_at is not None else "giving up",
            )
        recorded = await asyncio.to_thread(self._record, delivery.id, status_code, error, next_at)
        if not recorded:
            log.warning(
                "webhook delivery %s: lease lost before its outcome was recorded", delivery.id
            )

    def _record(
        self, delivery_id: str, status_code: int | None, error: str | None, next_at: float | None
    ) -> bool:
        with self.db.write() as conn:
            return webhook_store.record_attempt(
                conn,
                delivery_id,
                self.owner,
                status_code=status_code,
                error=error,
                retry_at=next_at,
            )
