"""The JSON budget: nesting depth and lone surrogates, found in raw bytes, in linear memory."""

from __future__ import annotations

import io
import json
import random
import tracemalloc
from typing import Any

import pytest
from pydantic import ValidationError

from freight.config import LimitSettings
from freight.protocol import endpoints, json_budget

MB = 1 << 20
TOO_DEEP_1MB = b'{"a":' * 200_000 + b"1" + b"}" * 200_000  # 1.2 MB, 200,000 levels


def reference_depth(document: bytes) -> int:
    """A byte-by-byte walk: the nesting depth, brackets in strings not counted."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in document:
        if in_string:
            if escaped:
                escaped = False
            elif byte == ord("\\"):
                escaped = True
            elif byte == ord('"'):
                in_string = False
        elif byte == ord('"'):
            in_string = True
        elif byte in b"[{":
            depth += 1
            deepest = max(deepest, depth)
        elif byte in b"]}":
            depth -= 1
    return deepest


@pytest.mark.parametrize(
    ("document", "depth"),
    [
        (b"1", 0),
        (b'"[[[{{{"', 0),
        (b"[]", 1),
        (b'{"a": [1, {"b": []}]}', 4),
        (b'["]]]]", [["\\"[[["]]]', 3),
        (b'["\\\\", [[]]]', 3),  # an escaped backslash does not escape the quote after it
        (b"[" * 5000 + b"]" * 5000, 5000),
    ],
)
def test_nesting_depth_counts_arrays_and_objects_not_brackets_in_strings(
    document: bytes, depth: int
) -> None:
    assert json_budget.nesting_depth(document) == depth


@pytest.mark.parametrize("window", [1, 2, 3, 7, 64])
def test_nesting_depth_is_exact_whatever_the_window_cuts(
    window: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Windows cut strings, escapes and runs of backslashes anywhere."""
    monkeypatch.setattr(json_budget, "_WINDOW_BYTES", window)
    rng = random.Random(window)
    pieces = [b"[", b"]", b"{", b"}", b'"', b"\\", b'\\"', b"a", b",", b'"["', b'"\\\\"']
    for _ in range(2000):
        document = b"".join(rng.choice(pieces) for _ in range(rng.randint(0, 60)))
        assert json_budget.nesting_depth(document) == reference_depth(document), document


def test_a_document_at_the_limit_passes_and_one_level_more_is_refused() -> None:
    assert json_budget.problem(b"[" * 64 + b"]" * 64, "The request body", 64) is None
    assert json_budget.problem(b"[" * 65 + b"]" * 65, "The request body", 64) == (
        "The request body nests JSON 65 levels deep; the limit is 64 ([limits] "
        "max_json_depth). Flatten the arrays and objects."
    )


def test_many_shallow_brackets_are_within_the_budget() -> None:
    body = json.dumps({"input": [[1, 2]] * 10_000, "s": "[[[[" * 100}).encode()
    assert json_budget.problem(body, "Line 1", 3) is None
    assert json_budget.problem(body, "Line 1", 2) is not None


def test_a_shallow_document_is_not_scanned(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fast path: no more brackets than the limit cannot nest deeper than it."""

    def scan(document: bytes) -> bytes:
        raise AssertionError("scanned")

    monkeypatch.setattr(json_budget, "_brackets", scan)
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
    assert json_budget.problem(body.encode(), "The request body", 64) is None


@pytest.mark.parametrize(
    ("document", "surrogate"),
    [
        (b'"a\\ud800b"', "\\ud800"),
        (b'"\\uDBFF"', "\\udbff"),  # upper-case hex
        (b'"a\\udc00"', "\\udc00"),  # a lone low surrogate
        (b'"\\ud800\\ud83d\\ude00"', "\\ud800"),  # a high one, then a pair
        (b'"\\ud800\\\\udc00"', "\\ud800"),  # the "low" one is text after a backslash
        (b'"\\\\\\ud800"', "\\ud800"),  # an escaped backslash, then the escape
        (b'{"\\ud800": 1}', "\\ud800"),  # in a key
        (b'"a\xed\xa0\x80b"', "\\ud800"),  # written as its bytes
        (b'"\\ud83d\\ude00"', None),  # a pair: U+1F600
        (b'"\\\\ud800"', None),  # the text `\ud800`, not an escape
        (b'"\\u00e9 \xc3\xa9"', None),
    ],
)
def test_lone_surrogates_are_found_and_pairs_and_text_are_not(
    document: bytes, surrogate: str | None
) -> None:
    assert json_budget.lone_surrogate(document) == surrogate
    message = json_budget.problem(document, "Line 3", 64)
    if surrogate is None:
        assert message is None
    else:
        assert message is not None
        assert message.startswith(f"Line 3 holds a lone UTF-16 surrogate escape ({surrogate})")


def exposed(data: bytes, rng: random.Random) -> bytes:
    """`data` read through SurrogatesExposed from a file that returns short reads."""

    class Dribble(io.BytesIO):
        def read(self, size: int | None = -1) -> bytes:
            return super().read(rng.randint(1, max(1, size or 1)))

    reader = json_budget.SurrogatesExposed(Dribble(data))
    parts = []
    while chunk := reader.read(rng.choice([1, 2, 5, 13, 64])):
        parts.append(chunk)
    return b"".join(parts)


def test_surrogates_exposed_spells_lone_high_escapes_as_bytes_whatever_the_reads() -> None:
    rng = random.Random(15)
    assert exposed(b'"a\\ud800b"', rng) == b'"a\xed\xa0\x80b"'
    assert exposed(b'"\\\\\\udbff"', rng) == b'"\\\\\xed\xaf\xbf"'
    for unchanged in (b'"\\ud83d\\ude00"', b'"\\\\ud800"', b'"\\udc00"', b"x" * 100):
        assert exposed(unchanged, rng) == unchanged
    pieces = [b"\\", b"\\\\", b"u", b"d8", b"dc", b"00", b"\\ud800", b"\\udc00", b"x", b'"']
    for _ in range(3000):
        data = b"".join(rng.choice(pieces) for _ in range(rng.randint(0, 40)))
        assert exposed(data, rng) == exposed(data, random.Random(0)), data


@pytest.mark.parametrize(
    "body",
    [
        TOO_DEEP_1MB,
        json.dumps([{"role": "user", "content": "[x] {y}"}] * (MB // 30)).encode(),
        ("[" + ",".join(["{}"] * (MB // 3)) + "]").encode(),  # brackets only
        b'["' + b"[" * MB + b'"]',  # one long string
    ],
    ids=["200,000 deep", "messages", "empty objects", "long string"],
)
def test_checking_a_body_takes_at_most_three_bytes_of_memory_per_byte(body: bytes) -> None:
    """The bound docs/guides/security.md states: the check's own memory, the body aside."""
    tracemalloc.start()
    try:
        json_budget.problem(body, "The request body", 64)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(body) >= MB
    assert peak < 3 * len(body)


@pytest.mark.parametrize(
    ("url", "body"),
    [
        (
            "/v1/chat/completions",
            {"model": "m", "messages": [{"role": "user", "content": "x" * MB}]},
        ),
        (
            "/v1/chat/completions",
            {"model": "m", "messages": [{"role": "user", "content": "hi"}] * (MB // 30)},
        ),
        (
            "/v1/messages",
            {
                "model": "m",
                "max_tokens": 1,
                "messages": [
                    {"role": "user", "content": [{"type": "text", "text": ""}] * (MB // 25)}
                ],
            },
        ),
        ("/v1/completions", {"model": "m", "prompt": [[1]] * (MB // 4)}),
    ],
    ids=["one long prompt", "short messages", "empty text blocks", "one-token prompts"],
)
def test_an_accepted_body_is_read_in_memory_linear_in_its_size(url: str, body: Any) -> None:
    """The security guide's bound for a real-time body or batch line: the budget check,
    Python's json and the request model together, at most 64 bytes per byte of body (the
    worst shape known, a list of one-token prompts, takes about 56; text about 2)."""
    raw = json.dumps(body, separators=(",", ":")).encode()
    tracemalloc.start()
    try:
        assert json_budget.problem(raw, "The request body", 64) is None
        endpoints.parse_body(endpoints.ENDPOINTS[url], json.loads(raw), in_batch=False)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(raw) >= MB - 64
    assert peak < 64 * len(raw)


def test_max_json_depth_is_64_by_default_and_at_most_the_ceiling() -> None:
    assert LimitSettings().max_json_depth == 64
    assert LimitSettings(max_json_depth=json_budget.MAX_CONFIGURABLE_DEPTH)
    with pytest.raises(ValidationError):
        LimitSettings(max_json_depth=json_budget.MAX_CONFIGURABLE_DEPTH + 1)


@pytest.mark.parametrize(
    ("document", "found"),
    [
        (b'{"temperature": NaN}', "NaN"),
        (b'{"a": [1, Infinity]}', "Infinity"),
        (b'{"a": -Infinity}', "-Infinity"),
        (b'{"text": "NaN and Infinity are words here"}', None),
        (b'{"a": 1.5e308}', None),
        (b'{"a": NaN', "NaN"),  # cut short, too: the first problem found is named
    ],
)
def test_non_finite_numbers_are_found_outside_strings(document: bytes, found: str | None) -> None:
    assert json_budget.non_finite_number(document) == found
    message = json_budget.problem(document, "Line 4", 64)
    if found is None:
        assert message is None
    else:
        assert message == (
            f"Line 4 holds the number {found}, which is not JSON: numbers must be finite. "
            "Send a finite number, or null where a value may be absent."
        )
