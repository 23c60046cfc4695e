"""/v1/webhook_endpoints: the caller's project's webhook endpoints and their delivery logs.

The paths and objects are OpenAI's (`client.webhooks.create/retrieve/update/list/delete/
rotate_secret/test` in the `openai` SDK); `GET /v1/webhook_endpoints/{id}/deliveries` is
Freight's own, the endpoint's delivery log.
"""

from __future__ import annotations

import asyncio
import time

from fastapi import APIRouter, Body, Depends, Query

from freight import ids, netguard
from freight.api.deps import project, service
from freight.errors import InvalidRequest
from freight.protocol import webhook_wire
from freight.service import webhook_sender
from freight.service.runtime import Service
from freight.store import webhook_store

router = APIRouter(prefix="/v1/webhook_endpoints", tags=["webhooks"])


@router.post("", response_model=webhook_wire.WebhookEndpointWithSecret)
async def create_endpoint(
    req: webhook_wire.CreateWebhookEndpoint = Body(...),
    svc: Service = Depends(service),
    owner: str = Depends(project),
) -> webhook_wire.WebhookEndpointWithSecret:
    """Add an endpoint; the response carries its signing secret, shown this once."""
    url = webhook_wire.check_url(req.url)
    event_types = webhook_wire.check_event_types(req.event_types)
    await _check_destination(svc, url)
    record = await asyncio.to_thread(_add_endpoint, svc, owner, req.name, url, event_types)
    return webhook_wire.endpoint_with_secret(record)


def _add_endpoint(
    svc: Service, owner: str, name: str, url: str, event_types: list[str]
) -> webhook_store.EndpointRecord:
    with svc.db.write() as conn:
        return webhook_store.add_endpoint(
            conn,
            project=owner,
            name=name,
            url=url,
            event_types=event_types,
            secret=webhook_wire.new_secret(),
        )


async def _check_destination(svc: Service, url: str) -> None:
    """A 400 naming `url` if its host is an address webhooks are not sent to.

    Each delivery checks again where it connects; this is for an early, clear error.
    """
    settings = svc.settings.webhooks
    policy = netguard.AddressPolicy.from_allow_hosts(settings.allow_hosts)
    try:
        await netguard.check_url_destination(url, policy, timeout=settings.timeout_seconds)
    except netguard.RefusedDestination as exc:
        raise InvalidRequest(f"Invalid url: {exc.message}.", param="url") from None


@router.get("", response_model=webhook_wire.WebhookEndpointList)
def list_endpoints(
    svc: Service = Depends(service),
    owner: str = Depends(project),
    after: str | None = None,
    limit: int = Query(20, ge=1, le=100),
) -> webhook_wire.WebhookEndpointList:
    with svc.db.read() as conn:
        records, has_more = webhook_store.list_page(conn, owner, after=after, limit=limit)
    data = [webhook_wire.endpoint_object(r) for r in records]
    return webhook_wire.WebhookEndpointList(
        data=data,
        first_id=data[0].id if data else None,
        last_id=data[-1].id if data else None,
        has_more=has_more,
    )


@router.get("/{endpoint_id}", response_model=webhook_wire.WebhookEndpoint)
def retrieve_endpoint(
    endpoint_id: str, svc: Service = Depends(service), owner: str = Depends(project)
) -> webhook_wire.WebhookEndpoint:
    with svc.db.read() as conn:
        return webhook_wire.endpoint_object(webhook_store.get_endpoint(conn, endpoint_id, owner))


@router.post("/{endpoint_id}", response_model=webhook_wire.WebhookEndpoint)
async def update_endpoint(
    endpoint_id: str,
    req: webhook_wire.UpdateWebhookEndpoint = Body(...),
    svc: Service = Depends(service),
    owner: str = Depends(project),
) -> webhook_wire.WebhookEndpoint:
    url = webhook_wire.check_url(req.url) if req.url is not None else None
    event_types = (
        webhook_wire.check_event_types(req.event_types) if req.event_types is not None else None
    )
    if url is not None:
        await _check_destination(svc, url)

    def update() -> webhook_store.EndpointRecord:
        with svc.db.write() as conn:
            return webhook_store.update_endpoint(
                conn, endpoint_id, owner, name=req.name, url=url, event_types=event_types
            )

    return webhook_wire.endpoint_object(await asyncio.to_thread(update))


@router.post("/{endpoint_id}/rotate_secret", response_model=webhook_wire.WebhookEndpointWithSecret)
def rotate_secret(
    endpoint_id: str, svc: Service = Depends(service), owner: str = Depends(project)
) -> webhook_wire.WebhookEndpointWithSecret:
    """A new signing secret; deliveries from now on (retries included) are signed with it."""
    with svc.db.write() as conn:
        record = webhook_store.update_endpoint(
            conn, endpoint_id, owner, secret=webhook_wire.new_secret()
        )
    return webhook_wire.endpoint_with_secret(record)


@router.post("/{endpoint_id}/test", response_model=webhook_wire.WebhookEndpointTestResult)
async def test_endpoint(
    endpoint_id: str,
    req: webhook_wire.TestWebhookEndpoint = Body(...),
    svc: Service = Depends(service),
    owner: str = Depends(project),
) -> webhook_wire.WebhookEndpointTestResult:
    """POST a signed sample event (about a batch that does not exist) to the endpoint now.

    Nothing is queued or logged. A receiver that cannot be reached, or is not allowed
    (netguard), is a 400 saying why in a few words; what the receiver answered is not
    shown beyond its status code.
    """
    (event_type,) = webhook_wire.check_event_types([req.event_type])
    record = await asyncio.to_thread(_endpoint, svc, endpoint_id, owner)
    event_id = ids.new_id("evt_")
    payload = webhook_store.event_payload(
        event_id, event_type, int(time.time()), ids.new_id("batch_test_")
    )
    settings = svc.settings.webhooks
    async with webhook_sender.http_client(settings) as client:
        status_code, error = await webhook_sender.post_event(
            client,
            record.url,
            record.secret,
            event_id,
            payload,
            timeout_seconds=settings.timeout_seconds,
        )
    if status_code is None:
        raise InvalidRequest(
            "The test event could not be delivered to "
            f"{webhook_wire.display_url(record.url)}: {error}",
            code="webhook_test_failed",
        )
    return webhook_wire.WebhookEndpointTestResult(
        webhook_endpoint_id=record.id, event_type=event_type, status_code=status_code
    )


def _endpoint(svc: Service, endpoint_id: str, owner: str) -> webhook_store.EndpointRecord:
    with svc.db.read() as conn:
        return webhook_store.get_endpoint(conn, endpoint_id, owner)


@router.delete("/{endpoint_id}", response_model=webhook_wire.WebhookEndpointDeleted)
def delete_endpoint(
    endpoint_id: str, svc: Service = Depends(service), owner: str = Depends(project)
) -> webhook_wire.WebhookEndpointDeleted:
    with svc.db.write() as conn:
        webhook_store.remove_endpoint(conn, endpoint_id, owner)
    return webhook_wire.WebhookEndpointDeleted(id=endpoint_id)


@router.get("/{endpoint_id}/deliveries", response_model=webhook_wire.WebhookDeliveryList)
def list_deliveries(
    endpoint_id: str,
    svc: Service = Depends(service),
    owner: str = Depends(project),
    limit: int = Query(20, ge=1, le=100),
) -> webhook_wire.WebhookDeliveryList:
    """The endpoint's delivery log, newest first."""
    with svc.db.read() as conn:
        webhook_store.get_endpoint(conn, endpoint_id, owner)
        records = webhook_store.list_deliveries(conn, endpoint_id=endpoint_id, limit=limit + 1)
    data = [webhook_wire.delivery_object(r) for r in records[:limit]]
    return webhook_wire.WebhookDeliveryList(data=data, has_more=len(records) > limit)
