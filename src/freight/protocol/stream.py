"""Streaming building blocks shared by every streaming endpoint.

An endpoint streams by turning engine events into `ServerSentEvent`s (see
`Endpoint.to_stream` in protocol/endpoints.py); the API layer only encodes them
(api/sse.py). Engine events arrive as `(prompt_index, Delta | Generation)` pairs, so
one body with several prompts (a completions `prompt` list) is one merged stream.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from freight.engines.base import Delta, Generation

EngineEvents = AsyncIterator[tuple[int, Delta | Generation]]


@dataclass(frozen=True)
class ServerSentEvent:
    """One SSE message: `event:` (Anthropic names every event; OpenAI names none) and `data:`."""

    data: dict[str, Any] | str
    event: str | None = None


DONE = ServerSentEvent("[DONE]")  # OpenAI's end-of-stream marker


async def prepend(first: tuple[int, Delta | Generation], rest: EngineEvents) -> EngineEvents:
    """`first` (an event already taken from `rest`, to see that the engine started) again
    followed by the rest."""
    yield first
    async for item in rest:
        yield item


async def tap_generations(
    events: EngineEvents, on_generation: Callable[[Generation], None]
) -> EngineEvents:
    """`events` unchanged, calling `on_generation` with each finished Generation."""
    async for index, item in events:
        if isinstance(item, Generation):
            on_generation(item)
        yield index, item


async def merge(streams: list[AsyncIterator[Delta | Generation]]) -> EngineEvents:
    """Interleave several engine streams as they produce, tagged with their index.

    Closing the merged stream (a client that disconnects) cancels every source, which
    aborts their requests inside the engine.
    """
    if len(streams) == 1:
        async for item in streams[0]:
            yield 0, item
        return
    queue: asyncio.Queue[tuple[int, Delta | Generation] | BaseException | None] = asyncio.Queue()

    async def pump(index: int, stream: AsyncIterator[Delta | Generation]) -> None:
        try:
            async for item in stream:
                await queue.put((index, item))
            await queue.put(None)
        except Exception as exc:  # handed to the consumer, which re-raises it
            await queue.put(exc)

    tasks = [asyncio.create_task(pump(i, s)) for i, s in enumerate(streams)]
    try:
        num_open = len(tasks)
        while num_open:
            got = await queue.get()
            if got is None:
                num_open -= 1
            elif isinstance(got, BaseException):
                raise got
            else:
                yield got
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
