"""Dashboard pages over HTTP: sign-in, pagination of 1,000 batches, progress, cost, errors.

The browser tests (tests/e2e/test_dashboard_browser.py) drive the same pages in Chromium;
these check what a browser cannot count: queries per page and every page of a big store.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import event

from freight.config import MetricsSettings, PricingSettings, WebSettings
from freight.service.runtime import Service
from freight.store import batches
from freight.web import session
from tests.conftest import LiveServer, make_settings, wait_for_message_batch
from tests.seed import add_batch

NUM_BATCHES = 1000
PAGE_SIZE = 50


@pytest.fixture(scope="module")
def big_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """1,000 batches of project `default` (and 5 of another project), no worker running."""
    settings = make_settings(
        tmp_path_factory.mktemp("big") / "home",
        pricing=PricingSettings(input_price=1.0, output_price=2.0),
        metrics=MetricsSettings(usage_record_seconds=3600),
        web=WebSettings(page_size=PAGE_SIZE),
    )
    svc = Service(settings, with_worker=False)
    now = int(time.time())
    with svc.db.write() as conn:
        for i in range(NUM_BATCHES + 5):
            batches.insert(
                conn,
                id=f"batch_{i:05d}",
                project="default" if i < NUM_BATCHES else "other",
                api="openai" if i % 3 else "anthropic",
                endpoint="/v1/chat/completions",
                input_file_id="file-x",
                completion_window="24h",
                status="completed" if i % 2 else "in_progress",
                model="echo",
                created_at=now,
                created_ns=now * 1_000_000_000 + i,
                expires_at=now + 86_400,
                num_total=10,
                num_succeeded=i % 11,
                input_tokens=1000,
                output_tokens=500,
            )
    server = LiveServer(svc).start()
    yield server
    server.stop()


_clients: list[httpx.Client] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while _clients:
        _clients.pop().close()


def browser(server: LiveServer) -> httpx.Client:
    client = httpx.Client(base_url=server.base_url, follow_redirects=False)
    _clients.append(client)
    return client


def signed_in(server: LiveServer, key: str = "sk-test") -> httpx.Client:
    client = browser(server)
    response = client.post("/ui/login", data={"api_key": key})
    assert response.status_code == 303 and response.headers["location"] == "/"
    return client


def test_pages_need_sign_in_and_sign_out_forgets_it(big_store: LiveServer) -> None:
    anonymous = browser(big_store)
    for path in ("/", "/ui/cost", "/ui/batches/batch_00001"):
        response = anonymous.get(path, follow_redirects=False)
        assert response.status_code == 303 and response.headers["location"] == "/ui/login"
    assert anonymous.get("/ui/progress?ids=batch_00001").status_code == 401
    login = anonymous.get("/ui/login")
    assert login.status_code == 200 and 'name="api_key"' in login.text
    client = signed_in(big_store)
    cookie = client.cookies.get("freight_session")
    assert cookie and "sk-test" not in cookie  # base64 inside a signature, not plain text
    assert client.get("/").status_code == 200
    assert client.post("/ui/logout").status_code == 303
    assert client.get("/", follow_redirects=False).status_code == 303


def test_a_tampered_session_cookie_is_refused(big_store: LiveServer) -> None:
    client = signed_in(big_store)
    value = client.cookies["freight_session"]
    client.cookies.set("freight_session", value[:-2] + ("AA" if value[-2:] != "AA" else "BB"))
    assert client.get("/", follow_redirects=False).status_code == 303


def test_the_session_secret_is_kept_in_home_and_reused(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "h")
    first = session.secret(settings)
    assert session.secret(settings) == first and len(first) >= 32
    assert (tmp_path / "h" / "session_secret").stat().st_mode & 0o777 == 0o600
    configured = make_settings(tmp_path / "h", web=WebSettings(session_secret="x" * 20))
    assert session.secret(configured) == "x" * 20


@contextlib.contextmanager
def queries(server: LiveServer) -> Iterator[list[str]]:
    """The SQL statements the server runs meanwhile (its worker is off: only the pages')."""
    statements: list[str] = []

    def before(conn, cursor, statement, *args):  # type: ignore[no-untyped-def]
        if not statement.startswith("BEGIN"):  # the transaction itself is not a query
            statements.append(statement)

    event.listen(server.svc.db.engine, "before_cursor_execute", before)
    try:
        yield statements
    finally:
        event.remove(server.svc.db.engine, "before_cursor_execute", before)


def test_a_thousand_batches_page_by_page_with_a_bounded_number_of_queries(
    big_store: LiveServer,
) -> None:
    client = signed_in(big_store)
    seen: list[str] = []
    path: str | None = "/"
    num_pages = 0
    seconds = []
    while path is not None:
        with queries(big_store) as statements:
            started = time.perf_counter()
            response = client.get(path)
            seconds.append(time.perf_counter() - started)
        assert response.status_code == 200
        # the key check (auth.KeyRing.identify), the page (and the cursor's row)
        assert len(statements) <= 3, statements
        ids = re.findall(r'<tr data-batch-id="(batch_\d+)"', response.text)
        assert 0 < len(ids) <= PAGE_SIZE
        seen += ids
        num_pages += 1
        older = re.search(r'href="(/\?after=batch_\d+)"', response.text)
        path = older.group(1) if older else None
    print(
        f"\npages of {NUM_BATCHES} batches: first {seconds[0] * 1000:.0f} ms, slowest "
        f"{max(seconds) * 1000:.0f} ms"
    )
    assert num_pages == NUM_BATCHES // PAGE_SIZE
    assert len(seen) == len(set(seen)) == NUM_BATCHES  # each once, no other project's
    assert seen == sorted(seen, reverse=True)  # newest first
    # and back: the newer link of the last page leads to the page before it
    last = client.get(f"/?after={seen[-PAGE_SIZE - 1]}")
    newer = re.search(r'href="(/\?before=batch_\d+)"', last.text)
    assert newer is not None
    back = re.findall(r'<tr data-batch-id="(batch_\d+)"', client.get(newer.group(1)).text)
    assert back == seen[-2 * PAGE_SIZE : -PAGE_SIZE]


def test_progress_endpoint_reports_only_the_projects_batches(big_store: LiveServer) -> None:
    client = signed_in(big_store)
    response = client.get(
        "/ui/progress", params=[("ids", "batch_00003"), ("ids", "batch_01001"), ("ids", "nope")]
    )
    data = response.json()["batches"]
    assert list(data) == ["batch_00003"]  # batch_01001 is another project's
    assert data["batch_00003"] == {
        "status": "completed",
        "done": 3,
        "total": 10,
        "percent": 30,
        "is_terminal": True,
        "num_succeeded": 3,
        "num_errored": 0,
        "input_tokens": 1000,
        "output_tokens": 500,
        "expected_completion": "not known yet",  # no estimate was stored for it
    }


def test_batch_page_shows_counts_cost_and_savings(big_store: LiveServer) -> None:
    client = signed_in(big_store)
    page = client.get("/ui/batches/batch_00007").text
    assert "batch_00007" in page and "completed" in page
    # 1000 x $1/M + 500 x $2/M = $0.002 real time, $0.001 batch, $0.001 saved
    assert 'data-field="realtime-cost">$0.002000<' in page
    assert 'data-field="batch-cost">$0.001000<' in page
    assert 'data-field="savings">$0.001000<' in page
    assert "<svg" in page
    missing = client.get("/ui/batches/batch_01002")  # another project's
    assert missing.status_code == 404 and "No such batch" in missing.text


def test_cost_page_totals_the_projects_batches(big_store: LiveServer) -> None:
    client = signed_in(big_store)
    started = time.perf_counter()
    page = client.get("/ui/cost")
    print(
        f"\ncost page over {NUM_BATCHES} batches: {(time.perf_counter() - started) * 1000:.0f} ms"
    )
    assert page.status_code == 200
    # 1,000 batches x $0.002 real time, x $0.001 as batch work
    assert 'data-field="total-realtime">$2.00<' in page.text
    assert 'data-field="total-batch">$1.00<' in page.text
    assert 'data-field="total-savings">$1.00<' in page.text


def test_upload_errors_are_shown_on_the_page(echo_server: LiveServer) -> None:
    client = signed_in(echo_server)
    empty = client.post(
        "/ui/batches",
        files={"file": ("in.jsonl", b"", "application/jsonl")},
        data={"endpoint": "/v1/chat/completions", "completion_window": "24h"},
    )
    assert empty.status_code == 400 and "The file is empty" in empty.text
    bad_window = client.post(
        "/ui/batches",
        files={"file": ("in.jsonl", b'{"a": 1}\n', "application/jsonl")},
        data={"endpoint": "/v1/chat/completions", "completion_window": "tomorrow"},
    )
    assert bad_window.status_code == 400
    assert "Invalid completion_window &#39;tomorrow&#39;" in bad_window.text
    with echo_server.svc.db.read() as conn:
        assert batches.list_page(conn, api=None, project=None, limit=10)[0] == []


def test_seeded_batch_page_draws_throughput_from_finish_times(echo_server: LiveServer) -> None:
    now = time.time()
    add_batch(
        echo_server.svc.db,
        project="default",
        model="echo",
        created_at=int(now) - 10,
        finished=[(now - 8 + i * 0.5, 10, 4) for i in range(12)],
        batch_id="batch_chart",
    )
    page = signed_in(echo_server).get("/ui/batches/batch_chart").text
    assert page.count("<rect ") >= 2 and "generated tokens/s" in page
    assert "12 / 12" in page and "100%" in page


def test_anthropic_batches_are_listed_and_their_results_download(echo_server: LiveServer) -> None:
    client = echo_server.anthropic()
    created = client.messages.batches.create(
        requests=[
            {
                "custom_id": f"m{i}",
                "params": {
                    "model": "echo",
                    "max_tokens": 8,
                    "messages": [{"role": "user", "content": f"hello {i}"}],
                },
            }
            for i in range(3)
        ]
    )
    wait_for_message_batch(client, created.id, timeout=60)
    browser_ = signed_in(echo_server)
    assert f'data-batch-id="{created.id}"' in browser_.get("/").text
    page = browser_.get(f"/ui/batches/{created.id}").text
    assert f'href="/ui/batches/{created.id}/results"' in page
    results = browser_.get(f"/ui/batches/{created.id}/results")
    lines = [json.loads(x) for x in results.text.splitlines()]
    assert sorted(x["custom_id"] for x in lines) == ["m0", "m1", "m2"]
    assert {x["result"]["type"] for x in lines} == {"succeeded"}
