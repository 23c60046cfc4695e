"""Run one claimed request: parse its body, run it through its endpoint, record an Outcome.

Identical deterministic requests of one batch share their engine work (SharedResults);
a FreightError is stored as the request's error line with the status it carries
(`line_status`), in the endpoint's own API shape (OpenAI's, or Anthropic's for
/v1/messages).
"""

from __future__ import annotations

import asyncio
import json
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from freight.engines.pool import EnginePool
from freight.errors import EngineUnavailable, FreightError
from freight.protocol import endpoints
from freight.store.batch_requests import ClaimedRequest, Outcome
from freight.store.statuses import RequestStatus
from freight.worker import scheduler

R = TypeVar("R")


@dataclass(frozen=True)
class Transient:
    """The request could not run for a reason that may pass (the engine died or is being
    restarted, the request timed out): retry it."""

    request_id: str
    reason: str


@dataclass
class _Shared:
    task: asyncio.Future[Any]
    num_waiting: int = 0


@dataclass
class SharedResults:
    """Engine results of identical deterministic requests of one batch, computed once.

    The first request with a dedup key runs; the others with the same key await the same
    computation (or reuse it if it finished recently) and shape their own responses from
    it, so every custom_id still gets its own line and ids. If every request waiting on a
    computation is cancelled, the computation is cancelled too (so the engine aborts it);
    a failed computation is forgotten, so retries compute afresh.
    """

    max_finished: int = 10_000
    num_reused: int = 0
    _entries: OrderedDict[str, _Shared] = field(default_factory=OrderedDict)

    def sharing(self, key: str | None) -> endpoints.Share:
        """The `share` an endpoint's `run` calls its engine through (None: not shared)."""

        async def share(compute: Callable[[], Awaitable[R]]) -> R:
            return await self.run(key, compute)

        return share

    async def run(self, key: str | None, compute: Callable[[], Awaitable[R]]) -> R:
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
            result: R = await asyncio.shield(entry.task)
            return result
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
    claimed: ClaimedRequest, endpoint: endpoints.AnyEndpoint, error: FreightError
) -> Outcome:
    """The errored line for `error`: its status, and its body in the endpoint's API shape."""
    status_code = error.line_status
    body = endpoint.error_body(error, status_code)
    return Outcome(
        claimed.id,
        claimed.batch_id,
        RequestStatus.ERRORED,
        status_code=status_code,
        response_json=json.dumps(body, separators=(",", ":")),
    )


async def execute(
    claimed: ClaimedRequest, engines: EnginePool, shared: SharedResults
) -> Outcome | Transient:
    """Run `claimed` to an Outcome; an engine that died or is not running is Transient.

    Every other FreightError is permanent, and its line says why: a body the engine
    rejects (a prompt plus max_tokens longer than the context) is a 400 naming the limit.
    """
    endpoint = endpoints.ENDPOINTS[claimed.url]
    key = f"{claimed.batch_id}:{claimed.dedup_key}" if claimed.dedup_key else None
    try:
        body = endpoint.request_model.model_validate_json(claimed.body)
        answer = await endpoint.run(
            engines,
            body,
            f"{claimed.id}-{claimed.attempts}",
            priority=scheduler.engine_priority(claimed.priority),
            share=shared.sharing(key),
        )
    except EngineUnavailable as exc:  # died, not started, or could not start: may pass
        return Transient(claimed.id, exc.message)
    except FreightError as exc:
        return _error_outcome(claimed, endpoint, exc)
    # Token totals from the engine's own counts, whatever the wire shape calls them.
    return Outcome(
        claimed.id,
        claimed.batch_id,
        RequestStatus.SUCCEEDED,
        status_code=200,
        response_json=json.dumps(answer.body, separators=(",", ":"), ensure_ascii=False),
        input_tokens=answer.tokens.num_input,
        cached_tokens=answer.tokens.num_cached,
        output_tokens=answer.tokens.num_output,
    )
