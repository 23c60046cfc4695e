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
from freight.protocol import webhooks as wire
from freight.service import Service
from freight.store import webhooks
from freight.worker import webhooks as sender

router = APIRouter(prefix="/v1/webhook_endpoints", tags=["webhooks"])


@router.post("", response_model=wire.WebhookEndpointWithSecret)
async def create_endpoint(
    req: wire.CreateWebhookEndpoint = Body(...),
    svc: Service = Depends(service),
    owner: str = Depends(project),
) -> wire.WebhookEndpointWithSecret:
    """Add an endpoint; the response carries its signing secret, shown this once."""
    url = wire.check_url(req.url)
    event_types = wire.check_event_types(req.event_types)
    await _check_destination(svc, url)
    record = await asyncio.to_thread(_add_endpoint, svc, owner, req.name, url, event_types)
    return wire.endpoint_with_secret(record)


def _add_endpoint(
    svc: Service, owner: str, name: str, url: str, event_types: list[str]
) -> webhooks.EndpointRecord:
    with svc.db.write() as conn:
        return webhooks.add_endpoint(
            conn,
            project=owner,
            name=name,
            url=url,
            event_types=event_types,
            secret=wire.new_secret(),
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


@router.get("", response_model=wire.WebhookEndpointList)
def list_endpoints(
    svc: Service = Depends(service),
    owner: str = Depends(project),
    after: str | None = None,
    limit: int = Query(20, ge=1, le=100),
) -> wire.WebhookEndpointList:
    with svc.db.read() as conn:
        records, has_more = webhooks.list_page(conn, owner, after=after, limit=limit)
    data = [wire.endpoint_object(r) for r in records]
    return wire.WebhookEndpointList(
        data=data,
        first_id=data[0].id if data else None,
        last_id=data[-1].id if data else None,
        has_more=has_more,
    )


@router.get("/{endpoint_id}", response_model=wire.WebhookEndpoint)
def retrieve_endpoint(
    endpoint_id: str, svc: Service = Depends(service), owner: str = Depends(project)
) -> wire.WebhookEndpoint:
    with svc.db.read() as conn:
        return wire.endpoint_object(webhooks.get_endpoint(conn, endpoint_id, owner))


@router.post("/{endpoint_id}", response_model=wire.WebhookEndpoint)
async def update_endpoint(
    endpoint_id: str,
    req: wire.UpdateWebhookEndpoint = Body(...),
    svc: Service = Depends(service),
    owner: str = Depends(project),
) -> wire.WebhookEndpoint:
    url = wire.check_url(req.url) if req.url is not None else None
    event_types = wire.check_event_types(req.event_types) if req.event_types is not None else None
    if url is not None:
        await _check_destination(svc, url)

    def update() -> webhooks.EndpointRecord:
        with svc.db.write() as conn:
            return webhooks.update_endpoint(
                conn, endpoint_id, owner, name=req.name, url=url, event_types=event_types
            )

    return wire.endpoint_object(await asyncio.to_thread(update))


@router.post("/{endpoint_id}/rotate_secret", response_model=wire.WebhookEndpointWithSecret)
def rotate_secret(
    endpoint_id: str, svc: Service = Depends(service), owner: str = Depends(project)
) -> wire.WebhookEndpointWithSecret:
    """A new signing secret; deliveries from now on (retries included) are signed with it."""
    with svc.db.write() as conn:
        record = webhooks.update_endpoint(conn, endpoint_id, owner, secret=wire.new_secret())
    return wire.endpoint_with_secret(record)


@router.post("/{endpoint_id}/test", response_model=wire.WebhookEndpointTestResult)
async def test_endpoint(
    endpoint_id: str,
    req: wire.TestWebhookEndpoint = Body(...),
    svc: Service = Depends(service),
    owner: str = Depends(project),
) -> wire.WebhookEndpointTestResult:
    """POST a signed sample event (about a batch that does not exist) to the endpoint now.

    Nothing is queued or logged. A receiver that cannot be reached, or is not allowed
    (netguard), is a 400 saying why in a few words; what the receiver answered is not
    shown beyond its status code.
    """
    (event_type,) = wire.check_event_types([req.event_type])
    record = await asyncio.to_thread(_endpoint, svc, endpoint_id, owner)
    event_id = ids.new_id("evt_")
    payload = webhooks.event_payload(
        event_id, event_type, int(time.time()), ids.new_id("batch_test_")
    )
    settings = svc.settings.webhooks
    async with sender.http_client(settings) as client:
        status_code, error = await sender.post_event(
            client,
            record.url,
            record.secret,
            event_id,
            payload,
            timeout_seconds=settings.timeout_seconds,
        )
    if status_code is None:
        raise InvalidRequest(
            f"The test event could not be delivered to {wire.display_url(record.url)}: {error}",
            code="webhook_test_failed",
        )
    return wire.WebhookEndpointTestResult(
        webhook_endpoint_id=record.id, event_type=event_type, status_code=status_code
    )


def _endpoint(svc: Service, endpoint_id: str, owner: str) -> webhooks.EndpointRecord:
    with svc.db.read() as conn:
        return webhooks.get_endpoint(conn, endpoint_id, owner)


@router.delete("/{endpoint_id}", response_model=wire.WebhookEndpointDeleted)
def delete_endpoint(
    endpoint_id: str, svc: Service = Depends(service), owner: str = Depends(project)
) -> wire.WebhookEndpointDeleted:
    with svc.db.write() as conn:
        webhooks.remove_endpoint(conn, endpoint_id, owner)
    return wire.WebhookEndpointDeleted(id=endpoint_id)


@router.get("/{endpoint_id}/deliveries", response_model=wire.WebhookDeliveryList)
def list_deliveries(
    endpoint_id: str,
    svc: Service = Depends(service),
    owner: str = Depends(project),
    limit: int = Query(20, ge=1, le=100),
) -> wire.WebhookDeliveryList:
    """The endpoint's delivery log, newest first."""
    with svc.db.read() as conn:
        webhooks.get_endpoint(conn, endpoint_id, owner)
        records = webhooks.list_deliveries(conn, endpoint_id=endpoint_id, limit=limit + 1)
    data = [wire.delivery_object(r) for r in records[:limit]]
    return wire.WebhookDeliveryList(data=data, has_more=len(records) > limit)
