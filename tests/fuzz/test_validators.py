"""Hypothesis on the input validators and wire models: any input gets a validation result.

Whatever bytes a client sends (a JSONL batch file, a Message Batch create body, a
request body), validation ends in accepted lines or problems with line numbers, a
model or a ValidationError, never another exception. A line that is accepted can be
stored: its body and custom_id encode to UTF-8.
"""

from __future__ import annotations

import contextlib
import io
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from freight.config import LimitSettings
from freight.errors import InvalidRequest
from freight.protocol import anthropic_wire, endpoints, message_batch_input, openai_wire
from freight.protocol.batch_input import AcceptedLine, FileValidator, iter_lines

FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
URL = "/v1/chat/completions"
LIMITS = LimitSettings(max_line_bytes=4096, max_requests_per_batch=50)

# Strings include lone surrogates, which JSON can spell (\\ud800) but UTF-8 cannot hold.
strings = st.text(st.characters(categories=["L", "N", "P", "Zs", "Cc"]), max_size=20) | st.text(
    st.characters(categories=["Cs"]), min_size=1, max_size=3
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | strings,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
bodies = st.fixed_dictionaries(
    {"model": st.sampled_from(["m", "nope"]) | json_values},
    optional={
        "messages": st.lists(
            st.fixed_dictionaries(
                {
                    "role": st.sampled_from(["user", "system", "assistant", "x"]),
                    "content": json_values,
                }
            ),
            max_size=3,
        )
        | json_values,
        "max_tokens": st.integers(-5, 10**9) | json_values,
        "temperature": st.floats() | json_values,
        "stream": st.booleans(),
    },
)
envelopes = st.fixed_dictionaries(
    {},
    optional={
        "custom_id": st.text(max_size=12) | json_values,
        "method": st.sampled_from(["POST", "GET"]) | json_values,
        "url": st.sampled_from([URL, "/v1/completions"]) | json_values,
        "body": bodies | json_values,
        "extra": json_values,
    },
)
valid_envelopes = st.builds(
    lambda custom_id, content: {
        "custom_id": custom_id,
        "method": "POST",
        "url": URL,
        "body": {"model": "m", "messages": [{"role": "user", "content": content}]},
    },
    strings.filter(bool),
    strings,
)
line_bytes = st.one_of(
    valid_envelopes.map(lambda obj: json.dumps(obj).encode()),
    envelopes.map(lambda obj: json.dumps(obj).encode()),
    envelopes.map(lambda obj: json.dumps(obj, ensure_ascii=False).encode("utf-8", "surrogatepass")),
    st.binary(max_size=200),
    st.text(max_size=50).map(lambda text: text.encode("utf-8", "surrogatepass")),
)
files = st.tuples(
    st.lists(
        st.tuples(line_bytes, st.sampled_from([b"\n", b"\r\n", b"\n\n", b"\r\n  \r\n"])),
        max_size=8,
    ),
    st.booleans(),
    st.booleans(),
).map(
    lambda parts: (
        (b"\xef\xbb\xbf" if parts[1] else b"")
        + b"".join(line + ending for line, ending in parts[0])
        + (b'{"unterminated' if parts[2] else b"")
    )
)


def validate_file(raw: bytes) -> tuple[FileValidator, list[AcceptedLine]]:
    validator = FileValidator(URL, LIMITS, has_model=lambda model: model == "m")
    accepted = []
    for number, chunk in iter_lines(io.BytesIO(raw), LIMITS.max_line_bytes):
        result = validator.feed(number, chunk)
        if validator.is_truncated:
            break
        if result is not None:
            accepted.append(result)
    validator.finish()
    return validator, accepted


@FUZZ
@given(raw=files | st.binary(max_size=2000))
def test_any_batch_file_gets_a_validation_result(raw: bytes) -> None:
    validator, accepted = validate_file(raw)
    for problem in validator.problems:
        assert problem.code and problem.message
        assert problem.line is None or problem.line >= 1
    for line in accepted:
        (line.custom_id + line.body_json).encode("utf-8")  # storable as it is
        assert json.loads(line.body_json) == line.body or line.body != line.body  # NaN
    if not validator.is_failed:
        ids = [line.custom_id for line in accepted]
        assert len(ids) == len(set(ids))


REQUEST_MODELS: list[type[BaseModel]] = [
    *{type(e).__name__ + e.url: e.request_model for e in endpoints.ENDPOINTS.values()}.values(),
    openai_wire.CreateBatch,
    openai_wire.BatchRequestInput,
    openai_wire.BatchRequestOutput,
    anthropic_wire.MessageCreateParams,
]


@pytest.mark.parametrize("model", REQUEST_MODELS, ids=lambda m: m.__name__)
@FUZZ
@given(raw=st.binary(max_size=300) | json_values.map(lambda v: json.dumps(v).encode()))
def test_wire_models_validate_any_bytes(model: type[BaseModel], raw: bytes) -> None:
    with contextlib.suppress(ValidationError):  # a model or a ValidationError, nothing else
        model.model_validate_json(raw)


@pytest.mark.parametrize("url", list(endpoints.ENDPOINTS))
@FUZZ
@given(body=bodies | json_values)
def test_request_bodies_parse_or_give_a_body_error(url: str, body: Any) -> None:
    endpoint = endpoints.ENDPOINTS[url]
    try:
        endpoints.parse_body(endpoint, body, in_batch=True)
    except endpoints.BodyError as exc:
        assert exc.message
        endpoint.error_body(exc, 400)  # renders in the endpoint's shape


message_batch_bodies = st.one_of(
    st.binary(max_size=300),
    st.fixed_dictionaries(
        {},
        optional={
            "requests": st.lists(
                st.fixed_dictionaries(
                    {},
                    optional={
                        "custom_id": st.from_regex(r"^[a-zA-Z0-9_-]{1,8}$", fullmatch=True)
                        | json_values,
                        "params": bodies | json_values,
                    },
                ),
                max_size=4,
            )
            | json_values,
            "other": json_values,
        },
    ).map(lambda obj: json.dumps(obj).encode()),
)


@FUZZ
@given(raw=message_batch_bodies)
def test_any_message_batch_body_is_accepted_or_refused_with_a_400(raw: bytes) -> None:
    limits = LimitSettings(max_message_batch_requests=3)
    try:
        num = message_batch_input.check_envelope(io.BytesIO(raw), limits)
    except InvalidRequest as exc:
        assert exc.message and exc.status_code == 400
        return
    accepted = list(
        message_batch_input.iter_requests(io.BytesIO(raw), has_model=lambda model: model == "m")
    )
    assert len(accepted) == num
    for line in accepted:
        (line.custom_id + line.body_json).encode("utf-8")
