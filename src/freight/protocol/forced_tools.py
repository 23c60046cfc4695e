"""Forced tool use as structured output: the engine decodes the named tool's input schema.

Much client code gets answers in a fixed shape by forcing a tool call: Anthropic's
`tool_choice` `{"type": "tool", "name": ...}` (or `{"type": "any"}` with one tool), OpenAI's
`tool_choice: "required"` (one tool) or a named function. Freight runs such a request as a
structured output (protocol/json_output.py) whose schema is the tool's input schema, and
answers with the API's tool call (`tool_use` block, `tool_calls` entry) holding the
generated arguments. The tool definitions also go to the model's chat template, for the
templates that render tools.

`auto` tool choice (the default of both APIs when tools are given) lets the model choose:
all tools go to the chat template, and the engine's tool-call parser for the model's own
output format (`[[models]] tool_call_parser`, engines/tool_calls.py) finds the calls; an
engine without one refuses the request, naming the setting. It does not stream: a parser
reads the finished output.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from freight.engines.base import JsonOutput

EMPTY_OBJECT_SCHEMA: dict[str, Any] = {"type": "object", "properties": {}}


@dataclass(frozen=True)
class ForcedTool:
    """The tool a request forces: its name, description and input schema."""

    name: str
    schema: dict[str, Any]
    description: str | None = None

    def json_output(self) -> JsonOutput:
        # Key order kept: the engine emits properties in the order the schema lists them.
        return JsonOutput(json.dumps(self.schema, separators=(",", ":")))


def template_tools(tools: list[ForcedTool]) -> str:
    """The tools as chat templates take them (OpenAI's function shape), as JSON text."""
    return json.dumps(
        [
            {
                "type": "function",
                "function": {
                    "name": t.name,
                    **({"description": t.description} if t.description else {}),
                    "parameters": t.schema,
                },
            }
            for t in tools
        ]
    )


def arguments(text: str) -> dict[str, Any] | None:
    """The generated arguments as an object; None where the output stopped short of one
    (cut by max_tokens), which the caller reports as plain text."""
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


AUTO_STREAM_REFUSED = (
    "stream: true cannot be combined with tool_choice 'auto' (the default when tools are "
    "given): the tool-call parser reads the finished output. Remove stream, or force the "
    "tool: "
)
