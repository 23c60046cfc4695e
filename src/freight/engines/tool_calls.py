"""Auto tool choice on vLLM: the model's own tool-call format, parsed by one of vLLM's
tool-call parsers (`[[models]] tool_call_parser`, e.g. `hermes` for `<tool_call>` JSON).

The parser reads a finished output and splits it into the calls it finds and the rest of
the text; vLLM's parsers take vLLM's own OpenAI request object, built here from the tool
definitions the protocol layer passed (`GenerationRequest.tools_json`).
"""

from __future__ import annotations

import json
from typing import Any

from freight.engines.base import ToolCall
from freight.errors import ConfigError


def load_parser(name: str) -> Any:
    """The named parser class of vLLM's registry, or a ConfigError listing the names."""
    from vllm.tool_parsers import ToolParserManager

    try:
        return ToolParserManager.get_tool_parser(name)
    except KeyError:
        known = ", ".join(sorted(ToolParserManager.list_registered()))
        raise ConfigError(f"tool_call_parser '{name}' is not one of vLLM's: {known}") from None


def extract(
    parser_class: Any, tokenizer: Any, text: str, tools_json: str
) -> tuple[str, list[ToolCall]]:
    """The output's text without its tool calls, and the calls (none: `text` unchanged)."""
    from vllm.entrypoints.openai.chat_completion.protocol import ChatCompletionRequest

    tools = json.loads(tools_json)
    request = ChatCompletionRequest(
        model="-", messages=[{"role": "user", "content": ""}], tools=tools, tool_choice="auto"
    )
    parser = parser_class(tokenizer, request.tools)
    found = parser.extract_tool_calls(text, request)
    if not found.tools_called:
        return text, []
    calls = [ToolCall(c.function.name, c.function.arguments) for c in found.tool_calls]
    return found.content or "", calls
