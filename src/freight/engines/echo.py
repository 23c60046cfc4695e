"""A zero-cost engine: it echoes the prompt back, one whitespace word per token.

For benchmarks that isolate Freight's own overhead and for unit tests of the worker.
It is never the engine a feature is proven with.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from freight.engines.base import (
    Choice,
    Delta,
    EngineDied,
    FinishReason,
    Generation,
    GenerationRequest,
    no_tool_call_parser,
)


class EchoEngine:
    """Replies with the last message (or the prompt text), truncated to max_tokens words."""

    def __init__(
        self, name: str = "echo", *, delay_seconds: float = 0.0, max_num_seqs: int = 256
    ) -> None:
        self.name = name
        self.delay_seconds = delay_seconds
        self.max_num_seqs = max_num_seqs
        self.max_model_len = 1_000_000
        self.num_started = 0
        self.num_requests = 0  # prompts run, for tests of work saved (deduplication)
        self.fail_next: int = 0  # test hook: the next N requests die as if the engine crashed
        self.is_running = True  # test hook: False plays a dead engine (EnginePool restarts it)

    async def start(self) -> None:
        self.num_started += 1

    async def stream(self, request: GenerationRequest) -> AsyncIterator[Delta | Generation]:
        if self.fail_next > 0:
            self.fail_next -= 1
            raise EngineDied("echo engine: injected failure")
        if request.is_auto_tool_choice:
            raise no_tool_call_parser(self.name)
        self.num_requests += 1
        if self.delay_seconds:
            await asyncio.sleep(self.delay_seconds)
        if request.messages is not None:
            prompt_words = [w for m in request.messages for w in m.content.split()]
            reply = request.messages[-1].content.split()
        elif request.token_ids is not None:
            prompt_words = [str(t) for t in request.token_ids]
            reply = prompt_words
        else:
            prompt_words = (request.text or "").split()
            reply = prompt_words
        limit = request.sampling.max_tokens
        choices = []
        for index in range(request.sampling.n):
            words = reply if limit is None else reply[:limit]
            finish: FinishReason = "length" if limit is not None and len(reply) > limit else "stop"
            text = " ".join(words)
            delta = Delta(index, text, finish)
            if index == 0:
                delta.num_prompt_tokens, delta.num_cached_tokens = len(prompt_words), 0
            yield delta
            choices.append(Choice(text, len(words), finish))
        yield Generation(len(prompt_words), 0, choices)

    async def generate(self, request: GenerationRequest) -> Generation:
        result = None
        async for item in self.stream(request):
            if isinstance(item, Generation):
                result = item
        assert result is not None
        return result

    async def abort(self, request_ids: list[str]) -> None:
        return None

    async def shutdown(self) -> None:
        return None
