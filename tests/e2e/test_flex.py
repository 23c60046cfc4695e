"""The flex tier end to end: `service_tier: "flex"` on the real-time endpoints, through
the official SDKs. A flex request waits with batch work, after real-time requests, is
answered on the same call with `service_tier: "flex"`, and is billed to its key's project
at the batch price in `freight report`; a flood beyond the flex queue gets 429 with
Retry-After in the API's own error shape, never a 500.

Order (real time before flex) is shown by the order answers arrive, not by timings.
"""

from __future__ import annotations

import asyncio
import io
import json
import socket
import struct
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from freight.config import ModelSettings, SchedulerSettings, WorkerSettings
from freight.engines.base import EngineDied
from freight.engines.echo import EchoEngine
from freight.service.runtime import Service
from freight.usage import pricing
from freight.worker import flex
from tests.conftest import (
    CHAT_MODEL,
    LiveServer,
    chat_line,
    make_settings,
    run_cli,
    wait_for_batch,
)
from tests.sdk import assert_round_trip, batch_lines
from tests.waiting import wait_until

PRICES = {
    "FREIGHT_PRICING__INPUT_PRICE": "1.0",
    "FREIGHT_PRICING__OUTPUT_PRICE": "2.0",
    "FREIGHT_PRICING__BATCH_DISCOUNT": "0.5",
}
WINDOW = 8  # batch requests in the real engine at once, so the batch runs a while


def report_rows(home: Path, *args: str) -> list[dict[str, Any]]:
    result = run_cli("report", "--home", str(home), "--json", *args, env=PRICES)
    assert result.returncode == 0, result.stderr
    rows: list[dict[str, Any]] = json.loads(result.stdout)["rows"]
    return rows


def assert_billed_at_the_batch_price(row: dict[str, Any]) -> None:
    exact = (Decimal(row["input_tokens"]) * 1 + Decimal(row["output_tokens"]) * 2) / 1_000_000
    assert Decimal(str(row["batch_cost"])) == pricing.usd(exact * Decimal("0.5"))
    assert Decimal(str(row["realtime_cost"])) == pricing.usd(exact)


def flex_chat(client: openai.OpenAI, content: str, max_tokens: int = 8) -> Any:
    return client.chat.completions.create(
        model=CHAT_MODEL,
        messages=[{"role": "user", "content": content}],
        max_tokens=max_tokens,
        temperature=0,
        service_tier="flex",
    )


def post_flex(base_url: str, content: str, max_tokens: int) -> httpx.Response:
    body = {
        "model": CHAT_MODEL,
        "messages": [{"role": "user", "content": content}],
        "max_tokens": max_tokens,
        "service_tier": "flex",
    }
    return httpx.post(f"{base_url}/v1/chat/completions", json=body, timeout=300)


def assert_refused_with_retry_after(response: httpx.Response) -> None:
    assert response.status_code == 429, response.text
    assert int(response.headers["retry-after"]) >= 1
    error = response.json()["error"]
    assert error["type"] == "rate_limit_error" and "flex" in error["message"]


@pytest.mark.slow
def test_flex_requests_complete_beside_a_batch_billed_at_the_batch_price(
    real_server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(real_server.svc.settings.worker, "max_in_flight", WINDOW)
    client = real_server.openai(max_retries=0)
    before = sum(
        r["num_requests"] for r in report_rows(real_server.svc.settings.home) if r["kind"] == "flex"
    )
    lines = [
        chat_line(f"b{i}", f"Write a list of {i + 3} fruits.", max_tokens=16, temperature=0)
        for i in range(64)
    ]
    data = "".join(json.dumps(line) + "\n" for line in lines).encode()
    uploaded = client.files.create(file=("flex.jsonl", io.BytesIO(data)), purpose="batch")
    batch = client.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    wait_until(
        lambda: client.batches.retrieve(batch.id).request_counts.completed > 0,
        timeout=120,
        what="the batch to be running",
    )
    with ThreadPoolExecutor(3) as pool:
        answers = list(pool.map(lambda i: flex_chat(client, f"Say {i}."), range(3)))
    running = client.batches.retrieve(batch.id)
    for answer in answers:
        assert answer.service_tier == "flex" and answer.choices[0].message.content
        assert_round_trip(type(answer), answer.to_dict(mode="json"))
    assert running.status == "in_progress", "the batch ended before the flex requests"
    done = wait_for_batch(client, batch.id, timeout=300)
    assert done.request_counts.completed == len(lines)

    flex = [r for r in report_rows(real_server.svc.settings.home) if r["kind"] == "flex"]
    assert [(r["project"], r["model"]) for r in flex] == [("default", CHAT_MODEL)]
    assert flex[0]["num_requests"] - before == 3
    assert_billed_at_the_batch_price(flex[0])
    client.close()


@pytest.mark.slow
def test_a_streamed_flex_answer_holds_its_slot_until_its_last_token(
    real_server: LiveServer,
) -> None:
    client = real_server.openai(max_retries=0)
    flex = real_server.svc.flex
    served = flex.num_served
    running: list[int] = []
    chunks = []
    with client.chat.completions.create(
        model=CHAT_MODEL,
        messages=[{"role": "user", "content": "Count from 1 to 50, separated by commas."}],
        max_tokens=32,
        temperature=0,
        service_tier="flex",
        stream=True,
        stream_options={"include_usage": True},
    ) as stream:
        for chunk in stream:
            chunks.append(chunk)
            running.append(flex.num_running)
    assert running[0] == 1  # the first token is out, the slot is still held
    assert {c.service_tier for c in chunks} == {"flex"}
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    usage = chunks[-1].usage
    assert usage is not None and usage.completion_tokens > 0
    wait_until(lambda: flex.num_running == 0, timeout=30, what="the flex slot to be freed")
    assert flex.num_served == served + 1
    client.close()


@pytest.mark.slow
def test_real_time_goes_first_and_a_flex_flood_gets_429s_never_500s(
    real_server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One flex slot and two places in line. Four long flex requests, then a real-time
    one: the real-time answer arrives before the last flex one (it does not wait in the
    flex line, and runs ahead of it in the engine). Then a flood of ten: the ones beyond
    the line are refused with Retry-After, and none fails otherwise."""
    scheduler = real_server.svc.settings.scheduler
    monkeypatch.setattr(scheduler, "flex_max_running", 1)
    monkeypatch.setattr(scheduler, "flex_max_queued", 3)
    base = real_server.base_url
    arrived: list[str] = []
    lock = threading.Lock()

    def flex(i: int) -> int:
        response = post_flex(base, f"Tell a story about the number {i}.", 32)
        with lock:
            arrived.append(f"flex-{i}")
        return response.status_code

    def realtime() -> int:
        client = real_server.openai(max_retries=0)
        client.chat.completions.create(
            model=CHAT_MODEL,
            messages=[{"role": "user", "content": "Tell a story about a cat."}],
            max_tokens=32,
        )
        with lock:
            arrived.append("realtime")
        client.close()
        return 200

    with ThreadPoolExecutor(5) as pool:
        flexes = [pool.submit(flex, i) for i in range(4)]
        wait_until(lambda: real_server.svc.flex.num_waiting == 3, timeout=60, what="3 flex waiting")
        assert pool.submit(realtime).result(timeout=300) == 200
        assert [f.result(timeout=300) for f in flexes] == [200] * 4
    assert arrived.index("realtime") < len(arrived) - 1, arrived

    with ThreadPoolExecutor(10) as pool:
        responses = list(pool.map(lambda i: post_flex(base, f"Story {i}", 32), range(10)))
    statuses = sorted(r.status_code for r in responses)
    assert set(statuses) <= {200, 429} and statuses.count(429) >= 1, statuses
    assert statuses.count(200) >= 4  # the one running and the three in line
    for response in responses:
        if response.status_code == 429:
            assert_refused_with_retry_after(response)
        else:
            assert response.json()["service_tier"] == "flex"
    assert real_server.svc.flex.num_running == real_server.svc.flex.num_waiting == 0


# --- the echo engine: every endpoint, projects, refusals -------------------------------------


@pytest.fixture
def flex_server(tmp_path: Path) -> Iterator[LiveServer]:
    """An echo engine of 100 ms a request; one flex slot, one place in line."""
    settings = make_settings(
        tmp_path / "home",
        models=[ModelSettings(name="echo", engine="echo", delay_seconds=0.1)],
        worker=WorkerSettings(poll_seconds=0.05, flush_seconds=0.02),
        scheduler=SchedulerSettings(flex_max_running=1, flex_max_queued=1),
    )
    server = LiveServer(Service(settings)).start()
    yield server
    server.stop()


def test_every_text_endpoint_serves_flex_and_bills_the_keys_project(
    flex_server: LiveServer,
) -> None:
    _, key = flex_server.svc.keys.create("alpha")
    client = openai.OpenAI(base_url=f"{flex_server.base_url}/v1", api_key=key, max_retries=0)
    chat = client.chat.completions.create(
        model="echo", messages=[{"role": "user", "content": "hi"}], service_tier="flex"
    )
    assert chat.service_tier == "flex"
    default = client.chat.completions.create(
        model="echo", messages=[{"role": "user", "content": "hi"}], service_tier="default"
    )
    assert default.service_tier == "default"
    plain = client.chat.completions.create(
        model="echo", messages=[{"role": "user", "content": "hi"}]
    )
    assert plain.service_tier is None  # as before: no tier asked, none said
    text = client.completions.create(model="echo", prompt="hi", extra_body={"service_tier": "flex"})
    assert (text.model_extra or {})["service_tier"] == "flex"
    response = client.responses.create(model="echo", input="hi", service_tier="flex")
    assert response.service_tier == "flex"
    claude = anthropic.Anthropic(base_url=flex_server.base_url, api_key=key, max_retries=0)
    message = claude.messages.create(
        model="echo",
        max_tokens=8,
        messages=[{"role": "user", "content": "hi"}],
        service_tier="flex",  # type: ignore[arg-type]  # Freight's own tier
    )
    assert (message.model_extra or {})["service_tier"] == "flex"
    assert_round_trip(type(message), message.to_dict(mode="json"))

    rows = report_rows(flex_server.svc.settings.home)
    flex = [r for r in rows if r["kind"] == "flex"]
    assert [(r["project"], r["model"], r["num_requests"]) for r in flex] == [("alpha", "echo", 4)]
    assert_billed_at_the_batch_price(flex[0])
    assert {
        r["kind"] for r in report_rows(flex_server.svc.settings.home, "--project", "alpha")
    } == {"flex"}
    client.close()
    claude.close()


def test_other_tiers_and_batch_lines_are_refused_naming_service_tier(
    flex_server: LiveServer,
) -> None:
    client = flex_server.openai(max_retries=0)
    messages = [{"role": "user", "content": "hi"}]
    for tier in ("priority", "scale", "fast"):
        with pytest.raises(openai.BadRequestError) as refused:
            client.chat.completions.create(model="echo", messages=messages, service_tier=tier)  # type: ignore[arg-type]
        assert (
            isinstance(refused.value.body, dict) and refused.value.body["param"] == "service_tier"
        )
    line = chat_line("c0", "hi", model="echo", service_tier="flex")
    data = (json.dumps(line) + "\n").encode()
    uploaded = client.files.create(file=("b.jsonl", io.BytesIO(data)), purpose="batch")
    batch = client.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    ended = wait_for_batch(client, batch.id, timeout=60)
    assert ended.status == "completed" and ended.request_counts.failed == 1
    assert ended.error_file_id is not None
    [errored] = batch_lines(client.files.content(ended.error_file_id).text)
    assert errored["response"]["status_code"] == 400
    assert errored["response"]["body"]["error"]["param"] == "service_tier"
    client.close()


def test_flex_streams_on_every_text_endpoint_holding_its_slot_until_the_end(
    flex_server: LiveServer,
) -> None:
    """Every endpoint that streams streams flex too: each chunk (or the whole answer's
    object) says the tier, each stream is billed once at the batch price and frees its
    slot; a streamed `default` tier says its tier too."""
    _, key = flex_server.svc.keys.create("streamer")
    client = openai.OpenAI(base_url=f"{flex_server.base_url}/v1", api_key=key, max_retries=0)
    flex = flex_server.svc.flex
    messages = [{"role": "user", "content": "hi there"}]
    chunks = list(
        client.chat.completions.create(
            model="echo",
            messages=messages,
            service_tier="flex",
            stream=True,
        )
    )
    assert chunks and {c.service_tier for c in chunks} == {"flex"}
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    wait_until(lambda: flex.num_running == 0, timeout=10, what="the flex slot to be freed")
    text = list(
        client.completions.create(
            model="echo", prompt="hi", stream=True, extra_body={"service_tier": "flex"}
        )
    )
    assert text and {(c.model_extra or {}).get("service_tier") for c in text} == {"flex"}
    with client.responses.stream(model="echo", input="hi", service_tier="flex") as events:
        final = events.get_final_response()
    assert final.service_tier == "flex" and final.output_text
    claude = anthropic.Anthropic(base_url=flex_server.base_url, api_key=key, max_retries=0)
    with claude.messages.stream(
        model="echo",
        max_tokens=8,
        messages=[{"role": "user", "content": "hi"}],
        service_tier="flex",  # type: ignore[arg-type]  # Freight's own tier
    ) as message_events:
        message = message_events.get_final_message()
    assert message.content and (message.model_extra or {})["service_tier"] == "flex"
    default = list(
        client.chat.completions.create(
            model="echo", messages=messages, service_tier="default", stream=True
        )
    )
    assert {c.service_tier for c in default} == {"default"}
    wait_until(lambda: flex.num_running == 0, timeout=10, what="every flex slot to be freed")

    rows = report_rows(flex_server.svc.settings.home, "--project", "streamer")
    flex_rows = [r for r in rows if r["kind"] == "flex"]
    assert [(r["model"], r["num_requests"]) for r in flex_rows] == [("echo", 4)]
    assert flex_rows[0]["output_tokens"] > 0
    assert_billed_at_the_batch_price(flex_rows[0])
    client.close()
    claude.close()


def read_stream_then_hang_up(base_url: str, key: str, content: str) -> bytes:
    """POST a streamed flex chat request on a bare socket, read up to its last event
    (`data: [DONE]`) and reset the connection at once, as a client that has what it
    wanted does."""
    host, port = base_url.removeprefix("http://").split(":")
    body = json.dumps(
        {
            "model": "echo",
            "messages": [{"role": "user", "content": content}],
            "service_tier": "flex",
            "stream": True,
        }
    ).encode()
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nhost: {host}\r\n"
        f"authorization: Bearer {key}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    ).encode()
    received = b""
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(head + body)
        while b"data: [DONE]" not in received:
            chunk = sock.recv(65536)
            assert chunk, received
            received += chunk
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    return received


def test_a_flex_stream_read_to_its_end_is_billed_when_the_client_hangs_up_at_once(
    flex_server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store slow to take the usage row (as under load) must not make a full answer
    free when its client hangs up right after the last event: the server learns of the
    hang-up while it is still in the stream and stops it there. The stream is billed
    before its last event goes out, so the hang-up cannot cut the billing short."""
    record_usage = flex.record_usage

    async def slow_record_usage(*args: Any) -> None:
        await asyncio.sleep(0.3)
        await record_usage(*args)

    monkeypatch.setattr(flex, "record_usage", slow_record_usage)
    _, key = flex_server.svc.keys.create("hangs-up")
    for i in range(3):
        received = read_stream_then_hang_up(flex_server.base_url, key, f"hello {i}")
        assert b'"service_tier": "flex"' in received
        wait_until(lambda: flex_server.svc.flex.num_running == 0, timeout=10, what="the slot freed")
    rows = report_rows(flex_server.svc.settings.home, "--project", "hangs-up")
    assert [(r["kind"], r["num_requests"]) for r in rows] == [("flex", 3)]


def test_a_flex_stream_that_fails_midway_sends_what_came_before_then_the_error(
    flex_server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stream holds its newest event back until the next (so that billing comes
    before the last one); a failure must not swallow the held event. A failed stream is
    not billed and frees its slot."""
    stream = EchoEngine.stream

    async def dies_after_the_first_choice(self: EchoEngine, request: Any) -> Any:
        async for item in stream(self, request):
            yield item
            raise EngineDied("echo engine: died mid-stream")

    monkeypatch.setattr(EchoEngine, "stream", dies_after_the_first_choice)
    _, key = flex_server.svc.keys.create("midway")
    body = {
        "model": "echo",
        "messages": [{"role": "user", "content": "first words"}],
        "n": 2,
        "service_tier": "flex",
        "stream": True,
    }
    with httpx.stream(
        "POST",
        f"{flex_server.base_url}/v1/chat/completions",
        json=body,
        headers={"authorization": f"Bearer {key}"},
        timeout=30,
    ) as response:
        assert response.status_code == 200
        events = [json.loads(line[6:]) for line in response.iter_lines() if line[:6] == "data: "]
    choices = [c for e in events if "choices" in e for c in e["choices"]]
    # the first choice in full: its text, then its finish chunk (the event held back
    # when the engine died)
    assert [c["delta"].get("content") for c in choices][1] == "first words", events
    assert choices[-1] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}
    assert "error" in events[-1], events
    wait_until(lambda: flex_server.svc.flex.num_running == 0, timeout=10, what="the slot freed")
    assert report_rows(flex_server.svc.settings.home, "--project", "midway") == []


def test_a_flood_beyond_the_flex_line_gets_429_with_retry_after(flex_server: LiveServer) -> None:
    client = flex_server.openai(max_retries=0)
    with ThreadPoolExecutor(8) as pool:
        responses = list(
            pool.map(
                lambda i: httpx.post(
                    f"{flex_server.base_url}/v1/chat/completions",
                    json={
                        "model": "echo",
                        "messages": [{"role": "user", "content": f"hi {i}"}],
                        "service_tier": "flex",
                    },
                    timeout=60,
                ),
                range(8),
            )
        )
    statuses = sorted(r.status_code for r in responses)
    assert set(statuses) <= {200, 429} and statuses.count(429) >= 1, statuses
    for response in responses:
        if response.status_code == 429:
            assert_refused_with_retry_after(response)
    # the SDK's own error for it
    with pytest.raises(openai.RateLimitError), ThreadPoolExecutor(4) as pool:
        list(
            pool.map(
                lambda i: client.chat.completions.create(
                    model="echo",
                    messages=[{"role": "user", "content": f"hi {i}"}],
                    service_tier="flex",
                ),
                range(4),
            )
        )
    metrics = httpx.get(f"{flex_server.base_url}/metrics").text
    assert "freight_flex_refused_total" in metrics
    client.close()
