"""Translation for Anthropic's POST /v1/messages: params -> engine request -> Message.

Registered in the ENDPOINTS table (protocol/endpoints.py) like the OpenAI endpoints,
so Message Batch requests, `freight run` and the real-time route all run through here.

Mapping choices (where Anthropic's model and a local chat model differ):
- `system` (and any `system` turn) becomes the chat template's system message;
  consecutive turns of one role are joined into one turn, as Anthropic does.
- A final `assistant` turn is a prefill: the model continues it, and the reply holds
  only the continuation (`continue_final_message` in the chat template).
- `output_config.format` and a forced tool (`tool_choice` naming one) are decoded against
  their schema; a forced tool's output is answered as one `tool_use` block with
  `stop_reason: "tool_use"` (as plain text if max_tokens cut it short). With `auto` tool
  choice, the calls the engine's tool-call parser found follow the text as `tool_use`
  blocks.
- Usage follows Anthropic's accounting: `input_tokens` excludes prompt tokens read from
  the prefix cache, which are `cache_read_input_tokens`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from freight import ids
from freight.engines.base import Choice, Delta, Generation, GenerationRequest, Message, Sampling
from freight.errors import FreightError
from freight.protocol import anthropic_wire, forced_tools
from freight.protocol.stream import EngineEvents, ServerSentEvent

URL = "/v1/messages"


def _turns(body: anthropic_wire.MessageCreateParams) -> tuple[Message, ...]:
    turns: list[Message] = []
    system = body.system_text()
    if system is not None:
        turns.append(Message("system", system))
    for message in body.messages:
        text = message.text()
        if turns and turns[-1].role == message.role:
            turns[-1] = Message(message.role, f"{turns[-1].content}\n\n{text}")
        else:
            turns.append(Message(message.role, text))
    return tuple(turns)


def to_generations(
    body: anthropic_wire.MessageCreateParams, request_id: str
) -> list[GenerationRequest]:
    sampling = Sampling(
        max_tokens=body.max_tokens,
        temperature=1.0 if body.temperature is None else body.temperature,
        top_p=1.0 if body.top_p is None else body.top_p,
        top_k=body.top_k,
        stop=tuple(body.stop_sequences or ()),
        json_output=body.json_output(),
    )
    return [
        GenerationRequest(
            request_id=request_id,
            model=body.model,
            sampling=sampling,
            messages=_turns(body),
            continue_final_message=body.messages[-1].role == "assistant",
            tools_json=body.template_tools(),
            is_auto_tool_choice=body.is_auto_tool_choice,
        )
    ]


def _tool_use(body: anthropic_wire.MessageCreateParams, choice: Choice) -> dict[str, Any] | None:
    """The forced tool's call, if the request forces one and the output completed it."""
    tool = body.forced_tool()
    if tool is None or choice.finish_reason == "length":
        return None
    return forced_tools.arguments(choice.text)


def _content(
    body: anthropic_wire.MessageCreateParams, choice: Choice
) -> list[anthropic_wire.TextBlock | anthropic_wire.ToolUseBlock]:
    """A forced tool's call, or the text and the calls the parser found (auto), or text."""
    tool = body.forced_tool()
    arguments = _tool_use(body, choice)
    if tool is not None and arguments is not None:
        return [
            anthropic_wire.ToolUseBlock(id=ids.new_id("toolu_"), name=tool.name, input=arguments)
        ]
    blocks: list[anthropic_wire.TextBlock | anthropic_wire.ToolUseBlock] = []
    if choice.text.strip() or not choice.tool_calls:
        blocks.append(anthropic_wire.TextBlock(text=choice.text))
    for call in choice.tool_calls:
        parsed = forced_tools.arguments(call.arguments)
        blocks.append(
            anthropic_wire.ToolUseBlock(
                id=ids.new_id("toolu_"), name=call.name, input=parsed if parsed is not None else {}
            )
        )
    return blocks


def stop_reason(choice: Choice, *, is_tool_use: bool = False) -> anthropic_wire.StopReason:
    if choice.finish_reason == "length":
        return "max_tokens"
    if is_tool_use:
        return "tool_use"
    return "stop_sequence" if choice.stop_sequence is not None else "end_turn"


def usage(num_prompt: int, num_cached: int, num_output: int) -> anthropic_wire.Usage:
    return anthropic_wire.Usage(
        input_tokens=num_prompt - num_cached,
        output_tokens=num_output,
        cache_creation_input_tokens=0,
        cache_read_input_tokens=num_cached,
    )


def to_response(
    body: anthropic_wire.MessageCreateParams, generations: list[Generation]
) -> dict[str, Any]:
    (generation,) = generations
    (choice,) = generation.choices
    content = _content(body, choice)
    is_tool_use = any(isinstance(block, anthropic_wire.ToolUseBlock) for block in content)
    return anthropic_wire.Message(
        id=ids.new_id("msg_"),
        model=body.model,
        content=content,
        stop_reason=stop_reason(choice, is_tool_use=is_tool_use),
        stop_sequence=choice.stop_sequence,
        usage=usage(
            generation.num_prompt_tokens, generation.num_cached_tokens, generation.num_output_tokens
        ),
    ).model_dump()


def error_body(error: FreightError, status_code: int) -> dict[str, Any]:
    """How a rejected request is stored for its errored result line, in Anthropic's shape.

    Its type is the one Anthropic gives `status_code`: the error's own `anthropic_type`,
    unless the line reports an upstream's status (`FreightError.line_status`).
    """
    return anthropic_wire.error_body(status_code, error.message)


def _event(model: Any) -> ServerSentEvent:
    data = model.model_dump()
    return ServerSentEvent(data, event=data["type"])


async def to_stream(
    body: anthropic_wire.MessageCreateParams, events: EngineEvents
) -> AsyncIterator[ServerSentEvent]:
    """Anthropic's event sequence: message_start, content_block_start, content_block_delta
    (one per piece of text), content_block_stop, message_delta (stop reason and the final,
    cumulative usage), message_stop.

    `message_start` goes out with the first engine event, which carries the prompt's token
    counts, so its usage already holds the input tokens.
    """
    message_id = ids.new_id("msg_")
    tool = body.forced_tool()
    generation: Generation | None = None
    is_started = False
    async for _, item in events:
        if isinstance(item, Generation):
            generation = item
            continue
        if not is_started:
            yield _start(body, message_id, item)
            yield _block_start(tool)
            is_started = True
        if item.text:
            delta: anthropic_wire.TextDelta | anthropic_wire.InputJsonDelta = (
                anthropic_wire.TextDelta(text=item.text)
                if tool is None
                else anthropic_wire.InputJsonDelta(partial_json=item.text)
            )
            yield _event(anthropic_wire.ContentBlockDeltaEvent(index=0, delta=delta))
    if generation is None:
        raise RuntimeError("the engine stream ended without its final Generation")
    if not is_started:
        yield _start(body, message_id, Delta(0, "", None, generation.num_prompt_tokens))
        yield _block_start(tool)
    (choice,) = generation.choices
    final = usage(
        generation.num_prompt_tokens, generation.num_cached_tokens, generation.num_output_tokens
    )
    yield _event(anthropic_wire.ContentBlockStopEvent(index=0))
    yield _event(
        anthropic_wire.MessageDeltaEvent(
            delta=anthropic_wire.MessageDelta(
                stop_reason=stop_reason(choice, is_tool_use=_tool_use(body, choice) is not None),
                stop_sequence=choice.stop_sequence,
            ),
            usage=anthropic_wire.MessageDeltaUsage(
                input_tokens=final.input_tokens,
                output_tokens=final.output_tokens,
                cache_read_input_tokens=final.cache_read_input_tokens or 0,
            ),
        )
    )
    yield _event(anthropic_wire.MessageStopEvent())


def _block_start(tool: forced_tools.ForcedTool | None) -> ServerSentEvent:
    """The one content block: text, or (a forced tool) a tool_use whose input streams as
    `input_json_delta` pieces of its JSON, as Anthropic streams tool input."""
    block: anthropic_wire.TextBlock | anthropic_wire.ToolUseBlock = (
        anthropic_wire.TextBlock(text="")
        if tool is None
        else anthropic_wire.ToolUseBlock(id=ids.new_id("toolu_"), name=tool.name, input={})
    )
    return _event(anthropic_wire.ContentBlockStartEvent(index=0, content_block=block))


def _start(
    body: anthropic_wire.MessageCreateParams, message_id: str, first: Delta
) -> ServerSentEvent:
    num_prompt = first.num_prompt_tokens or 0
    num_cached = first.num_cached_tokens or 0
    message = anthropic_wire.Message(
        id=message_id,
        model=body.model,
        content=[],
        stop_reason=None,
        usage=usage(num_prompt, num_cached, 0),
    )
    return _event(anthropic_wire.MessageStartEvent(message=message))
