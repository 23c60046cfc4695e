"""An engine that is another server: any OpenAI-compatible HTTP API (`engine = "http"`).

Each GenerationRequest becomes one upstream call: messages go to /chat/completions,
text and token ids to /completions, with the upstream's own model name. Streamed
requests are streamed upstream and relayed as Deltas, so real-time streams stay
streams. A `Gate` (engines/flow.py) keeps the upstream saturated without overloading
it: adaptive concurrency, optional requests/tokens per minute, and Retry-After.

Failures follow the worker's rules: load and transport failures (429, 5xx, timeouts,
dropped connections) raise `EngineDied`, which the worker retries with backoff up to
`worker.max_attempts`; any other 4xx is the request's own fault and raises
`RequestRejected` with the upstream's status and message, which becomes its error line.
"""

from __future__ import annotations

import email.utils
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx

from freight.config import AnthropicBatchUpstream, HTTPUpstream, UpstreamSettings
from freight.engines.base import (
    Choice,
    Delta,
    EngineDied,
    FinishReason,
    Generation,
    GenerationRequest,
    RequestRejected,
    no_tool_call_parser,
)
from freight.engines.flow import AdaptiveLimit, FlowStats, Gate, Ticket
from freight.errors import EngineUnavailable

log = logging.getLogger(__name__)

DEFAULT_MAX_TOKENS_ESTIMATE = 256  # tokens-per-minute estimate when max_tokens is unset


def retry_after_seconds(response: httpx.Response) -> float | None:
    """The response's Retry-After (seconds or an HTTP date), in seconds; None if absent."""
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def error_message(response: httpx.Response) -> str:
    """The upstream's own error message (OpenAI or Anthropic shape), else its text."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:500] or response.reason_phrase
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and error.get("message"):
        return str(error["message"])
    return json.dumps(body)[:500]


def is_transient(status_code: int) -> bool:
    """Statuses worth retrying: time-outs, conflicts, throttling, server errors."""
    return status_code in (408, 409, 425, 429) or status_code >= 500


def headers_for(upstream: UpstreamSettings) -> dict[str, str]:
    """Authentication (and version) headers in the upstream API's style."""
    key = upstream.key()
    if key is None and upstream.api_key_env:
        log.warning(
            "upstream %s: the environment variable %s (api_key_env) is not set; "
            "calling it without an API key",
            upstream.base_url,
            upstream.api_key_env,
        )
    if isinstance(upstream, AnthropicBatchUpstream):
        headers = {"anthropic-version": upstream.anthropic_version}
        if key:
            headers["x-api-key"] = key
        return headers
    return {"authorization": f"Bearer {key}"} if key else {}


def open_client(
    upstream: UpstreamSettings,
    *,
    max_connections: int = 100,
    transport: httpx.AsyncBaseTransport | None = None,
) -> httpx.AsyncClient:
    timeout = upstream.timeout_seconds
    return httpx.AsyncClient(
        base_url=upstream.base_url,
        headers=headers_for(upstream),
        timeout=httpx.Timeout(timeout, connect=min(10.0, timeout), pool=None),
        limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=64),
        transport=transport,
    )


def _finish(reason: Any) -> FinishReason:
    return "length" if reason == "length" else "stop"


class HTTPEngine:
    """One model served by an OpenAI-compatible server."""

    def __init__(
        self,
        name: str,
        upstream: HTTPUpstream,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.name = name
        self.upstream = upstream
        self.upstream_model = upstream.model or name
        self.device = "remote"  # /health's engine_devices
        self.max_num_seqs = upstream.max_concurrency
        self.max_model_len = 1_000_000  # the upstream enforces its own context length
        limit = AdaptiveLimit(
            float(
                min(
                    upstream.max_concurrency,
                    max(upstream.min_concurrency, upstream.initial_concurrency),
                )
            ),
            minimum=upstream.min_concurrency,
            maximum=upstream.max_concurrency,
            latency_tolerance=upstream.latency_tolerance,
            backoff_factor=upstream.backoff_factor,
        )
        self.flow = Gate(
            name,
            limit,
            requests_per_minute=upstream.requests_per_minute,
            tokens_per_minute=upstream.tokens_per_minute,
        )
        self.outcomes: dict[str, int] = {}  # upstream calls by outcome, for /metrics
        self._transport = transport
        self._client: httpx.AsyncClient | None = None

    def flow_stats(self) -> FlowStats:
        return self.flow.stats()

    async def start(self) -> None:
        self._client = open_client(
            self.upstream, max_connections=self.upstream.max_concurrency, transport=self._transport
        )

    async def shutdown(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def abort(self, request_ids: list[str]) -> None:
        return None  # cancelling the caller's task closes its upstream connection

    # --- requests ------------------------------------------------------------------

    def _body(self, request: GenerationRequest, *, is_streamed: bool) -> tuple[str, dict[str, Any]]:
        """The upstream URL (relative to base_url) and JSON body for `request`."""
        if request.is_auto_tool_choice:  # the upstream's tool calls are not read back
            raise no_tool_call_parser(self.name)
        s = request.sampling
        body: dict[str, Any] = {
            "model": self.upstream_model,
            "temperature": s.temperature,
            "top_p": s.top_p,
            "n": s.n,
        }
        optional = {
            "max_tokens": s.max_tokens,
            "stop": list(s.stop) or None,
            "seed": s.seed,
            "presence_penalty": s.presence_penalty or None,
            "frequency_penalty": s.frequency_penalty or None,
            "top_k": s.top_k,  # an extension (vLLM, Freight); sent only when asked for
        }
        body.update({k: v for k, v in optional.items() if v is not None})
        if is_streamed:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        if request.messages is None:
            prompt: Any = request.text if request.token_ids is None else list(request.token_ids)
            return "completions", {**body, "prompt": prompt}
        body["messages"] = [{"role": m.role, "content": m.content} for m in request.messages]
        if request.continue_final_message:  # vLLM's extension for an assistant prefill
            body.update(continue_final_message=True, add_generation_prompt=False)
        output = s.json_output
        if output is not None:
            body["response_format"] = (
                {"type": "json_object"}
                if output.schema_json is None
                else {
                    "type": "json_schema",
                    "json_schema": {"name": "output", "schema": json.loads(output.schema_json)},
                }
            )
        return "chat/completions", body

    def _estimate(self, request: GenerationRequest) -> int:
        """Tokens the call may use, for the tokens-per-minute bucket."""
        output = request.sampling.max_tokens or DEFAULT_MAX_TOKENS_ESTIMATE
        return approximate_prompt_tokens(request) + output * request.sampling.n

    def _count(self, outcome: str) -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1

    def _refuse(self, response: httpx.Response, ticket: Ticket) -> Exception:
        """The exception for an error response, with the gate told why it failed."""
        status = response.status_code
        message = (
            f"upstream {self.upstream.base_url} answered HTTP {status}: {error_message(response)}"
        )
        if status == 429 or status >= 500:
            reason = "throttled" if status == 429 else "server_error"
            self.flow.overloaded(ticket, reason, retry_after_seconds(response))
            self._count(reason)
            return EngineDied(message)
        self.flow.ended(ticket)
        if is_transient(status):
            self._count("transient")
            return EngineDied(message)
        self._count("rejected")
        return RequestRejected(message, code="upstream_error", upstream_status=status)

    def stream(self, request: GenerationRequest) -> AsyncIterator[Delta | Generation]:
        return self._run(request, is_streamed=True)

    async def generate(self, request: GenerationRequest) -> Generation:
        result: Generation | None = None
        async for item in self._run(request, is_streamed=False):
            if isinstance(item, Generation):
                result = item
        assert result is not None  # _run always ends with the Generation
        return result

    async def _run(
        self, request: GenerationRequest, *, is_streamed: bool
    ) -> AsyncIterator[Delta | Generation]:
        client = self._client
        if client is None:
            raise EngineUnavailable(f"the engine for {self.name} is not started")
        url, body = self._body(request, is_streamed=is_streamed)
        ticket = await self.flow.acquire(request.priority, self._estimate(request))
        started = time.monotonic()
        is_settled = False
        try:
            try:
                async with client.stream("POST", url, json=body) as response:
                    if response.status_code >= 400:
                        await response.aread()
                        is_settled = True
                        raise self._refuse(response, ticket)
                    reader = _read_stream(response) if is_streamed else _read_body(response)
                    generation: Generation | None = None
                    async for item in reader:
                        if isinstance(item, Generation):
                            generation = item
                        else:
                            yield item
            except httpx.TimeoutException as exc:
                is_settled = True
                self.flow.overloaded(ticket, "timeout", None)
                self._count("timeout")
                raise EngineDied(f"upstream {self.upstream.base_url} timed out: {exc!r}") from exc
            except (httpx.TransportError, httpx.DecodingError, json.JSONDecodeError) as exc:
                is_settled = True
                self.flow.overloaded(ticket, "connection", None)
                self._count("connection")
                raise EngineDied(f"upstream {self.upstream.base_url} failed: {exc!r}") from exc
            assert generation is not None
            is_settled = True
            seconds = time.monotonic() - started
            self.flow.succeeded(
                ticket,
                seconds / max(1, generation.num_output_tokens),
                generation.num_prompt_tokens + generation.num_output_tokens,
            )
            self._count("succeeded")
            yield generation
        finally:
            if not is_settled:  # cancelled, or the caller stopped reading the stream
                self.flow.ended(ticket)


def _usage(usage: Any) -> tuple[int, int, int]:
    """(prompt, cached, completion) tokens from an OpenAI usage object (or None)."""
    if not isinstance(usage, dict):
        return 0, 0, 0
    details = usage.get("prompt_tokens_details") or {}
    return (
        int(usage.get("prompt_tokens") or 0),
        int(details.get("cached_tokens") or 0),
        int(usage.get("completion_tokens") or 0),
    )


def approximate_prompt_tokens(request: GenerationRequest) -> int:
    """A prompt's tokens at about 4 characters a token, and 4 more per chat message (its
    role and markers): the upstream's tokenizer is not here (also `freight estimate`'s)."""
    if request.token_ids is not None:
        return len(request.token_ids)
    if request.messages is not None:
        return sum(len(m.content) for m in request.messages) // 4 + 4 * len(request.messages)
    return len(request.text or "") // 4


def _split_tokens(choices: list[Choice], num_output: int) -> None:
    """Per-choice token counts: the usage's total, shared out (exact for n = 1)."""
    if not choices:
        return
    share, rest = divmod(num_output, len(choices))
    for i, choice in enumerate(choices):
        choice.num_tokens = share + (1 if i < rest else 0)


async def _read_body(response: httpx.Response) -> AsyncIterator[Delta | Generation]:
    """A non-streamed chat.completion or text_completion as one Generation."""
    data = json.loads(await response.aread())
    choices: list[Choice] = []
    for c in sorted(data.get("choices") or [], key=lambda c: c.get("index", 0)):
        message = c.get("message")
        text = (message or {}).get("content") if message is not None else c.get("text")
        stop_reason = c.get("stop_reason")  # vLLM's: which stop string ended it
        choices.append(
            Choice(
                text or "",
                0,
                _finish(c.get("finish_reason")),
                stop_reason if isinstance(stop_reason, str) else None,
            )
        )
    num_prompt, num_cached, num_output = _usage(data.get("usage"))
    _split_tokens(choices, num_output)
    yield Generation(num_prompt, num_cached, choices)


async def _read_stream(response: httpx.Response) -> AsyncIterator[Delta | Generation]:
    """Server-sent chunks relayed as Deltas as they arrive, then the Generation."""
    choices: dict[int, Choice] = {}
    usage: Any = None
    async for line in response.aiter_lines():
        if not line.startswith("data:"):
            continue  # blank separators, comments, `event:` names
        data = line[5:].strip()
        if data == "[DONE]":
            break
        chunk = json.loads(data)
        if chunk.get("error") is not None:
            error = chunk["error"]
            message = error.get("message") if isinstance(error, dict) else error
            raise EngineDied(f"the upstream stream failed: {message}")
        usage = chunk.get("usage") or usage
        for c in chunk.get("choices") or []:
            index = int(c.get("index", 0))
            delta = c.get("delta")
            text = (delta or {}).get("content") if delta is not None else c.get("text")
            finish = c.get("finish_reason")
            choice = choices.setdefault(index, Choice("", 0, "stop"))
            choice.text += text or ""
            if finish is not None:
                choice.finish_reason = _finish(finish)
            if text or finish is not None:
                yield Delta(index, text or "", choice.finish_reason if finish else None)
    num_prompt, num_cached, num_output = _usage(usage)
    ordered = [choices[i] for i in sorted(choices)]
    _split_tokens(ordered, num_output)
    yield Generation(num_prompt, num_cached, ordered)
