"""Anthropic translation with plain data: params -> engine request, Generation -> Message,
engine events -> stream events, stored batch -> MessageBatch view, create-body checks."""

from __future__ import annotations

import asyncio
import io
import json
import tracemalloc
from collections.abc import AsyncIterator
from typing import Any

import pytest
from anthropic import types as sdk
from anthropic.types.messages import MessageBatch as SDKMessageBatch

from freight.config import LimitSettings
from freight.engines.base import Choice, Delta, Generation, Message
from freight.errors import InvalidRequest
from freight.protocol import endpoints, message_batch_input, views
from freight.protocol import stream as streams
from freight.store.batches import BatchRecord
from tests.sdk import assert_round_trip

ENDPOINT = endpoints.ENDPOINTS["/v1/messages"]
MiB = 1 << 20


def parse(**params: Any) -> Any:
    body = {"model": "m", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}
    return endpoints.parse_body(ENDPOINT, {**body, **params}, in_batch=False)


def body_error(**params: Any) -> endpoints.BodyError:
    with pytest.raises(endpoints.BodyError) as excinfo:
        parse(**params)
    return excinfo.value


def test_params_become_one_chat_request() -> None:
    body = parse(
        system=[{"type": "text", "text": "Be "}, {"type": "text", "text": "brief."}],
        messages=[
            {"role": "user", "content": "one"},
            {"role": "user", "content": [{"type": "text", "text": "two"}]},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": "three"},
        ],
        temperature=0,
        top_k=5,
        stop_sequences=["END"],
    )
    (request,) = ENDPOINT.to_generations(body, "r1")
    assert request.messages == (
        Message("system", "Be brief."),
        Message("user", "one\n\ntwo"),  # consecutive turns of one role are joined
        Message("assistant", "ok"),
        Message("user", "three"),
    )
    assert not request.continue_final_message
    s = request.sampling
    assert (s.max_tokens, s.temperature, s.top_k, s.stop) == (8, 0.0, 5, ("END",))


def test_a_final_assistant_turn_is_a_prefill() -> None:
    body = parse(
        messages=[
            {"role": "user", "content": "Capital of France?"},
            {"role": "assistant", "content": "It is"},
        ]
    )
    (request,) = ENDPOINT.to_generations(body, "r1")
    assert request.continue_final_message and request.messages[-1] == Message("assistant", "It is")
    error = body_error(
        messages=[{"role": "user", "content": "x"}, {"role": "assistant", "content": "It is "}]
    )
    assert "whitespace" in error.message and error.param == "messages"


@pytest.mark.parametrize(
    ("params", "param", "fragment"),
    [
        ({"max_tokens": 0}, "max_tokens", "greater than or equal to 1"),
        ({"temperature": 1.5}, "temperature", "less than or equal to 1"),
        ({"container": "c"}, "container", "Unrecognized request argument"),
        ({"thinking": {"type": "enabled"}}, "thinking", "Unrecognized request argument"),
        ({"messages": []}, "messages", "at least 1"),
        (
            {"messages": [{"role": "user", "content": [{"type": "image", "source": {}}]}]},
            "messages.0.content",
            "'image' are not supported",
        ),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages.0.role", "'user'"),
        # Strict types, as Anthropic's own validation: no "5" for 5, no true for 1.
        ({"max_tokens": "5"}, "max_tokens", "valid integer, not a string"),
        ({"max_tokens": 5.0}, "max_tokens", "valid integer, not a decimal number"),
        ({"max_tokens": True}, "max_tokens", "valid integer, not a boolean"),
        ({"top_k": "3"}, "top_k", "valid integer, not a string"),
        ({"temperature": "0.5"}, "temperature", "valid number, not a string"),
        ({"stream": "true"}, "stream", "valid boolean, not a string"),
        (
            {"messages": [{"role": "user", "content": None}]},
            "messages.0.content",
            "a string or a list of text blocks, not null",
        ),
        ({"max_tokens": 1e999}, "max_tokens", "valid integer, not a decimal number"),
        ({"temperature": 1e999}, "temperature", "less than or equal to 1"),
        ({"stop_sequences": [1] * 100_000}, "stop_sequences.0", "valid string"),
        ({f"k{i}": 1 for i in range(100_000)}, "k0", "Unrecognized request argument"),
    ],
)
def test_invalid_params_name_the_field(params: dict[str, Any], param: str, fragment: str) -> None:
    error = body_error(**params)
    assert error.param == param and fragment in error.message
    stored = ENDPOINT.error_body(error, 400)
    assert stored == {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": error.message},
    }


def test_integers_are_valid_numbers() -> None:
    assert parse(temperature=1, top_p=1).temperature == 1.0


def test_stream_is_refused_in_a_batch() -> None:
    with pytest.raises(endpoints.BodyError) as excinfo:
        endpoints.parse_body(
            ENDPOINT,
            {
                "model": "m",
                "max_tokens": 1,
                "messages": [{"role": "user", "content": "x"}],
                "stream": True,
            },
            in_batch=True,
        )
    assert excinfo.value.param == "stream"


def generation(text: str, finish: str = "stop", stop: str | None = None) -> Generation:
    return Generation(10, 4, [Choice(text, 3, finish, stop)])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("choice", "reason", "sequence"),
    [
        (generation("a b c"), "end_turn", None),
        (generation("a b c", "length"), "max_tokens", None),
        (generation("a b c", "stop", "END"), "stop_sequence", "END"),
    ],
)
def test_message_response(choice: Generation, reason: str, sequence: str | None) -> None:
    message = ENDPOINT.to_response(parse(), [choice])
    assert_round_trip(sdk.Message, message)
    assert (message["stop_reason"], message["stop_sequence"]) == (reason, sequence)
    assert message["content"] == [{"type": "text", "text": "a b c"}]
    # Anthropic's accounting: cache reads are apart from input_tokens
    assert message["usage"] == {
        "input_tokens": 6,
        "output_tokens": 3,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 4,
    }


async def _collect(events: list[Delta | Generation]) -> list[streams.ServerSentEvent]:
    async def engine() -> AsyncIterator[Delta | Generation]:
        for item in events:
            yield item

    assert ENDPOINT.to_stream is not None
    return [e async for e in ENDPOINT.to_stream(parse(), streams.merge([engine()]))]


def test_message_stream_event_sequence() -> None:
    first = Delta(0, "Hello", None, num_prompt_tokens=10, num_cached_tokens=4)
    events = asyncio.run(
        _collect([first, Delta(0, ""), Delta(0, " world", "stop"), generation("Hello world")])
    )
    names = [e.event for e in events]
    assert names == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    start = events[0].data
    assert isinstance(start, dict)
    assert start["message"]["usage"]["input_tokens"] == 6  # known before the first token
    assert start["message"]["stop_reason"] is None and start["message"]["content"] == []
    by_type = {
        "message_start": sdk.RawMessageStartEvent,
        "content_block_start": sdk.RawContentBlockStartEvent,
        "content_block_delta": sdk.RawContentBlockDeltaEvent,
        "content_block_stop": sdk.RawContentBlockStopEvent,
        "message_delta": sdk.RawMessageDeltaEvent,
        "message_stop": sdk.RawMessageStopEvent,
    }
    for event in events:
        assert isinstance(event.data, dict) and event.data["type"] == event.event
        assert_round_trip(by_type[event.data["type"]], event.data)
    final = events[5].data
    assert isinstance(final, dict)
    assert final["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert final["usage"] == {"input_tokens": 6, "output_tokens": 3, "cache_read_input_tokens": 4}


def record(status: str, **values: Any) -> BatchRecord:
    base = dict.fromkeys(BatchRecord.__dataclass_fields__)
    base.update(
        id="msgbatch_1",
        project="default",
        api="anthropic",
        endpoint="/v1/messages",
        completion_window="24h",
        status=status,
        created_at=1_767_225_600,  # 2026-01-01T00:00:00Z
        created_ns=1_767_225_600 * 10**9,
        expires_at=1_767_225_600 + 86400,
        num_total=5,
        num_succeeded=0,
        num_errored=0,
        num_cancelled=0,
        num_expired=0,
        input_tokens=0,
        cached_tokens=0,
        output_tokens=0,
    )
    base.update(values)
    return BatchRecord(**base)  # type: ignore[arg-type]


def test_message_batch_counts_stay_processing_until_the_batch_ends() -> None:
    running = views.message_batch(record("in_progress", num_succeeded=3, num_errored=1), "http://h")
    assert running.processing_status == "in_progress" and running.results_url is None
    assert running.request_counts.model_dump() == {
        "processing": 5,
        "succeeded": 0,
        "errored": 0,
        "canceled": 0,
        "expired": 0,
    }
    assert running.created_at == "2026-01-01T00:00:00Z"
    assert running.expires_at == "2026-01-02T00:00:00Z"
    canceling = views.message_batch(record("cancelling", cancelling_at=1_767_225_660), "http://h")
    assert canceling.processing_status == "canceling"
    assert canceling.cancel_initiated_at == "2026-01-01T00:01:00Z"
    ended = views.message_batch(
        record(
            "cancelled", num_succeeded=2, num_errored=1, num_cancelled=2, cancelled_at=1_767_225_700
        ),
        "http://h/",
    )
    assert ended.processing_status == "ended" and ended.ended_at == "2026-01-01T00:01:40Z"
    assert ended.results_url == "http://h/v1/messages/batches/msgbatch_1/results"
    assert ended.request_counts.model_dump() == {
        "processing": 0,
        "succeeded": 2,
        "errored": 1,
        "canceled": 2,
        "expired": 0,
    }
    assert_round_trip(SDKMessageBatch, ended.model_dump())


def body(requests: Any) -> io.BytesIO:
    return io.BytesIO(json.dumps({"requests": requests}).encode())


def item(custom_id: Any, **params: Any) -> dict[str, Any]:
    return {
        "custom_id": custom_id,
        "params": {
            "model": "m",
            "max_tokens": 4,
            "messages": [{"role": "user", "content": "hi"}],
            **params,
        },
    }


def test_envelope_counts_requests_and_checks_custom_ids() -> None:
    limits = LimitSettings()
    assert message_batch_input.check_envelope(body([item("a"), item("b-2_C")]), limits) == 2
    for requests, fragment in [
        ([item("a"), item("a")], "requests.1.custom_id: 'a' is already used by requests.0"),
        ([item("ok"), item("no/slash")], "requests.1.custom_id"),
        ([item(7)], "requests.0.custom_id"),
        ([], "at least one request"),
        ([item("a"), "text"], "requests.1: each request must be an object"),
    ]:
        with pytest.raises(InvalidRequest) as excinfo:
            message_batch_input.check_envelope(body(requests), limits)
        assert fragment in excinfo.value.message
    too_many = LimitSettings(max_message_batch_requests=2)
    with pytest.raises(InvalidRequest, match="more than 2 requests"):
        message_batch_input.check_envelope(body([item("a"), item("b"), item("c")]), too_many)


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (b"", "not valid JSON: parse error: premature EOF."),
        (b"[1]", "not a JSON object"),
        (b'{"requests": [', "not valid JSON"),
        (b'{"requests": []} trailing', "not valid JSON"),
        (b'{"requests": {}}', "must be a list"),
        (b'{"other": 1}', "Unrecognized request argument supplied: other"),
        (b"{}", "Missing required parameter: 'requests'"),
    ],
)
def test_bad_bodies_are_refused(raw: bytes, fragment: str) -> None:
    with pytest.raises(InvalidRequest) as excinfo:
        message_batch_input.check_envelope(io.BytesIO(raw), LimitSettings())
    assert fragment in excinfo.value.message


def raw_body(*params: bytes, custom_id: bytes = b'"a"') -> io.BytesIO:
    """A create body whose last request's `params` are the raw JSON given."""
    fine = json.dumps(item("ok")).encode()
    requests = [fine] + [b'{"custom_id": %s, "params": %s}' % (custom_id, p) for p in params]
    return io.BytesIO(b'{"requests": [' + b", ".join(requests) + b"]}")


def refusal(fh: io.BytesIO, limits: LimitSettings | None = None) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as raised:
        message_batch_input.check_envelope(fh, limits or LimitSettings())
    return raised.value


def test_a_custom_id_with_a_trailing_newline_is_refused() -> None:
    """Bug 4: `re.match` with `$` let "a\n" through."""
    error = refusal(body([item("ok"), item("a\n")]))
    assert error.param == "requests.1.custom_id"
    assert error.message.startswith('requests.1.custom_id: "a\\n" is invalid')


def nested(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


def test_params_at_the_depth_limit_pass_and_one_level_more_is_refused() -> None:
    limits = LimitSettings(max_json_depth=10)
    assert message_batch_input.check_envelope(raw_body(nested(10)), limits) == 2
    error = refusal(raw_body(nested(11)), limits)
    assert error.param == "requests.1.params"
    assert error.message == (
        "requests.1.params nests JSON 11 levels deep; the limit is 10 ([limits] "
        "max_json_depth). Flatten the arrays and objects."
    )


def test_deep_nesting_outside_params_names_where_it_is() -> None:
    deep_field = b'{"requests": [{"custom_id": "a", "x": ' + b"[" * 100 + b"]" * 100 + b"}]}"
    assert refusal(io.BytesIO(deep_field)).param == "requests.0.x"
    deep_item = b'{"requests": [' + b"[" * 100 + b"]" * 100 + b"]}"
    error = refusal(io.BytesIO(deep_item))
    assert error.param == "requests.0"
    assert error.message.startswith("requests.0 nests JSON 100 levels deep")


def traced_peak(fh: io.BytesIO) -> tuple[int, InvalidRequest | int]:
    """The peak of memory allocated while checking `fh`, and what the check gave."""
    tracemalloc.start()
    try:
        try:
            outcome: InvalidRequest | int = message_batch_input.check_envelope(fh, LimitSettings())
        except InvalidRequest as exc:
            outcome = exc
        return tracemalloc.get_traced_memory()[1], outcome
    finally:
        tracemalloc.stop()


def test_deeply_nested_params_are_refused_in_bounded_memory() -> None:
    """Bug 1: ijson.parse's per-event prefixes made memory quadratic in the depth; a
    40,000-level body took the server to 3.7 GB. 10,000 levels (60 KB) took 105 MB."""
    peak, outcome = traced_peak(raw_body(nested(10_000)))
    assert isinstance(outcome, InvalidRequest)
    assert outcome.message.startswith("requests.1.params nests JSON 10000 levels deep")
    assert peak < 8 * MiB


@pytest.mark.parametrize(
    "params",
    [nested(200_000), json.dumps(item("x")["params"]).encode()],
    ids=["one request 200,000 deep", "5,000 requests"],
)
def test_a_create_body_is_read_one_request_at_a_time(params: bytes) -> None:
    """The security guide's bound: a 1 MB body, shallow or 200,000 levels deep, is read
    within a few MiB (the read buffer and one request), not in proportion to its size.

    (Not a test to run against the reader before the fix: 200,000 levels need tens of
    GB there. The 10,000-level test above is the one that shows the bug.)"""
    copies = 1 if len(params) > MiB else MiB // len(params)
    requests = [b'{"custom_id": "c%d", "params": %s}' % (i, params) for i in range(copies)]
    fh = io.BytesIO(b'{"requests": [' + b", ".join(requests) + b"]}")
    peak, outcome = traced_peak(fh)
    assert len(fh.getvalue()) > MiB
    assert outcome == copies or isinstance(outcome, InvalidRequest)
    assert peak < 8 * MiB


@pytest.mark.parametrize(
    "text",
    [b"a\\ud800b", b"\\udc00", b"\\ud800\\u0041", b"\xed\xa0\x80"],
    ids=["lone high escape", "lone low escape", "high before a non-surrogate", "raw bytes"],
)
def test_a_lone_surrogate_is_refused_naming_the_request(text: bytes) -> None:
    """Bug: yajl made a lone high surrogate '?', silently; now refused as everywhere."""
    params = b'{"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": "%s"}]}'
    error = refusal(raw_body(params % text))
    assert error.param == "requests.1.params"
    assert "holds a lone UTF-16 surrogate escape (\\u" in error.message
    assert "not valid Unicode" in error.message


def test_surrogate_pairs_and_escaped_backslashes_are_kept() -> None:
    content = "\U0001f600 \\ud800"  # an emoji and the text `\ud800`
    requests = [item("a", messages=[{"role": "user", "content": content}])]
    fh = io.BytesIO(json.dumps({"requests": requests}).encode())  # ensure_ascii: a pair
    assert message_batch_input.check_envelope(fh, LimitSettings()) == 1
    (accepted,) = message_batch_input.iter_requests(io.BytesIO(fh.getvalue()), has_model=bool)
    assert accepted.body["messages"][0]["content"] == content


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        (b"1" + b"0" * 100_000, "holds a number out of range"),
        (b"1e999", "holds a number out of range"),
        (b'"\xff"', "is not valid UTF-8"),
        (b"}", "is not valid JSON"),
    ],
    ids=["100,000 digits", "1e999", "invalid UTF-8", "syntax"],
)
def test_unreadable_params_are_refused_naming_the_request(value: bytes, fragment: str) -> None:
    error = refusal(raw_body(b'{"model": "m", "max_tokens": %s}' % value))
    assert error.param == "requests.1.params"
    assert error.message.startswith(f"requests.1.params {fragment}")
    assert "b'" not in error.message and "right here" not in error.message


def test_requests_with_invalid_params_or_unknown_models_are_errored() -> None:
    requests = [item("ok"), item("zero", max_tokens=0), item("gone", model="gone")]
    accepted = list(
        message_batch_input.iter_requests(body(requests), has_model=lambda name: name == "m")
    )
    assert [(a.line, a.custom_id, a.url) for a in accepted] == [
        (1, "ok", "/v1/messages"),
        (2, "zero", "/v1/messages"),
        (3, "gone", "/v1/messages"),
    ]
    ok, zero, gone = accepted
    assert ok.error_body is None and json.loads(ok.body_json)["max_tokens"] == 4
    assert zero.error_status == 400 and zero.error_body is not None
    assert "max_tokens" in zero.error_body["error"]["message"]
    assert gone.error_status == 404 and gone.error_body is not None
    assert gone.error_body["error"]["type"] == "not_found_error"


def test_streams_merge_in_arrival_order_with_their_index() -> None:
    async def run() -> list[tuple[int, str]]:
        fast_done = asyncio.Event()

        async def slow() -> AsyncIterator[Delta | Generation]:
            await fast_done.wait()
            yield Delta(0, "slow", "stop")
            yield generation("slow")

        async def fast() -> AsyncIterator[Delta | Generation]:
            yield Delta(0, "fast", "stop")
            fast_done.set()
            yield generation("fast")

        merged = streams.merge([slow(), fast()])
        return [(i, x.text) async for i, x in merged if isinstance(x, Delta)]

    assert asyncio.run(run()) == [(1, "fast"), (0, "slow")]
