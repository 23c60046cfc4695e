"""Provider batch passthrough end to end: a Freight whose models are another Freight's
Batch APIs, OpenAI-style (files + batches) and Anthropic-style (message batches).

The upstream is a second Freight with the echo engine, slowed down where a test needs
its batches still running (to expire or cancel them). Every test checks that the user
sees one Freight batch with one line per request, under the caller's custom_ids.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anthropic
import pytest
from anthropic.types.messages import MessageBatchIndividualResponse as SDKResult
from openai.types import Batch as SDKBatch
from openai.types.chat import ChatCompletion as SDKChatCompletion

from freight.config import ModelSettings, OpenAIBatchUpstream, WorkerSettings
from freight.service.runtime import Service
from freight.store import batches as store_batches
from freight.store import upstream as store_upstream
from tests.conftest import (
    LiveServer,
    chat_line,
    make_settings,
    read_jsonl,
    wait_for_batch,
    wait_for_message_batch,
    write_jsonl,
)
from tests.sdk import assert_round_trip, message_batch_results, output_lines
from tests.waiting import wait_until

FAST_POLL = {"poll_seconds": 0.1, "max_poll_seconds": 0.4}


def start_upstream(home: Path, delay_seconds: float, max_in_flight: int) -> LiveServer:
    settings = make_settings(
        home,
        models=[ModelSettings(name="echo", engine="echo", delay_seconds=delay_seconds)],
        worker=WorkerSettings(
            poll_seconds=0.05, flush_seconds=0.02, lease_seconds=10, max_in_flight=max_in_flight
        ),
    )
    return LiveServer(Service(settings)).start()


def start_downstream(home: Path, upstream: LiveServer, **overrides: Any) -> LiveServer:
    """Models: `gpt-up` and `claude-up` (4 requests per upstream batch), `gpt-up-2s`
    (upstream batches with a 2 s completion window), `gpt-nope` (a model the upstream
    lacks) and the local `echo`."""

    def model(name: str, engine: str, base_url: str, **extra: Any) -> ModelSettings:
        # a table as freight.toml gives it: the model's engine decides the keys it takes
        settings = {"base_url": base_url, "model": "echo", **FAST_POLL, **extra}
        return ModelSettings(name=name, engine=engine, upstream=settings)

    v1 = f"{upstream.base_url}/v1"
    settings = make_settings(
        home,
        models=[
            ModelSettings(name="echo", engine="echo"),
            model("gpt-up", "openai-batch", v1, max_requests_per_batch=4, **overrides),
            model("gpt-up-2s", "openai-batch", v1, completion_window="2s"),
            ModelSettings(  # the upstream has no such model: its batches fail validation
                name="gpt-nope",
                engine="openai-batch",
                upstream=OpenAIBatchUpstream(base_url=v1, model="nope", **FAST_POLL),
            ),
            model(
                "claude-up",
                "anthropic-batch",
                upstream.base_url,
                max_requests_per_batch=4,
                **overrides,
            ),
        ],
    )
    return LiveServer(Service(settings)).start()


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[Callable[..., tuple[LiveServer, LiveServer]]]:
    """Start an upstream (echo, `delay_seconds` a request, `max_in_flight` at once) and a
    downstream pointing at it."""
    started: list[LiveServer] = []

    def start(delay_seconds: float = 0.0, max_in_flight: int = 64) -> tuple[LiveServer, LiveServer]:
        up = start_upstream(tmp_path / "up", delay_seconds, max_in_flight)
        started.append(up)
        down = start_downstream(tmp_path / "down", up)
        started.append(down)
        return up, down

    yield start
    for server in reversed(started):
        server.stop()


def submit(down: LiveServer, tmp_path: Path, lines: list[dict[str, Any]]) -> Any:
    client = down.openai()
    uploaded = client.files.create(file=write_jsonl(tmp_path / "in.jsonl", lines), purpose="batch")
    return client.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )


def lines_of(down: LiveServer, batch: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    client = down.openai()
    return output_lines(client, batch.output_file_id), output_lines(client, batch.error_file_id)


def assert_each_once(output: list[Any], errors: list[Any], custom_ids: list[str]) -> None:
    ended = Counter(line["custom_id"] for line in output + errors)
    assert sorted(ended) == sorted(custom_ids)
    assert set(ended.values()) == {1}


# --- OpenAI style ---------------------------------------------------------------------------


def test_openai_passthrough_splits_into_upstream_batches_and_imports_results(
    servers: Callable[..., tuple[LiveServer, LiveServer]], tmp_path: Path
) -> None:
    up, down = servers()
    lines = [chat_line(f"up-{i}", f"upstream words {i}", model="gpt-up") for i in range(10)]
    batch = wait_for_batch(down.openai(), submit(down, tmp_path, lines).id, timeout=120)
    assert batch.status == "completed", batch.errors
    assert batch.request_counts.completed == 10 and batch.request_counts.failed == 0
    assert_round_trip(SDKBatch, batch.to_dict(mode="json"))
    output, errors = lines_of(down, batch)
    assert errors == []
    assert_each_once(output, errors, [line["custom_id"] for line in lines])
    for line in output:
        completion = assert_round_trip(SDKChatCompletion, line["response"]["body"])
        number = line["custom_id"].split("-")[1]
        assert completion.choices[0].message.content == f"upstream words {number}"

    # upstream: 10 requests in batches of at most 4, each completed, with our ids as custom_ids
    upstream_batches = up.openai().batches.list().data
    assert sorted(b.request_counts.total for b in upstream_batches) == [2, 4, 4]
    assert {b.status for b in upstream_batches} == {"completed"}
    upstream_ids = set()
    for b in upstream_batches:
        upstream_input = read_jsonl(up.openai().files.content(b.input_file_id).text)
        assert {line["body"]["model"] for line in upstream_input} == {"echo"}
        upstream_ids |= {line["custom_id"] for line in upstream_input}
    assert len(upstream_ids) == 10 and not upstream_ids & {f"up-{i}" for i in range(10)}


def test_openai_upstream_batch_that_expires_maps_to_expired_lines(
    servers: Callable[..., tuple[LiveServer, LiveServer]], tmp_path: Path
) -> None:
    up, down = servers(delay_seconds=0.4, max_in_flight=1)  # 2.5 requests a second
    lines = [chat_line(f"r{i}", f"words {i}", model="gpt-up-2s") for i in range(12)]
    batch = wait_for_batch(down.openai(), submit(down, tmp_path, lines).id, timeout=120)
    assert batch.status == "completed"  # the Freight batch itself did not expire
    (upstream_batch,) = up.openai().batches.list().data
    assert upstream_batch.status == "expired"
    output, errors = lines_of(down, batch)
    assert_each_once(output, errors, [line["custom_id"] for line in lines])
    assert errors and all(line["error"]["code"] == "batch_expired" for line in errors)
    assert len(output) == upstream_batch.request_counts.completed
    for line in output:
        assert line["response"]["body"]["choices"][0]["message"]["content"] == (
            f"words {line['custom_id'][1:]}"
        )
    assert batch.request_counts.completed == len(output)
    assert batch.request_counts.failed == len(errors)


def test_openai_upstream_batch_cancelled_upstream_maps_to_cancelled_lines(
    servers: Callable[..., tuple[LiveServer, LiveServer]], tmp_path: Path
) -> None:
    up, down = servers(delay_seconds=0.3, max_in_flight=1)
    lines = [chat_line(f"r{i}", f"words {i}", model="gpt-up") for i in range(4)]
    created = submit(down, tmp_path, lines)
    upstream = up.openai()
    running = wait_until(
        lambda: [b for b in upstream.batches.list().data if b.request_counts.completed >= 1],
        timeout=60,
    )
    upstream.batches.cancel(running[0].id)  # someone cancels it at the provider
    batch = wait_for_batch(down.openai(), created.id, timeout=120)
    assert batch.status == "completed"
    assert upstream.batches.retrieve(running[0].id).status == "cancelled"
    output, errors = lines_of(down, batch)
    assert_each_once(output, errors, [line["custom_id"] for line in lines])
    assert len(output) >= 1
    assert errors and all(line["error"]["code"] == "batch_cancelled" for line in errors)


def test_cancelling_the_freight_batch_cancels_upstream_and_keeps_finished_lines(
    servers: Callable[..., tuple[LiveServer, LiveServer]], tmp_path: Path
) -> None:
    up, down = servers(delay_seconds=0.3, max_in_flight=1)
    lines = [chat_line(f"r{i}", f"words {i}", model="gpt-up") for i in range(8)]
    created = submit(down, tmp_path, lines)
    upstream = up.openai()
    wait_until(
        lambda: any(b.request_counts.completed >= 1 for b in upstream.batches.list().data),
        timeout=60,
    )
    down.openai().batches.cancel(created.id)
    batch = wait_for_batch(down.openai(), created.id, timeout=120)
    assert batch.status == "cancelled"
    statuses = [b.status for b in upstream.batches.list().data]
    assert "cancelled" in statuses and set(statuses) <= {"cancelled", "completed"}
    output, errors = lines_of(down, batch)
    assert_each_once(output, errors, [line["custom_id"] for line in lines])
    assert len(output) >= 1  # what the provider finished before the cancel is kept
    assert errors and all(line["error"]["code"] == "batch_cancelled" for line in errors)


def test_an_upstream_batch_that_fails_validation_errors_every_line_with_its_reason(
    servers: Callable[..., tuple[LiveServer, LiveServer]], tmp_path: Path
) -> None:
    up, down = servers()
    lines = [chat_line(f"r{i}", f"words {i}", model="gpt-nope") for i in range(3)]
    batch = wait_for_batch(down.openai(), submit(down, tmp_path, lines).id, timeout=120)
    assert batch.status == "completed" and batch.request_counts.failed == 3
    (upstream_batch,) = up.openai().batches.list().data
    assert upstream_batch.status == "failed"
    output, errors = lines_of(down, batch)
    assert output == []
    assert_each_once(output, errors, [line["custom_id"] for line in lines])
    for line in errors:
        assert line["error"]["code"] == "upstream_batch_failed"
        assert "the model 'nope' does not exist" in line["error"]["message"]


def test_a_passthrough_model_refuses_real_time_requests(
    servers: Callable[..., tuple[LiveServer, LiveServer]],
) -> None:
    _, down = servers()
    import openai

    with pytest.raises(openai.BadRequestError, match="accepts batch requests only"):
        down.openai().chat.completions.create(
            model="gpt-up", messages=[{"role": "user", "content": "hi"}]
        )


# --- Anthropic style ------------------------------------------------------------------------


def message_request(custom_id: str, content: str, model: str = "claude-up") -> dict[str, Any]:
    return {
        "custom_id": custom_id,
        "params": {
            "model": model,
            "max_tokens": 16,
            "messages": [{"role": "user", "content": content}],
        },
    }


def started_upstream(up: LiveServer) -> list[Any]:
    """The upstream's running batches with a finished request (its store: Anthropic's
    view counts requests only once a batch has ended)."""
    with up.svc.db.read() as conn:
        return [b for b in store_batches.with_status(conn, "in_progress") if b.num_succeeded]


def results_of(client: anthropic.Anthropic, batch_id: str) -> dict[str, SDKResult]:
    results = message_batch_results(client, batch_id)
    assert len({r.custom_id for r in results}) == len(results)  # each request once
    return {r.custom_id: r for r in results}


def test_anthropic_passthrough_splits_and_imports_results(
    servers: Callable[..., tuple[LiveServer, LiveServer]],
) -> None:
    up, down = servers()
    client = down.anthropic()
    requests = [message_request(f"m-{i}", f"hello number {i}") for i in range(6)]
    # a Message Batch may mix models: these two run on this Freight's own engine
    requests += [message_request(f"m-{i}", f"hello number {i}", "echo") for i in (6, 7)]
    batch = client.messages.batches.create(requests=requests)  # type: ignore[arg-type]
    batch = wait_for_message_batch(client, batch.id)
    assert batch.request_counts.succeeded == 8
    results = results_of(client, batch.id)
    assert sorted(results) == sorted(r["custom_id"] for r in requests)
    for custom_id, result in results.items():
        assert result.result.type == "succeeded"
        assert result.result.message.content[0].text == f"hello number {custom_id[2:]}"
    upstream_batches = up.anthropic().messages.batches.list().data
    assert sorted(b.request_counts.succeeded for b in upstream_batches) == [2, 4]


def test_anthropic_upstream_batch_that_expires_maps_to_expired_results(
    servers: Callable[..., tuple[LiveServer, LiveServer]],
) -> None:
    up, down = servers(delay_seconds=0.4, max_in_flight=1)
    client = down.anthropic()
    requests = [message_request(f"m-{i}", f"hello number {i}") for i in range(4)]
    batch = client.messages.batches.create(requests=requests)  # type: ignore[arg-type]
    upstream = up.anthropic()
    running = wait_until(lambda: started_upstream(up), timeout=60)
    with up.svc.db.write() as conn:  # the upstream's expiry: now
        store_batches.set_values(conn, running[0].id, expires_at=int(time.time()))
    batch = wait_for_message_batch(client, batch.id)
    assert upstream.messages.batches.retrieve(running[0].id).processing_status == "ended"
    results = results_of(client, batch.id)
    assert sorted(results) == sorted(r["custom_id"] for r in requests)
    kinds = Counter(r.result.type for r in results.values())
    assert kinds["succeeded"] >= 1 and kinds["expired"] >= 1
    assert set(kinds) == {"succeeded", "expired"}
    assert batch.request_counts.expired == kinds["expired"]


def test_anthropic_upstream_batch_cancelled_upstream_maps_to_canceled_results(
    servers: Callable[..., tuple[LiveServer, LiveServer]],
) -> None:
    up, down = servers(delay_seconds=0.3, max_in_flight=1)
    client = down.anthropic()
    requests = [message_request(f"m-{i}", f"hello number {i}") for i in range(4)]
    batch = client.messages.batches.create(requests=requests)  # type: ignore[arg-type]
    upstream = up.anthropic()
    running = wait_until(lambda: started_upstream(up), timeout=60)
    upstream.messages.batches.cancel(running[0].id)
    batch = wait_for_message_batch(client, batch.id)
    results = results_of(client, batch.id)
    assert sorted(results) == sorted(r["custom_id"] for r in requests)
    kinds = Counter(r.result.type for r in results.values())
    assert kinds["succeeded"] >= 1 and kinds["canceled"] >= 1
    assert set(kinds) == {"succeeded", "canceled"}
    assert batch.request_counts.canceled == kinds["canceled"]


def test_a_message_batch_cannot_route_messages_to_an_openai_style_upstream(
    servers: Callable[..., tuple[LiveServer, LiveServer]],
) -> None:
    _, down = servers()
    client = down.anthropic()
    batch = client.messages.batches.create(
        requests=[message_request("m-0", "hi", model="gpt-up")]  # type: ignore[list-item]
    )
    batch = wait_for_message_batch(client, batch.id)
    (result,) = results_of(client, batch.id).values()
    assert result.result.type == "errored"
    assert "not /v1/messages" in result.result.error.error.message


# --- a worker that stops while an upstream batch runs -------------------------------------


def test_a_restarted_worker_adopts_the_upstream_batch_instead_of_creating_another(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="freight.upstream.passthrough")
    up = start_upstream(tmp_path / "up", delay_seconds=0.3, max_in_flight=1)
    down = start_downstream(tmp_path / "down", up)
    try:
        lines = [chat_line(f"r{i}", f"words {i}", model="gpt-up") for i in range(4)]
        created = submit(down, tmp_path, lines)
        upstream = up.openai()
        wait_until(lambda: upstream.batches.list().data, timeout=60)
        down.stop()  # gives its requests back, still tied to their upstream batch
        down = start_downstream(tmp_path / "down", up)
        batch = wait_for_batch(down.openai(), created.id, timeout=120)
        assert batch.status == "completed" and batch.request_counts.completed == 4
        output, errors = lines_of(down, batch)
        assert errors == []
        assert_each_once(output, errors, [line["custom_id"] for line in lines])
        (upstream_batch,) = upstream.batches.list().data  # created once, polled by both
        assert upstream_batch.status == "completed"
        with down.svc.db.read() as conn:
            (record,) = store_upstream.for_batch(conn, created.id)
        assert (record.status, record.upstream_id) == ("ended", upstream_batch.id)
        assert f"adopted upstream batch {record.id}" in caplog.text
    finally:
        down.stop()
        up.stop()
