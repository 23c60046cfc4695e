"""GET /v1/models and GET /health."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from freight import __version__
from freight.api.deps import service
from freight.protocol import openai_wire
from freight.service.runtime import Service

router = APIRouter(tags=["meta"])


@router.get("/v1/models", response_model=openai_wire.ListPage)
def list_models(svc: Service = Depends(service)) -> openai_wire.ListPage:
    """Every model, and every alias as a model of its own (clients check names here)."""
    names = [*svc.registry.names(), *svc.registry.aliases()]
    cards = [
        openai_wire.ModelCard(id=name, created=svc.registry.get(name).created)
        for name in sorted(names)
    ]
    return openai_wire.ListPage(
        data=cards,
        first_id=cards[0].id if cards else None,
        last_id=cards[-1].id if cards else None,
        has_more=False,
    )


@router.get("/v1/models/{model}", response_model=openai_wire.ModelCard)
def retrieve_model(model: str, svc: Service = Depends(service)) -> openai_wire.ModelCard:
    spec = svc.registry.get(model)
    return openai_wire.ModelCard(id=model, created=spec.created)


@router.get("/health")
def health(svc: Service = Depends(service)) -> dict[str, Any]:
    """Liveness plus what is ready: `engines` lists models whose engine has started,
    `engine_devices` where each runs ('cpu', 'cuda:0', 'cuda:0,1 (tensor parallel 2)'),
    `model_aliases` each alias's model."""
    worker = svc.worker
    return {
        "status": "ok",
        "version": __version__,
        "engines": svc.engines.started(),
        "engine_devices": svc.engines.devices(),
        "engine_failures": svc.engines.failures,
        "engine_restarts": svc.engines.num_restarts,
        "model_aliases": svc.registry.aliases(),
        "worker": None
        if worker is None
        else {
            "owner": worker.owner,
            "in_flight": worker.num_in_flight,
            "retries": worker.num_retries,
            "given_back_for_realtime": worker.num_given_back,
            "realtime_active": svc.engines.realtime.num_active,
        },
    }
