"""Real-time requests through the endpoint table: parse, check the model, run at top priority.

Errors come out as FreightErrors, which the app renders in OpenAI's shape: a bad body or
a model of the wrong kind is a 400, an unknown model a 404, an engine that died a 503.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from freight.engines.base import REALTIME_PRIORITY, EngineDied, RequestRejected
from freight.errors import EngineUnavailable, InvalidRequest
from freight.protocol import endpoints
from freight.service import Service


def parse(svc: Service, url: str, raw: Any) -> BaseModel:
    """The validated body for `url`, whose model exists and serves `url`."""
    try:
        body = endpoints.parse_body(endpoints.ENDPOINTS[url], raw, in_batch=False)
    except endpoints.BodyError as exc:
        raise InvalidRequest(exc.message, param=exc.param, code=exc.code) from None
    model: str = body.model  # type: ignore[attr-defined]
    problem = endpoints.model_problem(url, model, svc.registry.get(model).task)
    if problem is not None:
        raise InvalidRequest(problem, param="model", code="model_not_supported")
    return body


async def run(svc: Service, url: str, body: BaseModel, request_id: str) -> endpoints.Answer:
    """Run `body` ahead of batch work; engine refusals become 400s."""
    try:
        return await endpoints.ENDPOINTS[url].run(
            svc.engines, body, request_id, priority=REALTIME_PRIORITY
        )
    except RequestRejected as exc:
        raise rejected(exc) from None
    except EngineDied as exc:
        raise died(exc) from None


def rejected(exc: RequestRejected) -> InvalidRequest:
    return InvalidRequest(str(exc), code=exc.code)


def died(exc: EngineDied) -> EngineUnavailable:
    return EngineUnavailable(f"{exc}. Retry the request.")
