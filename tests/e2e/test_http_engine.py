"""The HTTP engine end to end: a Freight whose model is another server.

Against a second Freight (the session's real-engine server, through its real-time
endpoints): a batch and real-time requests, streamed and not, through the official SDK.
Against a small upstream on a loopback port that throttles past its capacity (429 with
Retry-After) and injects 500s, time-outs, slow answers and a permanent 400: every request
ends exactly once, and the concurrency limit backs off and recovers (metrics and logs).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import Body, FastAPI
from fastapi.responses import JSONResponse
from openai.types.chat import ChatCompletion as SDKChatCompletion

from freight.config import HTTPUpstream, ModelSettings, WorkerSettings
from freight.service.runtime import Service
from tests.conftest import (
    CHAT_MODEL,
    LiveServer,
    chat_line,
    free_port,
    make_settings,
    wait_for_batch,
    write_jsonl,
)
from tests.e2e.test_metrics import scrape
from tests.sdk import assert_round_trip, output_lines


class AppServer:
    """Any ASGI app on a loopback port, in a thread (the upstream in these tests)."""

    def __init__(self, app: FastAPI) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> AppServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive()
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def http_model(name: str, base_url: str, **upstream: Any) -> ModelSettings:
    return ModelSettings(
        name=name, engine="http", upstream=HTTPUpstream(base_url=base_url, **upstream)
    )


# --- against a second Freight with the real engine ------------------------------------------


@pytest.mark.slow
def test_batch_and_real_time_through_a_second_freight(
    real_server: LiveServer, tmp_path: Path
) -> None:
    settings = make_settings(
        tmp_path / "down",
        models=[http_model("up", f"{real_server.base_url}/v1", model=CHAT_MODEL)],
    )
    down = LiveServer(Service(settings)).start()
    try:
        prompts = [f"Say the number {i} in words." for i in range(6)]
        upstream = real_server.openai()
        direct = [
            upstream.chat.completions.create(
                model=CHAT_MODEL,
                messages=[{"role": "user", "content": p}],
                max_tokens=12,
                temperature=0,
            )
            for p in prompts
        ]
        client = down.openai()
        path = write_jsonl(
            tmp_path / "in.jsonl",
            [
                chat_line(f"c{i}", p, model="up", max_tokens=12, temperature=0)
                for i, p in enumerate(prompts)
            ],
        )
        input_file = client.files.create(file=path, purpose="batch")
        batch = client.batches.create(
            input_file_id=input_file.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        batch = wait_for_batch(client, batch.id, timeout=300)
        assert batch.status == "completed", batch
        assert batch.request_counts.completed == len(prompts)
        lines = output_lines(client, batch.output_file_id)
        by_id = {line["custom_id"]: line for line in lines}
        assert sorted(by_id) == sorted(f"c{i}" for i in range(len(prompts)))
        for i, answer in enumerate(direct):
            body = by_id[f"c{i}"]["response"]["body"]
            completion = assert_round_trip(SDKChatCompletion, body)
            assert completion.model == "up"
            # greedy fp32 decoding is deterministic: the same words as asking directly
            assert completion.choices[0].message.content == answer.choices[0].message.content
            assert completion.usage.prompt_tokens == answer.usage.prompt_tokens
            assert completion.usage.completion_tokens == answer.usage.completion_tokens

        # real time, streamed: relayed chunk by chunk, the same text, usage at the end
        chunks = list(
            client.chat.completions.create(
                model="up",
                messages=[{"role": "user", "content": prompts[0]}],
                max_tokens=12,
                temperature=0,
                stream=True,
                stream_options={"include_usage": True},
            )
        )
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == direct[0].choices[0].message.content
        assert sum(1 for c in chunks if c.choices and c.choices[0].delta.content) > 1
        assert chunks[-1].usage is not None
        assert chunks[-1].usage.completion_tokens == direct[0].usage.completion_tokens

        # /v1/completions (a text prompt) goes to the upstream's /v1/completions
        completion = client.completions.create(
            model="up", prompt="The capital of France is", max_tokens=5, temperature=0
        )
        expected = upstream.completions.create(
            model=CHAT_MODEL, prompt="The capital of France is", max_tokens=5, temperature=0
        )
        assert completion.choices[0].text == expected.choices[0].text

        metrics = scrape(down)
        assert metrics['freight_upstream_calls_total{model="up",outcome="succeeded"}'] == (
            len(prompts) + 2
        )
        assert metrics['freight_upstream_in_flight{model="up"}'] == 0
    finally:
        down.stop()


# --- against an upstream that throttles and fails ---------------------------------------------

CAPACITY = 8  # the flaky upstream answers 429 beyond this many calls at once


class FlakyUpstream:
    """An OpenAI-compatible chat endpoint that throttles, fails and dawdles on purpose.

    Prompts say what to do: `fail500` fails the first try with a 500, `timeout` sleeps
    past the client's time-out on the first try, `slow` answers after half a second,
    `bad` is always refused with a 400. Past CAPACITY calls at once, it answers 429.
    """

    def __init__(self) -> None:
        self.in_flight = 0
        self.calls: Counter[str] = Counter()
        self.answered: Counter[str] = Counter()
        self.statuses: Counter[int] = Counter()
        self.app = FastAPI()
        self.app.post("/v1/chat/completions")(self.chat)

    async def chat(self, body: dict[str, Any] = Body(...)) -> Any:
        content = body["messages"][-1]["content"]
        self.calls[content] += 1
        if self.in_flight >= CAPACITY:
            self.statuses[429] += 1
            return JSONResponse(
                {"error": {"message": "Rate limit reached", "type": "rate_limit"}},
                status_code=429,
                headers={"retry-after": "1"},
            )
        self.in_flight += 1
        try:
            first = self.calls[content] == 1
            if "fail500" in content and first:
                self.statuses[500] += 1
                return JSONResponse({"error": {"message": "boom"}}, status_code=500)
            if "bad" in content:
                self.statuses[400] += 1
                return JSONResponse(
                    {"error": {"message": "Invalid 'messages': not today."}}, status_code=400
                )
            if "timeout" in content and first:
                await asyncio.sleep(2.5)  # past the client's 1 s time-out
            await asyncio.sleep(0.5 if "slow" in content else 0.03)
            self.answered[content] += 1
            self.statuses[200] += 1
            return {
                "id": "chatcmpl-flaky",
                "object": "chat.completion",
                "created": 0,
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": content.upper()},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6},
            }
        finally:
            self.in_flight -= 1


def flaky_prompts() -> list[str]:
    def kind(i: int) -> str:
        if i % 40 == 7:
            return "fail500"
        if i % 80 == 13:
            return "timeout"
        return "slow" if i % 20 == 3 else "plain"

    prompts = [f"{kind(i)} request {i}" for i in range(320)]
    return [*prompts, "bad request A", "bad request B"]


BACKOFF = re.compile(r"upstream up (\w[\w ]*): concurrency limit (\d+) -> (\d+)")


def test_flaky_upstream_every_request_ends_once_and_concurrency_adapts(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="freight.engines.flow")
    upstream = FlakyUpstream()
    with AppServer(upstream.app) as app_server:
        settings = make_settings(
            tmp_path / "down",
            models=[
                http_model(
                    "up",
                    f"{app_server.base_url}/v1",
                    model="flaky-1",
                    initial_concurrency=2,
                    max_concurrency=64,
                    timeout_seconds=1.0,
                    # grow on successes whatever the latency (this machine's load moves it;
                    # the latency rule has its unit test): the overload signals drive it
                    latency_tolerance=1000.0,
                )
            ],
            worker=WorkerSettings(poll_seconds=0.05, flush_seconds=0.02, max_attempts=10),
        )
        down = LiveServer(Service(settings)).start()
        try:
            prompts = flaky_prompts()
            client = down.openai()
            path = write_jsonl(
                tmp_path / "in.jsonl",
                [chat_line(f"r{i}", p, model="up") for i, p in enumerate(prompts)],
            )
            input_file = client.files.create(file=path, purpose="batch")
            batch = client.batches.create(
                input_file_id=input_file.id,
                endpoint="/v1/chat/completions",
                completion_window="24h",
            )
            limits = []  # the limit as /metrics showed it while the batch ran
            while (batch := client.batches.retrieve(batch.id)).status not in (
                "completed",
                "failed",
                "expired",
                "cancelled",
            ):
                sample = scrape(down)
                # the gauge is there once the worker has started the upstream's engine
                if 'freight_upstream_concurrency_limit{model="up"}' in sample:
                    limits.append(sample['freight_upstream_concurrency_limit{model="up"}'])
                time.sleep(0.05)
            metrics = scrape(down)
            output = output_lines(client, batch.output_file_id)
            errors = output_lines(client, batch.error_file_id)
        finally:
            down.stop()

    # every request ended exactly once: one line each, across both files
    assert batch.status == "completed"
    ended = Counter(line["custom_id"] for line in output + errors)
    assert set(ended) == {f"r{i}" for i in range(len(prompts))}
    assert set(ended.values()) == {1}
    bad = {f"r{i}" for i, p in enumerate(prompts) if p.startswith("bad")}
    # transient failures were retried until they succeeded; each answered upstream once
    assert {line["custom_id"] for line in output} == set(ended) - bad
    for line in output:
        content = line["response"]["body"]["choices"][0]["message"]["content"]
        assert content == prompts[int(line["custom_id"][1:])].upper()
    # A timed-out call's late answer is lost with its connection, so the upstream answered
    # it again; that is the only way to answer twice (on a loaded machine, calls other
    # than the `timeout` ones may time out too).
    answerable = [p for p in prompts if not p.startswith("bad")]
    assert all(upstream.answered[p] >= 1 for p in answerable)
    assert all(upstream.answered[p] >= 2 for p in prompts if p.startswith("timeout"))
    num_repeated = sum(upstream.answered[p] - 1 for p in answerable)
    # a permanent 400 is the request's own error line, with the upstream's message, not retried
    assert {line["custom_id"] for line in errors} == bad
    for line in errors:
        assert line["response"]["status_code"] == 400
        assert "not today" in line["response"]["body"]["error"]["message"]
    assert upstream.calls["bad request A"] == upstream.calls["bad request B"] == 1

    # the limit backed off on throttling, and recovered between backoffs
    assert upstream.statuses[429] > 0 and upstream.statuses[500] > 0
    assert upstream.statuses[429] < upstream.statuses[200]  # not hammered
    assert metrics['freight_upstream_backoffs_total{model="up",reason="throttled"}'] >= 2
    assert (
        metrics['freight_upstream_calls_total{model="up",outcome="throttled"}']
        == (upstream.statuses[429])
    )
    assert (
        metrics['freight_upstream_calls_total{model="up",outcome="server_error"}']
        == (upstream.statuses[500])
    )
    num_timeouts = metrics['freight_upstream_calls_total{model="up",outcome="timeout"}']
    assert 1 <= num_repeated <= num_timeouts
    assert metrics['freight_upstream_in_flight{model="up"}'] == 0
    backoffs = [
        (m[1], int(m[2]), int(m[3])) for r in caplog.records if (m := BACKOFF.search(r.message))
    ]
    assert len(backoffs) >= 2 and any(reason == "throttled" for reason, _, _ in backoffs)
    assert all(after < before or before == 1 for _, before, after in backoffs)
    recovered = [
        later_before > earlier_after
        for (_, _, earlier_after), (_, later_before, _) in itertools.pairwise(backoffs)
    ]
    assert any(recovered), backoffs  # grew again after backing off
    assert "Retry-After" in caplog.text
    # and /metrics showed the limit move while the batch ran
    assert len(set(limits)) > 1, limits


def test_real_time_request_to_an_unreachable_upstream_is_503(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path / "down",
        models=[http_model("up", f"http://127.0.0.1:{free_port()}/v1", timeout_seconds=2)],
    )
    down = LiveServer(Service(settings)).start()
    try:
        response = httpx.post(
            f"{down.base_url}/v1/chat/completions",
            json={"model": "up", "messages": [{"role": "user", "content": "hi"}]},
            timeout=30,
        )
    finally:
        down.stop()
    assert response.status_code == 503
    assert "Retry the request" in response.json()["error"]["message"]
