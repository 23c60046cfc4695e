"""Translation for OpenAI's POST /v1/chat/completions and /v1/completions.

Registered in the ENDPOINTS table (protocol/endpoints.py): a body becomes one
GenerationRequest per prompt, Generations become a `chat.completion` or
`text_completion`, and engine events become OpenAI's streamed chunks (`[DONE]` last).
A chat `response_format` (json_object / json_schema) constrains the output while
decoding (protocol/json_output.py), and so does a forced tool (protocol/forced_tools.py),
whose output is answered as a `tool_calls` entry with `finish_reason: "tool_calls"`.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

from freight import ids
from freight.engines.base import (
    Choice,
    Delta,
    Generation,
    GenerationRequest,
    JsonOutput,
    Message,
    Sampling,
)
from freight.protocol import forced_tools, openai_wire
from freight.protocol.body_errors import BodyError
from freight.protocol.stream import DONE, EngineEvents, ServerSentEvent

CHAT_URL = "/v1/chat/completions"
COMPLETIONS_URL = "/v1/completions"


def sampling_from(
    body: openai_wire._SamplingBody,
    max_tokens: int | None,
    *,
    json_output: JsonOutput | None = None,
) -> Sampling:
    stop = body.stop
    return Sampling(
        max_tokens=max_tokens,
        temperature=1.0 if body.temperature is None else body.temperature,
        top_p=1.0 if body.top_p is None else body.top_p,
        n=body.n or 1,
        stop=(stop,) if isinstance(stop, str) else tuple(stop or ()),
        seed=body.seed,
        presence_penalty=body.presence_penalty or 0.0,
        frequency_penalty=body.frequency_penalty or 0.0,
        json_output=json_output,
    )


def usage_of(generations: list[Generation]) -> openai_wire.Usage:
    num_prompt = sum(g.num_prompt_tokens for g in generations)
    num_output = sum(g.num_output_tokens for g in generations)
    return openai_wire.Usage(
        prompt_tokens=num_prompt,
        completion_tokens=num_output,
        total_tokens=num_prompt + num_output,
        prompt_tokens_details=openai_wire.PromptTokensDetails(
            cached_tokens=sum(g.num_cached_tokens for g in generations)
        ),
    )


# --- /v1/chat/completions -----------------------------------------------------------------


def _chat_messages(body: openai_wire.ChatCompletionRequest) -> tuple[Message, ...]:
    # Chat templates know system/user/assistant; OpenAI's newer `developer` is a system turn.
    return tuple(
        Message("system" if m.role == "developer" else m.role, m.text()) for m in body.messages
    )


def chat_generations(
    body: openai_wire.ChatCompletionRequest, request_id: str
) -> list[GenerationRequest]:
    return [
        GenerationRequest(
            request_id=request_id,
            model=body.model,
            sampling=sampling_from(body, body.output_limit, json_output=body.json_output()),
            messages=_chat_messages(body),
            tools_json=body.template_tools(),
            is_auto_tool_choice=body.is_auto_tool_choice,
        )
    ]


def _chat_choice(
    index: int, choice: Choice, tool: forced_tools.ForcedTool | None
) -> openai_wire.ChatChoice:
    """A forced tool's completed output is its call, and so are the calls the parser found
    (auto); anything else (or arguments cut short by max_tokens) is content."""
    is_done = choice.finish_reason == "stop"
    if tool is not None and is_done and forced_tools.arguments(choice.text) is not None:
        call = openai_wire.ToolCall(
            id=ids.new_id("call_"),
            function=openai_wire.FunctionCall(name=tool.name, arguments=choice.text),
        )
        message = openai_wire.AssistantMessage(content=None, tool_calls=[call])
        return openai_wire.ChatChoice(index=index, message=message, finish_reason="tool_calls")
    if choice.tool_calls:
        calls = [
            openai_wire.ToolCall(
                id=ids.new_id("call_"),
                function=openai_wire.FunctionCall(name=c.name, arguments=c.arguments),
            )
            for c in choice.tool_calls
        ]
        message = openai_wire.AssistantMessage(content=choice.text or None, tool_calls=calls)
        finish = "tool_calls" if choice.finish_reason == "stop" else choice.finish_reason
        return openai_wire.ChatChoice(index=index, message=message, finish_reason=finish)
    message = openai_wire.AssistantMessage(content=choice.text)
    return openai_wire.ChatChoice(index=index, message=message, finish_reason=choice.finish_reason)


def chat_response(
    body: openai_wire.ChatCompletionRequest, generations: list[Generation]
) -> dict[str, Any]:
    (generation,) = generations
    tool = body.forced_tool()
    return openai_wire.ChatCompletion(
        id=ids.new_id("chatcmpl-"),
        created=int(time.time()),
        model=body.model,
        choices=[_chat_choice(i, c, tool) for i, c in enumerate(generation.choices)],
        usage=usage_of(generations),
    ).model_dump()


class _ChunkStream:
    """What every OpenAI chunk of one stream shares; `usage: null` when usage will follow."""

    def __init__(self, obj: str, id_prefix: str, body: openai_wire._SamplingBody) -> None:
        self.head = {
            "id": ids.new_id(id_prefix),
            "object": obj,
            "created": int(time.time()),
            "model": body.model,
            "system_fingerprint": None,
        }
        self.include_usage = bool(body.stream_options and body.stream_options.include_usage)

    def chunk(self, choices: list[dict[str, Any]]) -> ServerSentEvent:
        data = {**self.head, "choices": choices}
        if self.include_usage:
            data["usage"] = None
        return ServerSentEvent(data)

    def tail(self, generations: list[Generation]) -> list[ServerSentEvent]:
        """The final usage chunk (if asked for, with `choices: []`), then `[DONE]`."""
        if not self.include_usage:
            return [DONE]
        usage = usage_of(generations).model_dump()
        return [ServerSentEvent({**self.head, "choices": [], "usage": usage}), DONE]


async def chat_stream(
    body: openai_wire.ChatCompletionRequest, events: EngineEvents
) -> AsyncIterator[ServerSentEvent]:
    """chat.completion.chunk events as OpenAI sends them: per choice a role chunk, content
    chunks, and a chunk with an empty delta and the finish_reason.

    A forced tool's call streams as OpenAI streams one: a first `tool_calls` delta with its
    id and name, then pieces of `arguments`; it ends with `finish_reason: "tool_calls"`.
    """
    stream = _ChunkStream("chat.completion.chunk", "chatcmpl-", body)
    tool = body.forced_tool()
    generations: list[Generation] = []
    started: set[int] = set()

    def choice(delta: Delta, content: dict[str, Any], finish: str | None) -> ServerSentEvent:
        entry = {"index": delta.index, "delta": content, "logprobs": None, "finish_reason": finish}
        return stream.chunk([entry])

    def arguments(piece: str) -> dict[str, Any]:
        return {"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}

    async for _, item in events:
        if isinstance(item, Generation):
            generations.append(item)
            continue
        if item.index not in started:
            started.add(item.index)
            if tool is None:
                yield choice(item, {"role": "assistant", "content": "", "refusal": None}, None)
            else:
                call = {
                    "index": 0,
                    "id": ids.new_id("call_"),
                    "type": "function",
                    "function": {"name": tool.name, "arguments": ""},
                }
                yield choice(
                    item, {"role": "assistant", "content": None, "tool_calls": [call]}, None
                )
        if item.text:
            yield choice(
                item, {"content": item.text} if tool is None else arguments(item.text), None
            )
        if item.finish_reason is not None:
            is_call = tool is not None and item.finish_reason == "stop"
            yield choice(item, {}, "tool_calls" if is_call else item.finish_reason)
    for event in stream.tail(generations):
        yield event


# --- /v1/completions ------------------------------------------------------------------------


def completion_prompts(body: openai_wire.CompletionRequest) -> list[str | tuple[int, ...]]:
    prompt = body.prompt
    if isinstance(prompt, str):
        return [prompt]
    if not prompt:
        raise BodyError("prompt must not be empty", param="prompt")
    if all(isinstance(p, int) for p in prompt):
        return [tuple(prompt)]  # type: ignore[arg-type]
    return [p if isinstance(p, str) else tuple(p) for p in prompt]  # type: ignore[arg-type,misc]


def completion_generations(
    body: openai_wire.CompletionRequest, request_id: str
) -> list[GenerationRequest]:
    sampling = sampling_from(body, body.output_limit)
    requests = []
    for i, prompt in enumerate(completion_prompts(body)):
        rid = request_id if i == 0 else f"{request_id}.{i}"
        if isinstance(prompt, str):
            requests.append(GenerationRequest(rid, body.model, sampling, text=prompt))
        else:
            requests.append(GenerationRequest(rid, body.model, sampling, token_ids=prompt))
    return requests


def completion_response(
    body: openai_wire.CompletionRequest, generations: list[Generation]
) -> dict[str, Any]:
    prompts = completion_prompts(body)
    choices: list[openai_wire.CompletionChoice] = []
    for prompt, generation in zip(prompts, generations, strict=True):
        prefix = prompt if body.echo and isinstance(prompt, str) else ""
        for c in generation.choices:
            choices.append(
                openai_wire.CompletionChoice(
                    index=len(choices), text=prefix + c.text, finish_reason=c.finish_reason
                )
            )
    return openai_wire.TextCompletion(
        id=ids.new_id("cmpl-"),
        created=int(time.time()),
        model=body.model,
        choices=choices,
        usage=usage_of(generations),
    ).model_dump()


async def completion_stream(
    body: openai_wire.CompletionRequest, events: EngineEvents
) -> AsyncIterator[ServerSentEvent]:
    """text_completion chunks: choice index = prompt index x n + choice; with `echo`, each
    choice's first chunk carries its prompt."""
    stream = _ChunkStream("text_completion", "cmpl-", body)
    prompts = completion_prompts(body)
    n = body.n or 1
    generations: list[Generation] = []
    started: set[int] = set()

    def choice(index: int, text: str, finish: str | None) -> ServerSentEvent:
        entry = {"index": index, "text": text, "logprobs": None, "finish_reason": finish}
        return stream.chunk([entry])

    async for prompt_index, item in events:
        if isinstance(item, Generation):
            generations.append(item)
            continue
        index = prompt_index * n + item.index
        prompt = prompts[prompt_index]
        if body.echo and index not in started and isinstance(prompt, str):
            yield choice(index, prompt, None)
        started.add(index)
        if item.text:
            yield choice(index, item.text, None)
        if item.finish_reason is not None:
            yield choice(index, "", item.finish_reason)
    for event in stream.tail(generations):
        yield event
