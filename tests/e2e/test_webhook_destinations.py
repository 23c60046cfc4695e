"""Webhook endpoints cannot be turned against internal addresses: refused at create and
update, at `/test` and at delivery (DNS rebinding included) unless `[webhooks]
allow_hosts` lists them; and no answer of the API, the CLI or the dashboard shows what
a receiver answered beyond its status class, nor a URL's credentials.

Names resolve through a stub: no test asks a DNS server, and no connection goes
anywhere but loopback.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from typer.testing import CliRunner

from freight import netguard
from freight.cli import main
from freight.service.runtime import Service
from tests.conftest import LiveServer, chat_line, make_settings
from tests.e2e.test_webhooks import FAST_WEBHOOKS, openai_batch, webhook_settings
from tests.netstubs import StubResolver
from tests.webhook_receiver import WebhookReceiver

PUBLIC = "93.184.215.14"  # what a name resolves to at create; nothing connects to it
SECRET = b"SECRET internal answer: db password hunter2"


@pytest.fixture(autouse=True)
def resolver(monkeypatch: pytest.MonkeyPatch) -> StubResolver:
    stub = StubResolver()
    monkeypatch.setattr(netguard, "system_resolve", stub)
    return stub


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    """A server with the default policy: no internal receivers."""
    webhooks = FAST_WEBHOOKS.model_copy(update={"allow_hosts": []})
    live = LiveServer(Service(make_settings(tmp_path / "home", webhooks=webhooks))).start()
    yield live
    live.stop()


@pytest.fixture
def allowing_server(tmp_path: Path) -> Iterator[LiveServer]:
    """A server whose `[webhooks] allow_hosts` lists 127.0.0.1."""
    live = LiveServer(Service(webhook_settings(tmp_path / "home"))).start()
    yield live
    live.stop()


def create(server: LiveServer, url: str) -> httpx.Response:
    body = {"url": url, "event_types": ["batch.completed"]}
    return httpx.post(f"{server.base_url}/v1/webhook_endpoints", json=body)


def assert_refused(response: httpx.Response, why: str) -> None:
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == "url"
    assert why in error["message"], error["message"]
    assert "[webhooks] allow_hosts" in error["message"]


def wait_for_attempt(server: LiveServer, endpoint_id: str) -> dict[str, Any]:
    url = f"{server.base_url}/v1/webhook_endpoints/{endpoint_id}/deliveries"
    deadline = time.monotonic() + 30
    while True:
        log = httpx.get(url)
        if log.json()["data"] and log.json()["data"][0]["last_attempt_at"] is not None:
            return dict(log.json()["data"][0])
        assert time.monotonic() < deadline, f"no attempt was recorded: {log.text}"
        time.sleep(0.05)


def test_internal_receivers_are_refused_at_create_and_update_by_default(
    server: LiveServer, resolver: StubResolver
) -> None:
    resolver.names["hooks.internal.test"] = ["127.0.0.1"]
    with WebhookReceiver() as receiver:
        for url, why in [
            (receiver.url, "127.0.0.1 is a loopback address"),
            (f"http://localhost:{receiver.port}/hooks", "localhost is a loopback name"),
            (f"http://[::1]:{receiver.port}/", "::1 is a loopback address"),
            (f"http://0:{receiver.port}/", "0 is an unspecified address"),
            (f"http://0.0.0.0:{receiver.port}/", "unspecified"),
            (f"http://2130706433:{receiver.port}/", "2130706433 is a loopback address"),
            (f"http://0x7f.1:{receiver.port}/", "loopback"),
            (f"http://[::ffff:127.0.0.1]:{receiver.port}/", "loopback"),
            ("http://169.254.169.254/latest/meta-data/", "link-local"),
            ("http://10.0.0.1/", "private"),
            (
                f"http://hooks.internal.test:{receiver.port}/hooks",
                "hooks.internal.test resolves to a loopback address",
            ),
        ]:
            assert_refused(create(server, url), why)
        assert receiver.requests == []
    good = create(server, "https://hooks.example.com/h")  # resolves to nothing: checked later
    assert good.status_code == 200, good.text
    endpoint_url = f"{server.base_url}/v1/webhook_endpoints/{good.json()['id']}"
    assert_refused(httpx.post(endpoint_url, json={"url": "http://127.0.0.1/"}), "loopback")
    assert httpx.get(endpoint_url).json()["url"] == "https://hooks.example.com/h"
    listed = httpx.get(f"{server.base_url}/v1/webhook_endpoints").json()["data"]
    assert [e["id"] for e in listed] == [good.json()["id"]]  # no refused one was stored


def test_an_allow_listed_loopback_receiver_is_accepted_and_tested(
    allowing_server: LiveServer,
) -> None:
    client = allowing_server.openai()
    with WebhookReceiver() as receiver:
        endpoint = client.webhooks.create(
            url=receiver.url, event_types=["batch.completed"], name=""
        )
        receiver.secret = endpoint.signing_secret
        result = client.webhooks.test(endpoint.id, event_type="batch.completed")
        assert result.status_code == 200 and len(receiver.events) == 1
        # the allow-list names 127.0.0.1, not every loopback name
        assert_refused(create(allowing_server, f"http://localhost:{receiver.port}/"), "loopback")


def test_a_name_rebound_to_loopback_after_create_is_refused_at_test_and_delivery(
    server: LiveServer, resolver: StubResolver, tmp_path: Path
) -> None:
    client = server.openai()
    with WebhookReceiver() as receiver:
        resolver.names["hooks.example.com"] = [PUBLIC]
        endpoint = client.webhooks.create(
            url=f"http://hooks.example.com:{receiver.port}/hooks",
            event_types=["batch.completed"],
            name="",
        )
        # From now on the name points inside; nothing has connected to PUBLIC.
        resolver.names["hooks.example.com"] = ["127.0.0.1"]
        with pytest.raises(openai.BadRequestError) as excinfo:
            client.webhooks.test(endpoint.id, event_type="batch.completed")
        assert excinfo.value.code == "webhook_test_failed"
        assert (
            f"could not be delivered to http://hooks.example.com:{receiver.port}/hooks: "
            "refused: hooks.example.com resolves to a loopback address"
        ) in excinfo.value.message

        openai_batch(client, tmp_path, [chat_line("a", "x", model="echo")], "24h")
        delivery = wait_for_attempt(server, endpoint.id)
        assert receiver.requests == []
    assert delivery["last_status_code"] is None and delivery["status"] != "delivered"
    assert delivery["last_error"].startswith(
        "refused: hooks.example.com resolves to a loopback address"
    )
    assert resolver.looked_up.count("hooks.example.com") >= 3  # create, test, delivery


def test_no_answer_shows_the_receivers_body(
    allowing_server: LiveServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = allowing_server
    client = server.openai()
    monkeypatch.setenv("FREIGHT_HOME", str(server.svc.settings.home))
    with WebhookReceiver(num_failures=1000, failure_body=SECRET) as receiver:
        endpoint = client.webhooks.create(
            url=receiver.url, event_types=["batch.completed"], name=""
        )
        tested = httpx.post(
            f"{server.base_url}/v1/webhook_endpoints/{endpoint.id}/test",
            json={"event_type": "batch.completed"},
        )
        openai_batch(client, tmp_path, [chat_line("a", "x", model="echo")], "24h")
        delivery = wait_for_attempt(server, endpoint.id)
        # While the receiver keeps answering 500 with its secret, every view shows the log.
        log = httpx.get(f"{server.base_url}/v1/webhook_endpoints/{endpoint.id}/deliveries")
        with httpx.Client(base_url=server.base_url) as browser:
            assert browser.post("/ui/login", data={"api_key": "sk-test"}).status_code == 303
            page = browser.get("/ui/webhooks")
        shown = CliRunner().invoke(main.app, ["webhooks", "deliveries", "--json"])
        assert len(receiver.requests) >= 2  # the test event and the delivery got its answer
    assert tested.status_code == 200 and tested.json()["status_code"] == 500
    assert delivery["last_status_code"] == 500
    assert re.fullmatch(r"receiver answered 5xx in \d+ ms", delivery["last_error"])
    assert "receiver answered 5xx in" in page.text
    assert json.loads(shown.output)[0]["last_error"].startswith("receiver answered 5xx in")
    for answer in (tested.text, log.text, page.text, shown.output):
        assert "SECRET" not in answer and "hunter2" not in answer


def test_urls_with_credentials_are_refused_and_not_echoed(
    server: LiveServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = "https://bob:hunter2@hooks.example.com/h"
    response = create(server, url)
    assert response.status_code == 400 and response.json()["error"]["param"] == "url"
    assert "credentials (user:password@) are not accepted" in response.json()["error"]["message"]
    assert "hunter2" not in response.text
    monkeypatch.setenv("FREIGHT_HOME", str(server.svc.settings.home))
    added = CliRunner().invoke(main.app, ["webhooks", "add", url])
    assert added.exit_code == 2 and "credentials" in added.output
    assert "hunter2" not in added.output
