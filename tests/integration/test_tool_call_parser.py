"""Auto tool choice's parsing step with vLLM's own parser and the default model's
tokenizer: a model's `<tool_call>` output becomes calls and the rest of its text."""

from __future__ import annotations

import json

import pytest
from transformers import AutoTokenizer

from freight.engines import tool_calls
from freight.errors import ConfigError
from freight.protocol import forced_tools
from tests.conftest import CHAT_MODEL, MODEL_CACHE

pytestmark = pytest.mark.slow

SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
TOOLS = forced_tools.template_tools([forced_tools.ForcedTool("weather", SCHEMA, "The weather.")])


@pytest.fixture(scope="module")
def tokenizer() -> object:
    return AutoTokenizer.from_pretrained(str(MODEL_CACHE / CHAT_MODEL))


def test_hermes_output_becomes_the_calls_and_the_text_around_them(tokenizer: object) -> None:
    parser = tool_calls.load_parser("hermes")
    output = 'Checking.<tool_call>{"name": "weather", "arguments": {"city": "Paris"}}</tool_call>'
    text, calls = tool_calls.extract(parser, tokenizer, output, TOOLS)
    assert text.strip() == "Checking."
    (call,) = calls
    assert call.name == "weather" and json.loads(call.arguments) == {"city": "Paris"}


def test_output_without_a_call_is_left_as_text(tokenizer: object) -> None:
    parser = tool_calls.load_parser("hermes")
    assert tool_calls.extract(parser, tokenizer, "It is sunny.", TOOLS) == ("It is sunny.", [])


def test_an_unknown_parser_name_lists_vllms_parsers() -> None:
    with pytest.raises(ConfigError) as excinfo:
        tool_calls.load_parser("hermez")
    assert "hermes" in str(excinfo.value) and "'hermez'" in str(excinfo.value)
