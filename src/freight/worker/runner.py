"""Run one claimed request: parse its body, call the engine, shape the wire response."""

from __future__ import annotations

import asyncio
import json
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from freight.engines.base import EngineDied, Generation, RequestRejected
from freight.engines.pool import EnginePool
from freight.errors import FreightError
from freight.protocol import endpoints
from freight.store.requests import ERRORED, SUCCEEDED, ClaimedRequest, Outcome


@dataclass(frozen=True)
class Transient:
    """The request could not run for a reason that may pass (engine died): retry it."""

    request_id: str
    reason: str


@dataclass
class _Shared:
    task: asyncio.Future[list[Generation]]
    num_waiting: int = 0


@dataclass
class SharedResults:
    """Generations of identical deterministic requests of one batch, computed once.

    The first request with a dedup key runs; the others with the same key await the same
    computation (or reuse it if it finished recently) and shape their own responses from
    it, so every custom_id still gets its own line and ids. If every request waiting on a
    computation is cancelled, the computation is cancelled too (so the engine aborts it);
    a failed computation is forgotten, so retries compute afresh.
    """

    max_finished: int = 10_000
    num_reused: int = 0
    _entries: OrderedDict[str, _Shared] = field(default_factory=OrderedDict)

    async def run(
        self, key: str | None, compute: Callable[[], Awaitable[list[Generation]]]
    ) -> list[Generation]:
        if key is None:
            return await compute()
        entry = self._entries.get(key)
        if entry is None:
            entry = _Shared(asyncio.ensure_future(compute()))
            self._entries[key] = entry
            self._forget_oldest()
        else:
            self.num_reused += 1
            self._entries.move_to_end(key)
        entry.num_waiting += 1
        try:
            return await asyncio.shield(entry.task)
        except BaseException:
            if entry.task.done() and not entry.task.cancelled() and entry.task.exception():
                self._entries.pop(key, None)
            raise
        finally:
            entry.num_waiting -= 1
            if entry.num_waiting == 0 and not entry.task.done():
                entry.task.cancel()
                self._entries.pop(key, None)

    def _forget_oldest(self) -> None:
        while len(self._entries) > self.max_finished:
            oldest_key, oldest = next(iter(self._entries.items()))
            if not oldest.task.done():
                return
            del self._entries[oldest_key]


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


async def execute(
    claimed: ClaimedRequest, engines: EnginePool, shared: SharedResults
) -> Outcome | Transient:
    """Run `claimed` to an Outcome; engine deaths come back as Transient."""
    endpoint = endpoints.ENDPOINTS[claimed.url]
    try:
        body = endpoint.request_model.model_validate_json(claimed.body)
        engine = await engines.get(body.model)  # type: ignore[attr-defined]
        work = endpoint.to_generations(body, f"{claimed.id}-{claimed.attempts}")

        async def compute() -> list[Generation]:
            if len(work) == 1:  # the common case: no gather, no extra task
                return [await engine.generate(work[0])]
            return list(await asyncio.gather(*(engine.generate(w) for w in work)))

        key = f"{claimed.batch_id}:{claimed.dedup_key}" if claimed.dedup_key else None
        generations = await shared.run(key, compute)
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
