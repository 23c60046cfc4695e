"""Run one claimed request: parse its body, call the engine, shape the wire response."""

from __future__ import annotations

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
    claimed: ClaimedRequest, status_code: int, error: endpoints.BodyError
) -> Outcome:
    return Outcome(
        claimed.id,
        claimed.batch_id,
        ERRORED,
        status_code=status_code,
        response_json=json.dumps(error.body(), separators=(",", ":")),
    )


async def execute(claimed: ClaimedRequest, engines: EnginePool) -> Outcome | Transient:
    """Run `claimed` to an Outcome; engine deaths come back as Transient."""
    endpoint = endpoints.ENDPOINTS[claimed.url]
    try:
        body = endpoint.request_model.model_validate_json(claimed.body)
        answer = await endpoint.run(engines, body, f"{claimed.id}-{claimed.attempts}")
    except RequestRejected as exc:
        return _error_outcome(claimed, 400, endpoints.BodyError(str(exc), code=exc.code))
    except endpoints.BodyError as exc:
        return _error_outcome(claimed, 400, exc)
    except EngineDied as exc:
        return Transient(claimed.id, str(exc))
    except FreightError as exc:
        error = endpoints.BodyError(exc.message, param=exc.param, code=exc.code)
        return _error_outcome(claimed, exc.status_code, error)
    return Outcome(
        claimed.id,
        claimed.batch_id,
        SUCCEEDED,
        status_code=200,
        response_json=json.dumps(answer.body, separators=(",", ":"), ensure_ascii=False),
        input_tokens=answer.tokens.num_input,
        cached_tokens=answer.tokens.num_cached,
        output_tokens=answer.tokens.num_output,
    )
