"""The real vLLM engine failing under a batch: killed mid-batch, or asked past its context.

- The engine's core process is SIGKILLed while batch requests run inside it: the pool
  notices the dead engine, starts a new one, the requests that were inside are retried,
  the retries show in /metrics (and the log), and the batch completes, each line once.
- A request whose max_tokens does not fit the context length is permanent: one 400 line
  naming the limit, never retried.
"""

from __future__ import annotations

import collections
import json
import os
import re
import signal
import time

import httpx
import psutil
import pytest
import sqlalchemy as sa

from freight.store.schema import requests as requests_table
from tests.conftest import CHAT_MODEL, LiveServer, chat_line, wait_for_batch
from tests.sdk import output_lines

# Two engine starts (the session's, then the replacement): minutes on a busy 2-core machine.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]


def metric(server: LiveServer, name: str) -> float:
    text = httpx.get(f"{server.base_url}/metrics").text
    match = re.search(rf"^{re.escape(name)} ([0-9.e+]+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def engine_core(server: LiveServer) -> psutil.Process:
    """The EngineCore process of the server's engine (as recorded for the reaper)."""
    run_dir = server.svc.settings.run_dir
    (record,) = run_dir.glob(f"engine-{os.getpid()}-{CHAT_MODEL}.json")
    for identity in json.loads(record.read_text())["children"]:
        proc = psutil.Process(identity["pid"])
        if "EngineCore" in " ".join(proc.cmdline()) or "EngineCore" in proc.name():
            return proc
    raise AssertionError("no EngineCore process among the engine's children")


def test_engine_killed_mid_batch_is_restarted_and_its_requests_retried(
    real_server: LiveServer,
) -> None:
    client = real_server.openai(max_retries=0)
    lines = [
        chat_line(f"k{i}", f"Count from {i} to {i + 20}.", max_tokens=24, temperature=0)
        for i in range(24)
    ]
    raw = "".join(json.dumps(line) + "\n" for line in lines).encode()
    retries_before = metric(real_server, "freight_retries_total")
    uploaded = client.files.create(file=("kill.jsonl", raw), purpose="batch")
    batch = client.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    victim = engine_core(real_server)
    worker = real_server.svc.worker
    assert worker is not None
    deadline = time.monotonic() + 300
    while worker.num_in_flight == 0:
        assert time.monotonic() < deadline, "no request reached the engine"
        time.sleep(0.02)
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=30)

    batch = wait_for_batch(client, batch.id, timeout=1500)
    assert batch.status == "completed"
    assert batch.request_counts.completed == len(lines) and batch.request_counts.failed == 0
    output = output_lines(client, batch.output_file_id)
    seen = collections.Counter(line["custom_id"] for line in output)
    assert set(seen) == {line["custom_id"] for line in lines} and max(seen.values()) == 1
    assert all(line["response"]["status_code"] == 200 for line in output)

    # The requests that were inside the dead engine ran again, and were counted.
    with real_server.svc.db.read() as conn:
        attempts = list(
            conn.execute(
                sa.select(requests_table.c.attempts).where(requests_table.c.batch_id == batch.id)
            ).scalars()
        )
    assert max(attempts) >= 2
    assert metric(real_server, "freight_retries_total") > retries_before
    restarts = f'freight_engine_restarts_total{{model="{CHAT_MODEL}"}}'
    assert metric(real_server, restarts) >= 1
    health = httpx.get(f"{real_server.base_url}/health").json()
    assert health["engine_restarts"][CHAT_MODEL] >= 1 and CHAT_MODEL in health["engines"]
    # The new engine serves real-time requests too.
    reply = client.chat.completions.create(
        model=CHAT_MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=4
    )
    assert reply.choices[0].message.content


@pytest.mark.parametrize(
    ("room", "is_accepted"), [(-1, True), (0, True), (1, False)], ids=["below", "at", "above"]
)
def test_max_tokens_against_the_context_length(
    real_server: LiveServer, room: int, is_accepted: bool
) -> None:
    """prompt + max_tokens below, at and one above the context length (2048 tokens)."""
    client = real_server.openai(max_retries=0)
    prompt = "hello " * 1950  # near the context, so the room left is a few tokens
    measured = client.chat.completions.create(
        model=CHAT_MODEL, messages=[{"role": "user", "content": prompt}], max_tokens=1
    )
    num_prompt = measured.usage.prompt_tokens
    max_model_len = real_server.svc.settings.engine.max_model_len
    max_tokens = max_model_len - num_prompt + room
    line = chat_line("ctx", prompt, max_tokens=max_tokens, temperature=0, stop=["hello"])
    raw = (json.dumps(line) + "\n").encode()
    retries_before = metric(real_server, "freight_retries_total")
    uploaded = client.files.create(file=("ctx.jsonl", raw), purpose="batch")
    batch = client.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    batch = wait_for_batch(client, batch.id, timeout=600)
    assert batch.status == "completed"
    if is_accepted:
        (out,) = output_lines(client, batch.output_file_id)
        assert out["response"]["status_code"] == 200
        return
    (err,) = output_lines(client, batch.error_file_id)
    assert err["response"]["status_code"] == 400
    error = err["response"]["body"]["error"]
    assert error["code"] == "context_length_exceeded"
    assert error["message"] == (
        f"This model's maximum context length is {max_model_len} tokens. The prompt has "
        f"{num_prompt} tokens, and {max_tokens} were asked for in the completion. "
        "Shorten the prompt or lower max_tokens."
    )
    with real_server.svc.db.read() as conn:
        (attempts,) = conn.execute(
            sa.select(requests_table.c.attempts).where(requests_table.c.batch_id == batch.id)
        ).scalars()
    assert attempts == 1  # permanent: not retried
    assert metric(real_server, "freight_retries_total") == retries_before
