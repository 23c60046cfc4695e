"""GET /metrics scraped while a batch runs: the counters move, the names follow Prometheus."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from freight.config import DEFAULT_EMBEDDING_MODEL, WorkerSettings
from freight.engines.echo import EchoEngine
from freight.engines.pool import EnginePool
from freight.engines.registry import Registry
from freight.service.runtime import Service
from freight.usage import report
from tests.conftest import (
    CHAT_MODEL,
    LiveServer,
    chat_line,
    make_settings,
    wait_for_batch,
    write_jsonl,
)
from tests.waiting import wait_until

NAME = re.compile(r"^freight_[a-z][a-z0-9_]*$")


@pytest.fixture
def slow_echo_server(tmp_path: Path) -> Iterator[LiveServer]:
    """A server whose echo engine takes 20 ms a request, 4 at a time: a batch runs for seconds."""
    settings = make_settings(
        tmp_path / "home",
        worker=WorkerSettings(poll_seconds=0.05, flush_seconds=0.02, max_in_flight=4),
    )
    pool = EnginePool(settings, Registry(settings))
    pool.add(EchoEngine("echo", delay_seconds=0.02))
    server = LiveServer(Service(settings, engines=pool)).start()
    yield server
    server.stop()


def scrape(server: LiveServer) -> dict[str, float]:
    """Every sample as 'name{label="value",...}' -> value."""
    response = httpx.get(f"{server.base_url}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}"] = sample.value
    return samples


def test_metric_names_follow_prometheus_conventions(slow_echo_server: LiveServer) -> None:
    response = httpx.get(f"{slow_echo_server.base_url}/metrics")
    families = list(text_string_to_metric_families(response.text))
    names = {f.name: f.type for f in families}
    for name, kind in names.items():
        assert NAME.match(name), name
        if kind == "histogram":
            assert name.endswith("_seconds"), name
        if kind == "gauge":
            assert not name.endswith("_total"), name
    for family in families:
        for sample in family.samples:
            if family.type == "counter" and not sample.name.endswith("_created"):
                assert sample.name.endswith("_total"), sample.name
            assert NAME.match(sample.name), sample.name
    expected = {
        "freight_queue_depth": "gauge",
        "freight_batches": "gauge",
        "freight_requests_in_flight": "gauge",
        "freight_prompt_tokens": "counter",
        "freight_generation_tokens": "counter",
        "freight_engine_requests": "counter",
        "freight_engine_busy_seconds": "counter",
        "freight_engine_up_seconds": "counter",
        "freight_engine_utilization_ratio": "gauge",
        "freight_request_duration_seconds": "histogram",
        "freight_time_to_first_token_seconds": "histogram",
        "freight_retries": "counter",
    }
    for name, kind in expected.items():
        assert names.get(name) == kind, (name, names.get(name))


def test_counters_move_while_a_batch_runs(slow_echo_server: LiveServer, tmp_path: Path) -> None:
    client = slow_echo_server.openai()
    lines = [chat_line(f"r{i}", f"count words {i} now", model="echo") for i in range(300)]
    with write_jsonl(tmp_path / "in.jsonl", lines).open("rb") as fh:
        uploaded = client.files.create(file=fh, purpose="batch")
    batch = client.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    tokens = 'freight_generation_tokens_total{kind="batch",model="echo"}'
    requests_done = 'freight_engine_requests_total{kind="batch",model="echo"}'
    duration = 'freight_request_duration_seconds_count{kind="batch",model="echo"}'
    queued = 'freight_queue_depth{priority="batch"}'
    first = wait_until(
        lambda: (sample := scrape(slow_echo_server)).get(tokens, 0) > 0 and sample,
        what="tokens counted",
    )
    assert first['freight_batches{status="in_progress"}'] == 1
    assert first[queued] > 0

    def moved_on() -> dict[str, float] | None:
        sample = scrape(slow_echo_server)
        grew = all(sample[name] > first[name] for name in (tokens, requests_done, duration))
        return sample if grew and sample[queued] < first[queued] else None

    second = wait_until(moved_on, what="the counters to move on")
    assert second['freight_batches{status="in_progress"}'] == 1  # in the same scrape: running
    assert second['freight_engine_busy_seconds_total{kind="batch",model="echo"}'] > 0
    assert second['freight_requests_in_flight{kind="batch",model="echo"}'] <= 4
    assert 0 < second['freight_engine_utilization_ratio{model="echo"}'] <= 1

    done = wait_for_batch(client, batch.id, timeout=120)
    assert done.status == "completed"
    final = scrape(slow_echo_server)
    assert final[tokens] == done.usage.output_tokens
    assert final['freight_prompt_tokens_total{kind="batch",model="echo"}'] == (
        done.usage.input_tokens
    )
    assert final[requests_done] == 300
    assert final[queued] == 0
    assert final['freight_batches{status="completed"}'] == 1
    assert final["freight_retries_total{}"] == 0


@pytest.mark.slow
def test_real_engine_batch_moves_the_metrics(real_server: LiveServer, tmp_path: Path) -> None:
    before = scrape(real_server)
    client = real_server.openai()
    lines = [chat_line(f"r{i}", f"Name a colour {i}.", max_tokens=8) for i in range(6)]
    with write_jsonl(tmp_path / "in.jsonl", lines).open("rb") as fh:
        uploaded = client.files.create(file=fh, purpose="batch")
    batch = client.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    done = wait_for_batch(client, batch.id)
    assert done.status == "completed"
    after = scrape(real_server)
    key = f'kind="batch",model="{CHAT_MODEL}"'
    generated = after[f"freight_generation_tokens_total{{{key}}}"] - before.get(
        f"freight_generation_tokens_total{{{key}}}", 0
    )
    assert generated == done.usage.output_tokens > 0
    assert after[f"freight_engine_busy_seconds_total{{{key}}}"] > before.get(
        f"freight_engine_busy_seconds_total{{{key}}}", 0
    )
    assert after[f"freight_request_duration_seconds_count{{{key}}}"] >= 6

    stream = client.chat.completions.create(
        model=CHAT_MODEL,
        messages=[{"role": "user", "content": "Say hello."}],
        max_tokens=8,
        stream=True,
    )
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices).strip()
    realtime = scrape(real_server)
    rt_key = f'kind="realtime",model="{CHAT_MODEL}"'
    assert realtime[f"freight_time_to_first_token_seconds_count{{{rt_key}}}"] >= 1
    assert realtime[f"freight_generation_tokens_total{{{rt_key}}}"] > 0
    assert realtime[f"freight_engine_busy_seconds_total{{{rt_key}}}"] > 0
    # and the recorder writes both kinds to the store, where `freight report` finds them
    svc = real_server.svc

    def both_kinds_recorded() -> report.Report | None:
        result = report.build(svc.db, svc.settings, since=int(time.time()) - 86_400)
        kinds = {(r.kind, r.project) for r in result.rows if r.model == CHAT_MODEL}
        return result if {("batch", "default"), ("realtime", "*")} <= kinds else None

    result = wait_until(both_kinds_recorded, timeout=60, interval=0.2)
    realtime_row = next(r for r in result.rows if r.kind == "realtime")
    assert realtime_row.num_requests >= 1 and realtime_row.output_tokens > 0
    assert realtime_row.tokens_per_second and realtime_row.utilization


def test_real_time_requests_are_metered_apart_from_batch_work(
    slow_echo_server: LiveServer,
) -> None:
    client = slow_echo_server.openai()
    reply = client.chat.completions.create(
        model="echo", messages=[{"role": "user", "content": "one two three"}]
    )
    assert reply.choices[0].message.content == "one two three"
    stream = client.chat.completions.create(
        model="echo", messages=[{"role": "user", "content": "four five"}], stream=True
    )
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "four five"
    metrics = scrape(slow_echo_server)
    key = 'kind="realtime",model="echo"'
    assert metrics[f"freight_engine_requests_total{{{key}}}"] == 2
    assert metrics[f"freight_generation_tokens_total{{{key}}}"] == 5
    assert metrics[f"freight_time_to_first_token_seconds_count{{{key}}}"] == 1  # the stream
    assert metrics[f"freight_request_duration_seconds_count{{{key}}}"] == 2
    assert metrics['freight_queue_depth{priority="realtime"}'] == 0
    assert metrics.get('freight_engine_requests_total{kind="batch",model="echo"}', 0) == 0


def test_embeddings_are_metered_by_their_input_tokens(echo_server: LiveServer) -> None:
    client = echo_server.openai()
    result = client.embeddings.create(
        model=DEFAULT_EMBEDDING_MODEL, input=["metered text one", "and two"]
    )
    metrics = scrape(echo_server)
    key = f'kind="realtime",model="{DEFAULT_EMBEDDING_MODEL}"'
    assert metrics[f"freight_prompt_tokens_total{{{key}}}"] == result.usage.prompt_tokens > 0
    assert metrics[f"freight_generation_tokens_total{{{key}}}"] == 0
    assert metrics[f"freight_engine_requests_total{{{key}}}"] == 1
