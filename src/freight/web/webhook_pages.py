"""The dashboard's webhooks page: the project's endpoints and their recent deliveries."""

from __future__ import annotations

import dataclasses

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from freight.api.deps import service
from freight.protocol import webhook_wire
from freight.service.runtime import Service
from freight.store import webhook_store
from freight.web import session
from freight.web.pages import templates

router = APIRouter(include_in_schema=False)
NUM_RECENT = 50


@router.get("/ui/webhooks")
def webhooks_page(
    request: Request, svc: Service = Depends(service), owner: str = Depends(session.project)
) -> Response:
    with svc.db.read() as conn:
        endpoints = webhook_store.list_endpoints(conn, owner)
        deliveries = webhook_store.list_deliveries(conn, project=owner, limit=NUM_RECENT)
    # URLs stored before credentials were refused are shown without them.
    shown = [dataclasses.replace(e, url=webhook_wire.display_url(e.url)) for e in endpoints]
    context = {"project": owner, "endpoints": shown, "deliveries": deliveries}
    return templates.TemplateResponse(request, "webhooks.html", context)
