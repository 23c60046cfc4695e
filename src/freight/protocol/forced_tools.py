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
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic_core import PydanticCustomError

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


@dataclass(frozen=True)
class ChoiceSpelling:
    """How one API spells `tool_choice`, for the errors both APIs raise alike."""

    any_choice: str  # the choice that forces "the one tool": {'type': 'any'} / 'required'
    any_error: str  # that error's type
    named_choice: str  # the choice that names a tool
    name_param: str  # where the name sits
    how_to_name: str  # a named choice, as the user would write it
    format_param: str  # the API's other way to shape the reply
    how_to_force: str  # the choices that force a tool, as JSON in a request body


ANTHROPIC = ChoiceSpelling(
    "tool_choice {'type': 'any'}",
    "tool_choice_any",
    "tool_choice {'type': 'tool'}",
    "tool_choice.name",
    "{'type': 'tool', 'name': ...}",
    "output_config.format",
    '{"type": "tool", "name": ...}, or {"type": "any"} with one tool',
)
OPENAI = ChoiceSpelling(
    "tool_choice 'required'",
    "tool_choice_required",
    "tool_choice",
    "tool_choice.function.name",
    "{'type': 'function', 'function': {'name': ...}}",
    "response_format",
    '{"type": "function", "function": {"name": ...}}, or "required" with one tool',
)


def pick(
    tools: Sequence[ForcedTool], name: str | None, *, any_tool: bool, spelling: ChoiceSpelling
) -> ForcedTool:
    """The tool a forcing `tool_choice` names (`any_tool`: the only one given)."""
    if any_tool:
        if len(tools) != 1:
            raise PydanticCustomError(
                spelling.any_error,
                f"{spelling.any_choice} needs exactly one tool, not {{num_tools}}; "
                f"name one with {spelling.how_to_name}",
                {"num_tools": len(tools), "param": "tool_choice"},
            )
        return tools[0]
    named = [t for t in tools if t.name == name]
    if name is None or not named:
        raise PydanticCustomError(
            "tool_choice_name",
            f"{spelling.named_choice} must name one of the tools ({{names}})",
            {
                "names": ", ".join(t.name for t in tools) or "none given",
                "param": spelling.name_param,
            },
        )
    return named[0]


def check_choice(
    *, forced: ForcedTool | None, auto: bool, stream: bool, shaped: bool, spelling: ChoiceSpelling
) -> None:
    """Refuse what a request's tool choice cannot be combined with: streaming an `auto`
    choice (the parser reads the finished output), or a forced tool beside a format."""
    if auto and stream:
        raise PydanticCustomError(
            "tool_choice_auto_stream",
            "stream: true cannot be combined with tool_choice 'auto' (the default when tools "
            "are given): the tool-call parser reads the finished output. Remove stream, or "
            f"force the tool: {spelling.how_to_force}",
            {"param": "stream"},
        )
    if forced is not None and shaped:
        raise PydanticCustomError(
            "tool_choice_and_format",
            f"{spelling.format_param} and a forced tool_choice cannot be combined: "
            "each sets the shape of the reply; use one",
            {"param": "tool_choice"},
        )


def chat_template_tools(
    forced: ForcedTool | None, auto: bool, tools: Sequence[ForcedTool]
) -> str | None:
    """The tools the chat template shows the model: the forced one, or all for auto."""
    if forced is not None:
        return template_tools([forced])
    return template_tools(list(tools)) if auto else None
