"""The result cache across batches, end to end through the server and the official SDK.

Echo-engine tests count the engine's own requests (what reached it) around each rule:
the estimate's exact count, projects kept apart, `"cache": false` and temperature > 0,
new weights under the same name. The real-engine test runs a small batch twice on the
session's real vLLM engine: the second is served from the store (no engine work), its
lines equal the first's, and `freight report` shows it at zero cost with its own
"served from cache" count.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from freight.config import ModelSettings, Settings
from freight.engines.metering import BATCH
from freight.service.runtime import Service
from tests.conftest import (
    CHAT_MODEL,
    LiveServer,
    chat_line,
    make_settings,
    run_cli,
    wait_for_batch,
    write_jsonl,
)
from tests.sdk import output_lines

CHAT = "/v1/chat/completions"


def echo_lines(num: int, *, start: int = 0, **body: Any) -> list[dict[str, Any]]:
    body = {"max_tokens": 4, "temperature": 0, **body}
    return [
        chat_line(f"r{i}", f"label row {i} please", model="echo", **body)
        for i in range(start, start + num)
    ]


def echo_count(server: LiveServer) -> int:
    return int(server.svc.engines.engine("echo").num_requests)


def run_batch(
    client: openai.OpenAI, path: Path, **extra: Any
) -> tuple[Any, dict[str, dict[str, Any]]]:
    uploaded = client.files.create(file=path, purpose="batch")
    created = client.batches.create(
        input_file_id=uploaded.id,
        endpoint=CHAT,
        completion_window="24h",
        extra_body=extra or None,
    )
    done = wait_for_batch(client, created.id)
    assert done.status == "completed", done
    lines = output_lines(client, done.output_file_id)
    return done, {line["custom_id"]: line for line in lines}


def estimate_hits(server: LiveServer, client: openai.OpenAI, path: Path, key: str) -> Any:
    uploaded = client.files.create(file=path, purpose="batch")
    response = httpx.post(
        f"{server.base_url}/v1/batches/estimate",
        json={"input_file_id": uploaded.id},
        headers={"authorization": f"Bearer {key}"},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    return response.json()["cache_hits"]


def served_from_cache(server: LiveServer, key: str = "test") -> int:
    text = httpx.get(
        f"{server.base_url}/metrics", headers={"authorization": f"Bearer {key}"}, timeout=30
    ).text
    found = re.search(r"^freight_results_served_from_cache_total (\S+)$", text, re.M)
    assert found is not None, "no served-from-cache counter in /metrics"
    return int(float(found[1]))


def extras(batch: Any) -> dict[str, Any]:
    return dict(batch.model_extra or {})


def test_a_second_run_is_answered_from_the_store_and_the_estimate_counts_it_exactly(
    echo_server: LiveServer, tmp_path: Path
) -> None:
    client = echo_server.openai()
    first_file = echo_lines(10) + echo_lines(2, start=10, temperature=0.5)
    first, first_out = run_batch(client, write_jsonl(tmp_path / "first.jsonl", first_file))
    assert echo_count(echo_server) == 12 and extras(first)["cache"] is True

    # the second file: 6 rows unchanged, 4 changed, the 2 sampled ones again, 1 new, and a
    # duplicate of an unchanged row under a new custom_id (its key ignores custom_id)
    second_file = (
        echo_lines(6)
        + [
            chat_line(f"r{i}", f"changed row {i}", model="echo", max_tokens=4, temperature=0)
            for i in range(6, 10)
        ]
        + echo_lines(2, start=10, temperature=0.5)
        + [chat_line("new", "a new row", model="echo", max_tokens=4, temperature=0)]
        + [{**echo_lines(1)[0], "custom_id": "copy-of-r0"}]
    )
    path = write_jsonl(tmp_path / "second.jsonl", second_file)
    # counted independently: a line is answered when an identical body (same endpoint,
    # model) succeeded in the first run and is deterministic (temperature 0)
    first_bodies = {json.dumps(x["body"], sort_keys=True) for x in first_file}
    independent = sum(
        1
        for x in second_file
        if x["body"].get("temperature") == 0
        and json.dumps(x["body"], sort_keys=True) in first_bodies
    )
    assert independent == 7
    assert estimate_hits(echo_server, client, path, "test") == independent

    before_engine, before_metric = echo_count(echo_server), served_from_cache(echo_server)
    second, second_out = run_batch(client, path)
    assert echo_count(echo_server) - before_engine == len(second_file) - independent
    assert served_from_cache(echo_server) - before_metric == independent
    assert extras(second)["cache"] is True
    for custom_id in ("r0", "r5", "copy-of-r0"):
        source = "r0" if custom_id == "copy-of-r0" else custom_id
        # the original's response body, its usage included
        assert second_out[custom_id]["response"]["body"] == first_out[source]["response"]["body"]
    assert second_out["r0"]["response"]["body"]["usage"]["completion_tokens"] > 0
    # the dashboard shows the served-from-cache figure, on the batch and the cost page
    with httpx.Client(base_url=echo_server.base_url) as browser:
        signed = browser.post("/ui/login", data={"api_key": "sk-test"})
        assert signed.status_code == 303
        page = browser.get(f"/ui/batches/{second.id}").text
        assert f'data-field="num_from_cache">{independent}<' in page
        cost = browser.get("/ui/cost").text
        assert f'data-field="total-from-cache">{independent}<' in cost
    # cached lines cost nothing: the batch's usage counts only what the engine ran
    assert second.usage.output_tokens == sum(
        second_out[c]["response"]["body"]["usage"]["completion_tokens"]
        for c in ("r6", "r7", "r8", "r9", "r10", "r11", "new")
    )


def test_cache_false_and_a_sampled_request_always_reach_the_engine(
    echo_server: LiveServer, tmp_path: Path
) -> None:
    client = echo_server.openai()
    greedy = write_jsonl(tmp_path / "greedy.jsonl", echo_lines(5))
    sampled = write_jsonl(tmp_path / "sampled.jsonl", echo_lines(5, temperature=0.7))
    no_temperature = write_jsonl(
        tmp_path / "default.jsonl",
        [chat_line(f"d{i}", f"row {i}", model="echo", max_tokens=4) for i in range(5)],
    )
    for path in (greedy, sampled, no_temperature):
        run_batch(client, path)
    assert echo_count(echo_server) == 15

    off, _ = run_batch(client, greedy, cache=False)
    assert extras(off)["cache"] is False
    assert echo_count(echo_server) == 20  # cache: false runs every request
    run_batch(client, sampled)
    run_batch(client, no_temperature)  # chat's default temperature is 1: not cached
    assert echo_count(echo_server) == 30
    run_batch(client, greedy)
    assert echo_count(echo_server) == 30  # the same greedy file, cache on: all answered


def test_a_hit_never_crosses_projects(echo_server: LiveServer, tmp_path: Path) -> None:
    svc = echo_server.svc
    _, alpha_key = svc.keys.create("alpha")
    _, beta_key = svc.keys.create("beta")
    alpha = openai.OpenAI(base_url=f"{echo_server.base_url}/v1", api_key=alpha_key)
    beta = openai.OpenAI(base_url=f"{echo_server.base_url}/v1", api_key=beta_key)
    path = write_jsonl(tmp_path / "same.jsonl", echo_lines(4))

    run_batch(alpha, path)
    assert echo_count(echo_server) == 4
    assert estimate_hits(echo_server, beta, path, beta_key) == 0
    assert estimate_hits(echo_server, alpha, path, alpha_key) == 4
    run_batch(beta, path)
    assert echo_count(echo_server) == 8  # beta's identical requests ran on the engine
    run_batch(alpha, path)
    run_batch(beta, path)
    assert echo_count(echo_server) == 8  # each project answered from its own


def echo_with_weights(home: Path, folder: Path) -> Settings:
    return make_settings(home, models=[ModelSettings(name="echo", engine="echo", path=folder)])


def test_a_model_registered_with_new_weights_under_the_same_name_misses(
    tmp_path: Path,
) -> None:
    weights_home = tmp_path / "home"
    old, new = tmp_path / "weights-old", tmp_path / "weights-new"
    for folder, content in ((old, b"old weights"), (new, b"new weights, other size")):
        folder.mkdir()
        (folder / "model.safetensors").write_bytes(content)
    path = write_jsonl(tmp_path / "in.jsonl", echo_lines(3))

    server = LiveServer(Service(echo_with_weights(weights_home, old))).start()
    try:
        client = server.openai()
        run_batch(client, path)
        run_batch(client, path)
        assert echo_count(server) == 3  # the second run was answered from the store
    finally:
        server.stop()
    server = LiveServer(Service(echo_with_weights(weights_home, new))).start()
    try:
        client = server.openai()
        assert estimate_hits(server, client, path, "test") == 0
        run_batch(client, path)
        assert echo_count(server) == 3  # new weights: every request ran again
    finally:
        server.stop()


# --- the real engine ----------------------------------------------------------------------


PRICES = {"FREIGHT_PRICING__INPUT_PRICE": "1.0", "FREIGHT_PRICING__OUTPUT_PRICE": "2.0"}


def batch_totals(home: Path) -> dict[str, Any]:
    """`freight report --json`'s batch rows added up (real-time rows come from the engine
    meter, which other tests' traffic moves)."""
    result = run_cli("report", "--home", str(home), "--json", env=PRICES, check=True)
    rows = [r for r in json.loads(result.stdout)["rows"] if r["kind"] == "batch"]
    names = ("num_requests", "num_from_cache", "input_tokens", "output_tokens")
    totals: dict[str, Any] = {name: sum(r[name] for r in rows) for name in names}
    for money in ("batch_cost", "realtime_cost"):
        totals[money] = round(sum(r[money] for r in rows), 9)
    return totals


@pytest.mark.slow
def test_a_batch_run_twice_on_the_real_engine_is_served_from_cache_at_zero_cost(
    real_server: LiveServer, tmp_path: Path
) -> None:
    client = real_server.openai()
    questions = ["Name a colour.", "Say yes or no.", "Name a fruit.", "Count to two."]
    lines = [
        chat_line(f"q{i}", f"{q} (result cache test)", max_tokens=8, temperature=0)
        for i, q in enumerate(questions)
    ]
    path = write_jsonl(tmp_path / "twice.jsonl", lines)
    meter = real_server.svc.engines.meter
    home = real_server.svc.settings.home

    first, first_out = run_batch(client, path)
    assert first.usage.output_tokens > 0
    assert estimate_hits(real_server, client, path, "test") == len(lines)
    before = batch_totals(home)
    assert before["batch_cost"] > 0
    engine_before = meter.totals[(CHAT_MODEL, BATCH)].num_requests
    metric_before = served_from_cache(real_server)

    second, second_out = run_batch(client, path)
    assert served_from_cache(real_server) - metric_before == len(lines)
    assert meter.totals[(CHAT_MODEL, BATCH)].num_requests == engine_before  # no engine work
    assert extras(second)["cache"] is True
    assert second.usage is None  # no engine tokens of its own (the view's usage for none)
    for custom_id, line in first_out.items():
        assert second_out[custom_id]["response"]["body"] == line["response"]["body"]

    after = batch_totals(home)
    assert after["num_requests"] - before["num_requests"] == len(lines)
    assert after["num_from_cache"] - before["num_from_cache"] == len(lines)
    for column in ("input_tokens", "output_tokens", "batch_cost", "realtime_cost"):
        assert after[column] == before[column], column  # served from cache: zero cost
