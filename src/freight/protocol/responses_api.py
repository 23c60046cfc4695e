"""The OpenAI Responses API (`/v1/responses`) on the chat engine.

A request's `instructions` and `input` (a string or a list of messages) become one chat
conversation; the generation comes back as a `response` object with one assistant
`message` output item, as the openai SDK's `types/responses` define it. Streaming emits
the same object through the Responses event sequence (`to_stream`, built by
`StreamEvents`), each event named by its `type` as upstream sends them.

Freight runs a response and returns it; it does not store responses (`store` is
accepted and has no effect; there is no GET /v1/responses/{id}), and tools, reasoning
and `previous_response_id` are not supported (they are rejected as unknown parameters).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from typing import Annotated, Any, Literal

from pydantic import Field

from freight import ids
from freight.engines.base import (
    EngineDied,
    Generation,
    GenerationRequest,
    Message,
    RequestRejected,
    Sampling,
)
from freight.protocol import json_output, openai_wire
from freight.protocol.request_model import Items, RequestModel
from freight.protocol.stream import EngineEvents, ServerSentEvent

URL = "/v1/responses"


class _Strict(RequestModel):
    pass


# --- request ---------------------------------------------------------------------------------


class ContentPart(_Strict):
    """Text in a message: `input_text`, or an earlier reply's `output_text` passed back."""

    type: Literal["input_text", "output_text"] = Field(description="Only text is supported.")
    text: str
    annotations: list[Any] | None = Field(None, description="On `output_text` parts; ignored.")
    logprobs: list[Any] | None = Field(None, description="On `output_text` parts; ignored.")


class InputMessage(_Strict):
    """A message of `input`: an easy input message, or an earlier output message."""

    type: Literal["message"] | None = None
    role: Literal["user", "assistant", "system", "developer"]
    content: str | Items[ContentPart]
    id: str | None = Field(None, description="Set on output messages passed back as input.")
    status: Literal["in_progress", "completed", "incomplete"] | None = None
    phase: Literal["commentary", "final_answer"] | None = None

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class TextConfig(_Strict):
    format: json_output.TextFormat | None = Field(
        None, description="text, json_object, or json_schema (enforced while decoding)."
    )


class CreateResponse(_Strict):
    """The body of POST /v1/responses (and of a /v1/responses batch line)."""

    model: str = Field(description="A model from GET /v1/models.")
    input: str | Annotated[Items[InputMessage], Field(min_length=1)] = Field(
        description="A string (one user message) or a list of messages."
    )
    instructions: str | None = Field(None, description="A system message put first.")
    max_output_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    text: TextConfig | None = None
    stream: bool | None = None
    metadata: dict[str, str] | None = None
    store: bool | None = Field(None, description="Accepted; responses are not stored.")
    parallel_tool_calls: bool | None = None
    user: str | None = None
    safety_identifier: str | None = None
    service_tier: openai_wire.ServiceTier | None = Field(
        None, description=openai_wire.SERVICE_TIER_NOTE
    )
    prompt_cache_key: str | None = None

    def messages(self) -> tuple[Message, ...]:
        turns = [Message("system", self.instructions)] if self.instructions else []
        if isinstance(self.input, str):
            turns.append(Message("user", self.input))
        else:
            # Chat templates know system/user/assistant; `developer` is a system turn.
            turns += [
                Message("system" if m.role == "developer" else m.role, m.text()) for m in self.input
            ]
        return tuple(turns)

    @property
    def format(self) -> json_output.TextFormat | None:
        return self.text.format if self.text is not None else None


def to_generations(body: CreateResponse, request_id: str) -> list[GenerationRequest]:
    sampling = Sampling(
        max_tokens=body.max_output_tokens,
        temperature=1.0 if body.temperature is None else body.temperature,
        top_p=1.0 if body.top_p is None else body.top_p,
        json_output=body.format.to_json_output() if body.format is not None else None,
    )
    return [GenerationRequest(request_id, body.model, sampling, messages=body.messages())]


# --- response object -----------------------------------------------------------------------


def _text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def _message_item(item_id: str, status: str, content: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "id": item_id,
        "type": "message",
        "role": "assistant",
        "status": status,
        "content": content,
    }


def _usage(generation: Generation) -> dict[str, Any]:
    return {
        "input_tokens": generation.num_prompt_tokens,
        "input_tokens_details": {
            "cached_tokens": generation.num_cached_tokens,
            "cache_write_tokens": 0,
        },
        "output_tokens": generation.num_output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": generation.num_prompt_tokens + generation.num_output_tokens,
    }


def response_object(
    body: CreateResponse,
    response_id: str,
    created_at: int,
    *,
    status: str,
    output: list[dict[str, Any]],
    usage: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A `response` object; fields echo the request as upstream does."""
    fmt = body.format
    is_done = status in ("completed", "incomplete")
    return {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "completed_at": int(time.time()) if is_done else None,
        "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
        "instructions": body.instructions,
        "max_output_tokens": body.max_output_tokens,
        "metadata": body.metadata or {},
        "model": body.model,
        "output": output,
        "parallel_tool_calls": body.parallel_tool_calls is not False,
        "temperature": 1.0 if body.temperature is None else body.temperature,
        "text": {"format": _format_object(fmt)},
        "tool_choice": "auto",
        "tools": [],
        "top_p": 1.0 if body.top_p is None else body.top_p,
        "usage": usage,
        "user": body.user,
    }


def _format_object(fmt: json_output.TextFormat | None) -> dict[str, Any]:
    if fmt is None:
        return {"type": "text"}
    return fmt.model_dump(by_alias=True, exclude_none=True)


def _status(generation: Generation) -> str:
    return "incomplete" if generation.choices[0].finish_reason == "length" else "completed"


def to_response(body: CreateResponse, generations: list[Generation]) -> dict[str, Any]:
    (generation,) = generations
    status = _status(generation)
    item = _message_item(ids.new_id("msg_"), status, [_text_part(generation.choices[0].text)])
    return response_object(
        body,
        ids.new_id("resp_"),
        int(time.time()),
        status=status,
        output=[item],
        usage=_usage(generation),
    )


# --- streaming --------------------------------------------------------------------------------


class StreamEvents:
    """The Responses event sequence for one streamed response, numbered as it is built.

    `start()` opens the response and its message; `delta()` carries each piece of text;
    `finish()` closes the message and the response with its usage; `fail()` ends a
    stream that broke after it began.
    """

    def __init__(self, body: CreateResponse, response_id: str) -> None:
        self.body = body
        self.response_id = response_id
        self.item_id = ids.new_id("msg_")
        self.created_at = int(time.time())
        self.text = ""
        self._sequence = 0

    def _event(self, kind: str, **fields: Any) -> dict[str, Any]:
        event = {"type": kind, "sequence_number": self._sequence, **fields}
        self._sequence += 1
        return event

    def _response(self, status: str, **kwargs: Any) -> dict[str, Any]:
        return response_object(
            self.body, self.response_id, self.created_at, status=status, **kwargs
        )

    def _where(self) -> dict[str, Any]:
        return {"item_id": self.item_id, "output_index": 0, "content_index": 0}

    def start(self) -> Iterator[dict[str, Any]]:
        opened = self._response("in_progress", output=[])
        yield self._event("response.created", response=opened)
        yield self._event("response.in_progress", response=opened)
        item = _message_item(self.item_id, "in_progress", [])
        yield self._event("response.output_item.added", output_index=0, item=item)
        yield self._event("response.content_part.added", part=_text_part(""), **self._where())

    def delta(self, text: str) -> dict[str, Any]:
        self.text += text
        return self._event("response.output_text.delta", delta=text, logprobs=[], **self._where())

    def finish(self, generation: Generation) -> Iterator[dict[str, Any]]:
        status = _status(generation)
        part = _text_part(self.text)
        yield self._event("response.output_text.done", text=self.text, logprobs=[], **self._where())
        yield self._event("response.content_part.done", part=part, **self._where())
        item = _message_item(self.item_id, status, [part])
        yield self._event("response.output_item.done", output_index=0, item=item)
        done = self._response(status, output=[item], usage=_usage(generation))
        kind = "response.completed" if status == "completed" else "response.incomplete"
        yield self._event(kind, response=done)

    def fail(self, message: str) -> dict[str, Any]:
        failed = self._response("failed", output=[])
        failed["error"] = {"code": "server_error", "message": message}
        return self._event("response.failed", response=failed)


def _event(event: dict[str, Any]) -> ServerSentEvent:
    return ServerSentEvent(event, event=event["type"])


async def to_stream(body: CreateResponse, events: EngineEvents) -> AsyncIterator[ServerSentEvent]:
    """The Responses event sequence for the engine's events (see StreamEvents).

    An engine failure after the stream opened ends it with `response.failed`, numbered
    in sequence like every other event, as the SDK's stream reader expects.
    """
    sequence = StreamEvents(body, ids.new_id("resp_"))
    for event in sequence.start():
        yield _event(event)
    try:
        async for _, item in events:  # one prompt: every item is for prompt 0
            if isinstance(item, Generation):
                for event in sequence.finish(item):
                    yield _event(event)
            elif item.text:
                yield _event(sequence.delta(item.text))
    except (EngineDied, RequestRejected) as exc:
        yield _event(sequence.fail(str(exc)))
