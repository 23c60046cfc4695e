"""/v1/webhooks/endpoints: the caller's project's webhook endpoints and their delivery logs."""

from __future__ import annotations

from fastapi import APIRouter, Body, Depends, Query

from freight.api.deps import project, service
from freight.protocol import webhooks as wire
from freight.service import Service
from freight.store import webhooks

router = APIRouter(prefix="/v1/webhooks/endpoints", tags=["webhooks"])


@router.post("", response_model=wire.WebhookEndpoint)
def create_endpoint(
    req: wire.CreateWebhookEndpoint = Body(...),
    svc: Service = Depends(service),
    owner: str = Depends(project),
) -> wire.WebhookEndpoint:
    """Add an endpoint; the response carries its signing secret, shown this once."""
    url = wire.check_url(req.url)
    events = wire.check_events(req.events)
    with svc.db.write() as conn:
        record = webhooks.add_endpoint(
            conn, project=owner, url=url, events=events, secret=wire.new_secret()
        )
    return wire.endpoint_object(record, with_secret=True)


@router.get("", response_model=wire.WebhookList)
def list_endpoints(
    svc: Service = Depends(service), owner: str = Depends(project)
) -> wire.WebhookList:
    with svc.db.read() as conn:
        records = webhooks.list_endpoints(conn, owner)
    return wire.WebhookList(data=[wire.endpoint_object(r) for r in records])


@router.get("/{endpoint_id}", response_model=wire.WebhookEndpoint)
def retrieve_endpoint(
    endpoint_id: str, svc: Service = Depends(service), owner: str = Depends(project)
) -> wire.WebhookEndpoint:
    with svc.db.read() as conn:
        return wire.endpoint_object(webhooks.get_endpoint(conn, endpoint_id, owner))


@router.delete("/{endpoint_id}", response_model=wire.WebhookEndpointDeleted)
def delete_endpoint(
    endpoint_id: str, svc: Service = Depends(service), owner: str = Depends(project)
) -> wire.WebhookEndpointDeleted:
    with svc.db.write() as conn:
        webhooks.remove_endpoint(conn, endpoint_id, owner)
    return wire.WebhookEndpointDeleted(id=endpoint_id)


@router.get("/{endpoint_id}/deliveries", response_model=wire.WebhookList)
def list_deliveries(
    endpoint_id: str,
    svc: Service = Depends(service),
    owner: str = Depends(project),
    limit: int = Query(20, ge=1, le=100),
) -> wire.WebhookList:
    """The endpoint's delivery log, newest first."""
    with svc.db.read() as conn:
        webhooks.get_endpoint(conn, endpoint_id, owner)
        records = webhooks.list_deliveries(conn, endpoint_id=endpoint_id, limit=limit)
    return wire.WebhookList(data=[wire.delivery_object(r) for r in records])
