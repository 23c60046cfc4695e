"""Estimates end to end: POST /v1/batches/estimate, `freight estimate`, a batch's
`expected_completion_at` and the dashboard, against the echo engine; then once against
the real engine, the estimate beside what the run took.

The real-engine test states its factors: the expected duration within DURATION_FACTOR
of the run's, and the expected output tokens within TOKENS_FACTOR (README, Estimates).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from freight.config import ModelSettings, Settings
from freight.engines.pool import EnginePool
from freight.engines.registry import Registry
from freight.service.runtime import Service
from freight.usage.recorder import UsageRecorder
from tests.conftest import (
    CHAT_MODEL,
    LiveServer,
    chat_line,
    make_settings,
    run_cli,
    wait_for_batch,
    write_jsonl,
)
from tests.spec import assert_matches

DURATION_FACTOR = 3.0
TOKENS_FACTOR = 1.5
ECHO_TOML = '[[models]]\nname = "echo"\nengine = "echo"\n'


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """The echo engine takes a little time per request, so its throughput is measurable."""
    return make_settings(
        tmp_path / "home", models=[ModelSettings(name="echo", engine="echo", delay_seconds=0.005)]
    )


def estimate(server: LiveServer, body: dict[str, Any], key: str = "test") -> httpx.Response:
    return httpx.post(
        f"{server.base_url}/v1/batches/estimate",
        json=body,
        headers={"authorization": f"Bearer {key}"},
        timeout=120,
    )


def record_usage(server: LiveServer) -> None:
    """Write what the engine meter accrued to the store now (the recorder does every 10 s)."""
    svc = server.svc
    server.run_in_loop(UsageRecorder(svc.db, svc.engines.meter, every_seconds=60).record())


def echo_lines(num: int, *, max_tokens: int | None = 3) -> list[dict[str, Any]]:
    extra = {} if max_tokens is None else {"max_tokens": max_tokens}
    return [
        chat_line(f"r{i}", " ".join(f"w{j}" for j in range(i + 2)), model="echo", **extra)
        for i in range(num)
    ]


def run_batch(server: LiveServer, path: Path) -> Any:
    client = server.openai()
    uploaded = client.files.create(file=path, purpose="batch")
    batch = client.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    return wait_for_batch(client, batch.id)


def test_the_estimate_counts_a_file_then_learns_from_this_deployments_runs(
    echo_server: LiveServer, tmp_path: Path
) -> None:
    lines = echo_lines(10) + echo_lines(12, max_tokens=None)[10:]
    path = write_jsonl(tmp_path / "in.jsonl", lines)
    client = echo_server.openai()
    uploaded = client.files.create(file=path, purpose="batch")

    first = estimate(echo_server, {"input_file_id": uploaded.id})
    assert first.status_code == 200, first.text
    before = first.json()
    words = sum(len(x["body"]["messages"][0]["content"].split()) for x in lines)
    assert before["object"] == "batch.estimate"
    assert (before["num_requests"], before["model"]) == (12, "echo")
    assert before["prompt_tokens"]["total"] == words
    assert before["prompt_tokens"]["method"] == "whitespace"
    out = before["output_tokens"]
    context = out["context_length"]
    no_limit = [len(x["body"]["messages"][0]["content"].split()) for x in lines[10:]]
    assert out["ceiling"] == 10 * 3 + sum(context - n for n in no_limit)
    assert out["num_requests_without_max_tokens"] == 2
    assert (out["expected_basis"], out["num_past_requests"]) == ("ceiling", 0)
    assert before["duration"]["expected_seconds"] is None  # nothing measured yet
    assert before["cache_hits"] == 0 and before["cache_note"]  # sampled: never cached

    done = run_batch(echo_server, write_jsonl(tmp_path / "capped.jsonl", echo_lines(10)))
    assert done.status == "completed"
    record_usage(echo_server)

    after = estimate(echo_server, {"input_file_id": uploaded.id}).json()
    out = after["output_tokens"]
    assert (out["expected_basis"], out["num_past_requests"]) == ("history", 10)
    mean = done.usage.output_tokens / 10
    assert out["mean_per_past_request"] == pytest.approx(mean, abs=1e-3)
    assert out["expected"] == round(10 * min(mean, 3) + 2 * mean)
    assert after["duration"]["tokens_per_second"] > 0
    assert after["duration"]["expected_seconds"] > 0
    assert after["duration"]["expected_completion_at"] >= after["created_at"]

    by_batch = estimate(echo_server, {"batch_id": done.id}).json()
    assert by_batch["num_requests"] == 10 and by_batch["endpoint"] == "/v1/chat/completions"

    # with history, a new batch is created with its expected completion
    raw = httpx.post(
        f"{echo_server.base_url}/v1/batches",
        json={
            "input_file_id": uploaded.id,
            "endpoint": "/v1/chat/completions",
            "completion_window": "24h",
        },
    ).json()
    assert_matches("Batch", raw)
    assert isinstance(raw["expected_completion_at"], int)
    assert raw["expected_completion_at"] >= raw["created_at"]
    ended = wait_for_batch(client, raw["id"])
    assert ended.model_extra is not None and "expected_completion_at" in ended.model_extra


def test_an_invalid_file_gets_the_errors_that_creating_its_batch_gets(
    echo_server: LiveServer, tmp_path: Path
) -> None:
    lines = [
        chat_line("a", "x", model="echo"),
        "{broken",
        chat_line("a", "y", model="echo"),
        chat_line("b", "z", model="no-such-model"),
    ]
    path = write_jsonl(tmp_path / "bad.jsonl", lines)
    client = echo_server.openai()
    uploaded = client.files.create(file=path, purpose="batch")
    batch = client.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    failed = wait_for_batch(client, batch.id)
    assert failed.status == "failed" and failed.errors is not None

    response = estimate(echo_server, {"input_file_id": uploaded.id})
    assert response.status_code == 400
    error = response.json()["error"]
    expected = [e.model_dump() for e in failed.errors.data]
    assert error["errors"] == expected
    assert [e["line"] for e in expected] == [2, 3, 4]
    assert error["type"] == "invalid_request_error" and error["code"] == "invalid_json_line"
    assert "line 2" in error["message"] and "2 more problems" in error["message"]


def test_estimate_requests_are_checked_and_see_only_the_callers_files(
    echo_server: LiveServer, tmp_path: Path
) -> None:
    _, alpha = echo_server.svc.keys.create("alpha")
    _, beta = echo_server.svc.keys.create("beta")
    path = write_jsonl(tmp_path / "in.jsonl", echo_lines(3))
    files = httpx.post(
        f"{echo_server.base_url}/v1/files",
        headers={"authorization": f"Bearer {alpha}"},
        data={"purpose": "batch"},
        files={"file": ("in.jsonl", path.read_bytes())},
    ).json()
    assert estimate(echo_server, {"input_file_id": files["id"]}, alpha).status_code == 200
    hidden = estimate(echo_server, {"input_file_id": files["id"]}, beta)
    assert hidden.status_code == 404 and hidden.json()["error"]["param"] == "input_file_id"
    assert estimate(echo_server, {"input_file_id": files["id"]}, "wrong").status_code == 401
    both = estimate(echo_server, {"input_file_id": files["id"], "batch_id": "b"}, alpha)
    assert both.status_code == 400 and "exactly one" in both.json()["error"]["message"]
    assert estimate(echo_server, {}, alpha).status_code == 400
    missing = estimate(echo_server, {"batch_id": "batch_nope"}, alpha)
    assert missing.status_code == 404 and missing.json()["error"]["param"] == "batch_id"
    wrong_url = estimate(echo_server, {"input_file_id": files["id"], "endpoint": "/v1/nope"}, alpha)
    assert wrong_url.status_code == 400 and wrong_url.json()["error"]["param"] == "endpoint"
    unknown = estimate(echo_server, {"input_file_id": files["id"], "extra": 1}, alpha)
    assert unknown.status_code == 400 and "extra" in unknown.json()["error"]["message"]


def test_the_dashboard_shows_the_expected_completion_beside_the_progress_bar(
    echo_server: LiveServer, tmp_path: Path
) -> None:
    done = run_batch(echo_server, write_jsonl(tmp_path / "in.jsonl", echo_lines(4)))
    with httpx.Client(base_url=echo_server.base_url) as browser:
        assert browser.post("/ui/login", data={"api_key": "sk-test"}).status_code == 303
        page = browser.get(f"/ui/batches/{done.id}")
        assert page.status_code == 200
        assert "was expected to end" in page.text
        assert 'data-field="expected_completion"' in page.text
        progress = browser.get("/ui/progress", params={"ids": done.id}).json()
        assert "expected_completion" in progress["batches"][done.id]


def test_the_cli_estimates_a_file_and_a_table_from_the_deployments_store(
    echo_server: LiveServer, tmp_path: Path
) -> None:
    home = echo_server.svc.settings.home
    (home / "freight.toml").write_text(ECHO_TOML)
    run_batch(echo_server, write_jsonl(tmp_path / "history.jsonl", echo_lines(6)))
    record_usage(echo_server)
    path = write_jsonl(tmp_path / "in.jsonl", echo_lines(5))
    uploaded = echo_server.openai().files.create(file=path, purpose="batch")
    api = estimate(echo_server, {"input_file_id": uploaded.id}).json()

    done = run_cli("estimate", str(path), "--home", str(home), "--json")
    assert done.returncode == 0, done.stderr
    cli = json.loads(done.stdout)
    for part in ("num_requests", "prompt_tokens", "output_tokens", "model", "endpoint"):
        assert cli[part] == api[part], part
    assert cli["duration"]["tokens_per_second"] == api["duration"]["tokens_per_second"]

    shown = run_cli("estimate", str(path), "--home", str(home))
    assert shown.returncode == 0, shown.stderr
    assert "prompt tokens" in shown.stdout and "output tokens, expected" in shown.stdout

    table = tmp_path / "reviews.csv"
    table.write_text("text\ngreat product\nbroken on arrival\nfine I guess\n")
    rows = run_cli(
        "estimate",
        str(table),
        "--prompt",
        "Label: {{ text }}",
        "--model",
        "echo",
        "--max-tokens",
        "4",
        "--home",
        str(home),
        "--json",
    )
    assert rows.returncode == 0, rows.stderr
    counted = json.loads(rows.stdout)
    assert counted["num_requests"] == 3
    assert counted["prompt_tokens"]["total"] == 3 + 4 + 4  # "Label:" and the text's words
    assert counted["output_tokens"]["ceiling"] == 3 * 4

    bad = write_jsonl(tmp_path / "bad.jsonl", [chat_line("a", "x", model="echo"), "{broken"])
    refused = run_cli("estimate", str(bad), "--home", str(home))
    assert refused.returncode == 2
    assert "invalid_json_line" in refused.stderr and "line 2" in refused.stderr


# --- the real engine ---------------------------------------------------------------------------


@pytest.fixture
def fresh_store_server(real_server: LiveServer, tmp_path: Path) -> Iterator[LiveServer]:
    """The session's vLLM engine behind a server with its own store and its own engine
    meter: the history, throughput and queue this test sees are its own."""
    engine = real_server.svc.engines.engine(CHAT_MODEL)
    assert engine is not None
    settings = make_settings(tmp_path / "home")
    pool = EnginePool(settings, Registry(settings))
    pool.add(engine.engine)  # type: ignore[union-attr]  # the MeteredEngine's engine
    server = LiveServer(Service(settings, engines=pool)).start()
    yield server
    server.stop()


TOPICS = [
    "rivers", "mountains", "bread", "trains", "owls", "copper", "tea", "snow",
    "bridges", "violins", "maps", "bees", "lanterns", "tides", "clocks", "ferns",
    "kites", "salt", "glass", "wolves", "paper", "comets", "honey", "islands",
    "ink", "caves", "sails", "lemons", "storms", "candles", "deserts", "wheels",
]  # fmt: skip


def real_lines(topics: list[str]) -> list[dict[str, Any]]:
    return [
        chat_line(t, f"Write two sentences about {t}.", max_tokens=48, temperature=0)
        for t in topics
    ]


@pytest.mark.slow
def test_the_estimate_is_within_its_stated_factors_of_a_real_run(
    fresh_store_server: LiveServer, tmp_path: Path
) -> None:
    server = fresh_store_server
    # history: 16 requests like the ones to estimate (other topics)
    warm = run_batch(server, write_jsonl(tmp_path / "warm.jsonl", real_lines(TOPICS[:16])))
    assert warm.status == "completed"
    record_usage(server)

    path = write_jsonl(tmp_path / "in.jsonl", real_lines(TOPICS[16:]))
    client = server.openai()
    uploaded = client.files.create(file=path, purpose="batch")
    expected = estimate(server, {"input_file_id": uploaded.id}).json()
    assert expected["output_tokens"]["expected_basis"] == "history"
    assert expected["duration"]["expected_seconds"] is not None

    started = time.monotonic()
    batch = client.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    assert batch.model_extra is not None and batch.model_extra["expected_completion_at"]
    done = wait_for_batch(client, batch.id)
    took = time.monotonic() - started
    assert done.status == "completed" and done.usage is not None

    # the exact part: what the engine counted is what the estimate counted
    assert expected["prompt_tokens"]["total"] == done.usage.input_tokens
    assert done.usage.output_tokens <= expected["output_tokens"]["ceiling"]
    tokens_ratio = expected["output_tokens"]["expected"] / done.usage.output_tokens
    assert 1 / TOKENS_FACTOR <= tokens_ratio <= TOKENS_FACTOR, (expected, done.usage)
    seconds_ratio = expected["duration"]["expected_seconds"] / took
    assert 1 / DURATION_FACTOR <= seconds_ratio <= DURATION_FACTOR, (expected["duration"], took)
