"""The README's quickstart shows a real batch line and the line `freight run` wrote for it:
both must stay valid for the wire models, and `make demo` / `make test` stay on top."""

from __future__ import annotations

import json
import re

from freight.protocol import endpoints, openai_wire
from tests.conftest import REPO

README = (REPO / "README.md").read_text(encoding="utf-8")
QUICKSTART = README.split("## Quickstart", 1)[1].split("\n## ", 1)[0]


def test_make_demo_and_make_test_are_the_first_commands() -> None:
    first_block = README.split("```", 2)[1]
    commands = [line.split("#")[0].strip() for line in first_block.strip().splitlines()]
    assert commands == ["make demo", "make test"]


def test_the_quickstart_input_line_is_a_valid_batch_request() -> None:
    (line,) = re.findall(r"<<'EOF'\n(.*?)\nEOF", QUICKSTART, re.S)
    request = openai_wire.BatchRequestInput.model_validate_json(line)
    body = endpoints.parse_body(endpoints.get(request.url), request.body, in_batch=True)
    assert isinstance(body, openai_wire.ChatCompletionRequest)


def test_the_quickstart_output_line_round_trips_through_the_wire_models() -> None:
    (folded,) = re.findall(r"```json\n(.*?)```", QUICKSTART, re.S)
    output = openai_wire.BatchRequestOutput.model_validate(json.loads(folded))
    assert output.custom_id == "q1" and output.error is None and output.response is not None
    completion = openai_wire.ChatCompletion.model_validate(output.response.body)
    assert completion.choices[0].message.content
