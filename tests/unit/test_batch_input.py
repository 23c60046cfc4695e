"""The batch file validator: each problem code, with the right 1-based line number."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from freight.config import LimitSettings
from freight.protocol.batch_input import FileValidator, TooLong, iter_lines

URL = "/v1/chat/completions"


def line(custom_id: str = "a", **overrides: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "custom_id": custom_id,
        "method": "POST",
        "url": URL,
        "body": {"model": "m", "messages": [{"role": "user", "content": "hi"}]},
    }
    obj.update(overrides)
    return obj


def validate(lines: list[Any], **limits: Any) -> tuple[FileValidator, list[Any]]:
    raw = b"".join((x if isinstance(x, bytes) else json.dumps(x).encode()) + b"\n" for x in lines)
    settings = LimitSettings(**limits)
    validator = FileValidator(URL, settings, has_model=lambda m: m in ("m", "other"))
    accepted = []
    for number, chunk in iter_lines(io.BytesIO(raw), settings.max_line_bytes):
        result = validator.feed(number, chunk)
        if validator.is_truncated:
            break
        if result is not None:
            accepted.append(result)
    validator.finish()
    return validator, accepted


def codes(validator: FileValidator) -> list[tuple[str | None, int | None]]:
    return [(p.code, p.line) for p in validator.problems]


def test_valid_file_is_accepted_with_line_numbers() -> None:
    validator, accepted = validate([line("a"), line("b")])
    assert not validator.is_failed
    assert [(a.line, a.custom_id, a.model) for a in accepted] == [(1, "a", "m"), (2, "b", "m")]
    assert validator.model == "m"


def test_invalid_json_line_reports_its_line() -> None:
    validator, _ = validate([line("a"), b"{not json", line("c")])
    assert codes(validator) == [("invalid_json_line", 2)]
    assert validator.problems[0].message == "This line is not parseable as valid JSON."


def test_invalid_utf8_is_invalid_json_line() -> None:
    validator, _ = validate([line("a"), b'{"custom_id": "\xff\xfe"}'])
    assert codes(validator) == [("invalid_json_line", 2)]


def test_non_object_line_is_invalid_json_line() -> None:
    validator, _ = validate([b"[1, 2]"])
    assert codes(validator) == [("invalid_json_line", 1)]


def test_duplicate_custom_id_fails_validation_with_line_number() -> None:
    validator, _ = validate([line("a"), line("b"), line("a")])
    assert codes(validator) == [("duplicate_custom_id", 3)]
    assert "'a'" in (validator.problems[0].message or "")


def test_url_mismatch_names_the_endpoint() -> None:
    validator, _ = validate([line("a"), line("b", url="/v1/completions")])
    assert codes(validator) == [("url_mismatch", 2)]
    assert URL in (validator.problems[0].message or "")


def test_model_mismatch_reports_the_second_model() -> None:
    other = line("b")
    other["body"]["model"] = "other"
    validator, _ = validate([line("a"), other])
    assert codes(validator) == [("model_mismatch", 2)]


def test_unknown_model_has_its_own_code() -> None:
    bad = line("a")
    bad["body"]["model"] = "gpt-nope"
    validator, _ = validate([bad])
    assert codes(validator) == [("model_not_found", 1)]


def test_empty_file_and_blank_lines_only() -> None:
    validator, _ = validate([])
    assert codes(validator) == [("empty_file", None)]
    validator, _ = validate([b"", b"   "])
    assert codes(validator) == [("empty_file", None)]


def test_too_many_tasks_stops_at_the_first_line_over() -> None:
    validator, accepted = validate([line(str(i)) for i in range(5)], max_requests_per_batch=3)
    assert codes(validator) == [("too_many_tasks", 4)]
    assert len(accepted) == 3


@pytest.mark.parametrize("field", ["custom_id", "method", "url", "body"])
def test_missing_top_level_field(field: str) -> None:
    obj = line("a")
    del obj[field]
    validator, _ = validate([obj])
    assert codes(validator) == [("missing_required_field", 1)]
    assert validator.problems[0].param == field


def test_extra_top_level_field() -> None:
    validator, _ = validate([line("a", extra=1)])
    assert codes(validator) == [("unexpected_field", 1)]
    assert validator.problems[0].param == "extra"


def test_method_other_than_post() -> None:
    validator, _ = validate([line("a", method="GET")])
    assert codes(validator) == [("invalid_method", 1)]


def test_custom_id_length_limit_at_and_above() -> None:
    validator, _ = validate([line("x" * 8)], max_custom_id_chars=8)
    assert not validator.is_failed
    validator, _ = validate([line("x" * 9)], max_custom_id_chars=8)
    assert codes(validator) == [("invalid_custom_id", 1)]
    assert "limit is 8" in (validator.problems[0].message or "")


def test_infinity_is_not_json_so_its_line_fails_validation() -> None:
    bad = line("bad")
    bad["body"]["max_tokens"] = 1e999  # json.dumps writes Infinity
    validator, _ = validate([line("ok"), bad])
    assert codes(validator) == [("invalid_json_line", 2)]
    assert validator.problems[0].message.startswith(
        "Line 2 holds the number Infinity, which is not JSON: numbers must be finite."
    )


@pytest.mark.parametrize(
    ("body_change", "param", "fragment"),
    [
        ({"max_tokens": 0}, "max_tokens", "greater than or equal to 1"),
        ({"frobnicate": True}, "frobnicate", "Unrecognized request argument supplied"),
        ({"stream": True}, "stream", "stream is not supported"),
        ({"temperature": 7}, "temperature", "less than or equal to 2"),
    ],
)
def test_invalid_body_fails_only_its_line(
    body_change: dict[str, Any], param: str, fragment: str
) -> None:
    bad = line("bad")
    bad["body"].update(body_change)
    validator, accepted = validate([line("ok"), bad])
    assert not validator.is_failed
    ok, rejected = accepted
    assert ok.error_body is None
    assert rejected.error_body is not None
    error = rejected.error_body["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert fragment in error["message"]


def test_missing_model_is_a_line_error_not_a_file_error() -> None:
    bad = line("bad")
    del bad["body"]["model"]
    validator, accepted = validate([line("ok"), bad])
    assert not validator.is_failed
    assert accepted[1].error_body is not None
    assert accepted[1].error_body["error"]["param"] == "model"


def test_line_endings_bom_blank_lines_and_no_final_newline_are_accepted() -> None:
    raw = (
        b"\xef\xbb\xbf"
        + json.dumps(line("a")).encode()
        + b"\r\n\r\n"
        + json.dumps(line("b")).encode()
        + b"\n\n   \n"
        + json.dumps(line("c")).encode()
    )
    numbered = list(iter_lines(io.BytesIO(raw), 1 << 20))
    assert [n for n, _ in numbered] == [1, 3, 6]
    assert all(json.loads(chunk)["method"] == "POST" for _, chunk in numbered)  # type: ignore[arg-type]


def test_line_longer_than_limit_is_skipped_not_buffered() -> None:
    long_line = json.dumps(line("a", body={"model": "m", "messages": [], "pad": "x" * 500}))
    raw = long_line.encode() + b"\n" + json.dumps(line("b")).encode() + b"\n"
    numbered = list(iter_lines(io.BytesIO(raw), 200))
    assert isinstance(numbered[0][1], TooLong)
    assert numbered[0][1].num_bytes >= len(long_line)
    assert numbered[1][0] == 2
    validator, _ = validate([long_line.encode(), line("b")], max_line_bytes=200)
    assert codes(validator) == [("line_too_long", 1)]


def nested_line(depth: int) -> bytes:
    """A line nesting `depth` levels: its object, its body, arrays in the body's `x`."""
    body = b'{"model": "m", "x": ' + b"[" * (depth - 2) + b"]" * (depth - 2) + b"}"
    head = b'{"custom_id": "deep", "method": "POST", "url": "/v1/chat/completions", "body": '
    return head + body + b"}"


def test_a_deep_line_is_refused_as_too_deep_not_as_unparseable() -> None:
    """5,000 levels is valid JSON: it used to be "not parseable as valid JSON"."""
    validator, _ = validate([line("a"), nested_line(5000)])
    assert codes(validator) == [("invalid_json_line", 2)]
    assert validator.problems[0].message == (
        "Line 2 nests JSON 5000 levels deep; the limit is 64 ([limits] max_json_depth). "
        "Flatten the arrays and objects."
    )


def test_a_line_at_the_depth_limit_is_read_and_one_level_more_is_refused() -> None:
    validator, accepted = validate([nested_line(10)], max_json_depth=10)
    assert not validator.is_failed and accepted[0].error_body is not None  # `x`: unknown
    validator, _ = validate([nested_line(11)], max_json_depth=10)
    assert codes(validator) == [("invalid_json_line", 1)]


def test_the_deepest_configurable_line_is_read_without_recursion_errors() -> None:
    validator, accepted = validate([nested_line(512)], max_json_depth=512)
    assert not validator.is_failed
    assert json.loads(accepted[0].body_json)["x"]


def test_a_lone_surrogate_is_refused_naming_the_line() -> None:
    lone = json.dumps(line("b", body={"model": "m", "messages": "\ud800"})).encode()
    validator, _ = validate([line("a"), lone])
    assert codes(validator) == [("invalid_json_line", 2)]
    assert (validator.problems[0].message or "").startswith(
        "Line 2 holds a lone UTF-16 surrogate escape (\\ud800), which is not valid Unicode."
    )


def test_a_surrogate_pair_is_kept() -> None:
    content = "\U0001f600"
    paired = line("a")
    paired["body"]["messages"][0]["content"] = content
    validator, (accepted,) = validate([paired])  # json.dumps writes it as \ud83d\ude00
    assert not validator.is_failed
    assert content in accepted.body_json


def test_an_integer_too_long_to_read_is_refused_naming_the_line() -> None:
    huge = b'{"custom_id": "a", "method": "POST", "url": "%s", "body": {"seed": 1%s}}' % (
        URL.encode(),
        b"0" * 100_000,
    )
    validator, _ = validate([huge])
    assert codes(validator) == [("invalid_json_line", 1)]
    assert validator.problems[0].message == (
        "Line 1 holds an integer of more than 4300 digits, larger than any parameter accepts."
    )


@pytest.mark.parametrize(
    ("body_change", "param", "fragment"),
    [
        ({"seed": 2**64}, "seed", "less than or equal to 9223372036854775807"),
        ({"max_tokens": "5"}, "max_tokens", "Input should be a valid integer, not a string"),
        ({"n": True}, "n", "Input should be a valid integer, not a boolean"),
        ({"stop": ["x"] * 100}, "stop", "at most 4 stop sequences are allowed, not 100"),
        ({"messages": [{"role": "user", "content": None}]}, "messages.0.content", "not null"),
    ],
)
def test_out_of_range_and_mistyped_values_fail_only_their_line(
    body_change: dict[str, Any], param: str, fragment: str
) -> None:
    bad = line("bad")
    bad["body"].update(body_change)
    validator, (_, rejected) = validate([line("ok"), bad])
    assert not validator.is_failed and rejected.error_body is not None
    error = rejected.error_body["error"]
    assert error["param"] == param
    assert fragment in error["message"]
