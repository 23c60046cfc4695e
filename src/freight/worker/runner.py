"""Run one claimed request: parse its body, call the engine, shape the wire response."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass

from freight.engines.base import EngineDied, RequestRejected
from freight.engines.pool import EnginePool
from freight.errors import FreightError
from freight.protocol import endpoints
from freight.store.requests import ERRORED, SUCCEEDED, ClaimedRequest, Outcome


@dataclass(frozen=True)
class Transient:
    """The request could not run for a reason that may pass (engine died): retry it."""

    request_id: str
    reason: str


def _error_outcome(
    claimed: ClaimedRequest,
    endpoint: endpoints.Endpoint,
    status_code: int,
    error: endpoints.BodyError,
) -> Outcome:
    body = endpoint.error_body(error, status_code)  # in the endpoint's own API shape
    return Outcome(
        claimed.id,
        claimed.batch_id,
        ERRORED,
        status_code=status_code,
        response_json=json.dumps(body, separators=(",", ":")),
    )


async def execute(claimed: ClaimedRequest, engines: EnginePool) -> Outcome | Transient:
    """Run `claimed` to an Outcome; engine deaths come back as Transient."""
    endpoint = endpoints.ENDPOINTS[claimed.url]
    try:
        body = endpoint.request_model.model_validate_json(claimed.body)
        engine = await engines.get(body.model)  # type: ignore[attr-defined]
        work = endpoint.to_generations(body, f"{claimed.id}-{claimed.attempts}")
        generations = list(await asyncio.gather(*(engine.generate(w) for w in work)))
        response = endpoint.to_response(body, generations)
    except RequestRejected as exc:
        error = endpoints.BodyError(str(exc), code="context_length_exceeded")
        return _error_outcome(claimed, endpoint, 400, error)
    except endpoints.BodyError as exc:
        return _error_outcome(claimed, endpoint, 400, exc)
    except EngineDied as exc:
        return Transient(claimed.id, str(exc))
    except FreightError as exc:
        error = endpoints.BodyError(exc.message, param=exc.param, code=exc.code)
        return _error_outcome(claimed, endpoint, exc.status_code, error)
    # Token totals from the engine's own counts, whatever the wire shape calls them.
    return Outcome(
        claimed.id,
        claimed.batch_id,
        SUCCEEDED,
        status_code=200,
        response_json=json.dumps(response, separators=(",", ":"), ensure_ascii=False),
        input_tokens=sum(g.num_prompt_tokens for g in generations),
        cached_tokens=sum(g.num_cached_tokens for g in generations),
        output_tokens=sum(g.num_output_tokens for g in generations),
    )
