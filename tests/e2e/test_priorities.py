"""Batch priorities and deadlines end to end (a Freight extension): `priority` at create
through the `openai` SDK's `extra_body`, its bound, the order batches run in, and
`at_risk` on the batch object and on /metrics.

The order is shown by when lines land (the store's `finished_at` of each request), never
by timings: on the session's real engine with the worker's window cut to WINDOW requests,
so that each batch is several windows long. Fair share between projects beside priorities
runs on the echo engine (a second project needs API keys, which the session's shared
server must not get); the policy itself is unit-tested in tests/unit/test_priority_policy.py.
"""

from __future__ import annotations

import io
import json
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import sqlalchemy as sa

from freight.config import ModelSettings, QuotaLimits, QuotaSettings, WorkerSettings
from freight.engines.metering import BATCH
from freight.service.runtime import Service
from freight.store import batches
from freight.store.schema import requests
from tests.conftest import LiveServer, chat_line, make_settings, run_cli, wait_for_batch
from tests.sdk import assert_round_trip
from tests.seed import add_engine_time

WINDOW = 8  # batch requests in the engine at once
NUM_LINES = 24  # three windows per batch: two of the low one's are left when high comes


def finish_times(server: LiveServer, batch_id: str) -> list[float]:
    """When each of the batch's lines landed, in order."""
    with server.svc.db.read() as conn:
        query = sa.select(requests.c.finished_at).where(requests.c.batch_id == batch_id)
        return sorted(float(t) for t in conn.execute(query).scalars())


def upload(client: openai.OpenAI, name: str, lines: list[dict[str, Any]]) -> str:
    data = "".join(json.dumps(line) + "\n" for line in lines).encode()
    return client.files.create(file=(f"{name}.jsonl", io.BytesIO(data)), purpose="batch").id


def create(
    client: openai.OpenAI, file_id: str, *, window: str = "24h", priority: int | None = None
) -> Any:
    # The cache off: these batches ask the same questions, and an answer served from an
    # earlier batch's would land at once, whatever the batch's priority or deadline.
    extra: dict[str, Any] = {"cache": False}
    if priority is not None:
        extra["priority"] = priority
    return client.batches.create(
        input_file_id=file_id,
        endpoint="/v1/chat/completions",
        completion_window=window,
        extra_body=extra,
    )


def real_lines(name: str) -> list[dict[str, Any]]:
    return [
        chat_line(f"{name}-{i}", f"Count from {i} to {i + 20}.", max_tokens=12, temperature=0)
        for i in range(NUM_LINES)
    ]


@pytest.mark.slow
def test_higher_priority_then_earlier_deadline_run_first_on_the_real_engine(
    real_server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(real_server.svc.settings.worker, "max_in_flight", WINDOW)
    client = real_server.openai()
    files = {name: upload(client, name, real_lines(name)) for name in ("low", "high")}
    low = create(client, files["low"], priority=-1)
    high = create(client, files["high"], priority=5)
    assert (low.model_extra or {})["priority"] == -1
    assert (high.model_extra or {})["priority"] == 5
    for batch in (low, high):
        done = wait_for_batch(client, batch.id, timeout=300)
        assert done.status == "completed" and done.request_counts.completed == NUM_LINES
    low_times = finish_times(real_server, low.id)
    high_times = finish_times(real_server, high.id)
    # created second, the high-priority batch is done before half of the low one is
    assert high_times[-1] < statistics.median(low_times)

    files = {name: upload(client, name, real_lines(name)) for name in ("late", "soon")}
    late = create(client, files["late"], window="24h")
    soon = create(client, files["soon"], window="1h")  # same priority, earlier deadline
    for batch in (late, soon):
        assert wait_for_batch(client, batch.id, timeout=300).status == "completed"
    assert finish_times(real_server, soon.id)[-1] < finish_times(real_server, late.id)[-1]
    raw = httpx.get(f"{real_server.base_url}/v1/batches/{soon.id}").json()
    assert raw["priority"] == 0 and raw["at_risk"] is False  # ended: never at risk
    client.close()


# --- the echo engine: validation, the bound per project, fair share, at_risk ----------------


@pytest.fixture
def shared_engine(tmp_path: Path) -> Iterator[LiveServer]:
    """Two projects' keys on an echo engine that takes 50 ms a request, 16 at a time;
    project `vip` may ask for priorities up to 50, everyone else up to 10 (the default)."""
    settings = make_settings(
        tmp_path / "home",
        models=[ModelSettings(name="echo", engine="echo", delay_seconds=0.05)],
        worker=WorkerSettings(poll_seconds=0.05, flush_seconds=0.02, max_in_flight=16),
        quotas=QuotaSettings(projects={"vip": QuotaLimits(max_batch_priority=50)}),
    )
    server = LiveServer(Service(settings)).start()
    yield server
    server.stop()


def keyed_client(server: LiveServer, project: str) -> openai.OpenAI:
    _, key = server.svc.keys.create(project)
    return openai.OpenAI(base_url=f"{server.base_url}/v1", api_key=key, max_retries=0)


def echo_lines(name: str, num: int) -> list[dict[str, Any]]:
    return [chat_line(f"{name}-{i}", f"hello {i}", model="echo") for i in range(num)]


def test_priority_is_checked_strictly_and_bounded_per_project(shared_engine: LiveServer) -> None:
    client = keyed_client(shared_engine, "alpha")
    vip = keyed_client(shared_engine, "vip")
    file_id = upload(client, "a", echo_lines("a", 2))
    for bad in (11, -1001, True, 2.0, "3"):
        with pytest.raises(openai.BadRequestError) as refused:
            create(client, file_id, priority=bad)  # type: ignore[arg-type]
        error = refused.value.body
        assert isinstance(error, dict) and error["param"] == "priority", (bad, error)
    with pytest.raises(openai.BadRequestError, match="up to 10"):
        create(client, file_id, priority=11)
    default = create(client, file_id)
    assert_round_trip(openai.types.Batch, default.to_dict(mode="json"))
    assert (default.model_extra or {})["priority"] == 0
    assert (create(client, file_id, priority=10).model_extra or {})["priority"] == 10
    vip_file = upload(vip, "v", echo_lines("v", 2))
    assert (create(vip, vip_file, priority=50).model_extra or {})["priority"] == 50
    with pytest.raises(openai.BadRequestError, match="up to 50"):
        create(vip, vip_file, priority=51)
    client.close()
    vip.close()


def test_a_second_projects_batch_keeps_its_share_beside_a_high_priority_one(
    shared_engine: LiveServer,
) -> None:
    """Project a runs a low then a high-priority batch; project b's default-priority batch,
    created last, still gets half of every refill: it ends before a's low batch is half
    done, and a's high-priority batch overtakes a's low one."""
    a, b = keyed_client(shared_engine, "a"), keyed_client(shared_engine, "b")
    files = {
        "low": upload(a, "low", echo_lines("low", 400)),
        "high": upload(a, "high", echo_lines("high", 100)),
        "other": upload(b, "other", echo_lines("other", 100)),
    }
    low = create(a, files["low"], priority=0)
    high = create(a, files["high"], priority=9)
    other = create(b, files["other"])
    for client, batch in ((a, high), (b, other), (a, low)):
        assert wait_for_batch(client, batch.id, timeout=300).status == "completed"
    low_median = statistics.median(finish_times(shared_engine, low.id))
    assert finish_times(shared_engine, high.id)[-1] < low_median
    assert finish_times(shared_engine, other.id)[-1] < low_median
    a.close()
    b.close()


def test_a_batch_that_cannot_meet_its_deadline_is_at_risk_and_counted_on_metrics(
    echo_server: LiveServer,
) -> None:
    """Two running batches of 100 open requests at 10 tokens each (their own mean so far),
    on a model measured at 10 tokens/s: 100 s of work each. The one with 50 s left is at
    risk; the other, with an hour left, is not, even with the first one's work ahead of
    it. Seeded into the server's store: no engine runs them, the estimate is exact."""
    now = int(time.time())
    svc = echo_server.svc
    add_engine_time(
        svc.db,
        model="m-seeded",
        kind=BATCH,
        period_start=now - now % 60,
        seconds=100.0,
        output_tokens=1000,
    )
    for batch_id, seconds_left in (("batch_fits", 3600), ("batch_late", 50)):
        with svc.db.write() as conn:
            batches.insert(
                conn,
                id=batch_id,
                project="default",
                api="openai",
                endpoint="/v1/chat/completions",
                input_file_id="file-seeded",
                completion_window="24h",
                status="in_progress",
                model="m-seeded",
                created_at=now,
                created_ns=now * 10**9 + seconds_left,
                expires_at=now + seconds_left,
                num_total=110,
                num_succeeded=10,
                output_tokens=100,
            )
    client = echo_server.openai()
    late = client.batches.retrieve("batch_late")
    fits = client.batches.retrieve("batch_fits")
    assert (late.model_extra or {})["at_risk"] is True
    assert (fits.model_extra or {})["at_risk"] is False
    assert late.model_extra["expected_completion_at"] > late.expires_at
    assert_round_trip(openai.types.Batch, late.to_dict(mode="json"))
    listed = {b.id: (b.model_extra or {})["at_risk"] for b in client.batches.list()}
    assert listed == {"batch_late": True, "batch_fits": False}
    metrics = httpx.get(f"{echo_server.base_url}/metrics").text
    assert "freight_batches_at_risk 1.0" in metrics
    client.close()
    with httpx.Client(base_url=echo_server.base_url) as browser:
        assert browser.post("/ui/login", data={"api_key": "any"}).status_code == 303
        page = browser.get("/ui/batches/batch_late").text
        assert 'data-field="at_risk"' in page and 'data-field="priority">0<' in page
        assert 'data-field="at_risk"' not in browser.get("/ui/batches/batch_fits").text


def test_the_cli_creates_a_batch_with_a_priority(echo_server: LiveServer) -> None:
    client = echo_server.openai()
    file_id = upload(client, "cli", echo_lines("cli", 2))
    base = ["--input-file-id", file_id, "--base-url", f"{echo_server.base_url}/v1"]
    created = run_cli("batches", "create", *base, "--priority", "3", "--quiet")
    assert created.returncode == 0, created.stderr
    batch = client.batches.retrieve(created.stdout.strip())
    assert (batch.model_extra or {})["priority"] == 3
    refused = run_cli("batches", "create", *base, "--priority", "99")
    assert refused.returncode == 2 and "priority" in refused.stderr and "10" in refused.stderr
    client.close()
