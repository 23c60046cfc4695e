"""Signed batch webhooks end to end: endpoints through the `openai` SDK's webhooks API,
events for every way both kinds of batch end, verified by a receiver with the SDK's
`client.webhooks.unwrap`, the delivery log in the API, the dashboard and the CLI.
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
from openai.types.webhooks import WebhookEndpoint as SDKWebhookEndpoint
from openai.types.webhooks import WebhookEndpointWithSecret as SDKWebhookEndpointWithSecret
from typer.testing import CliRunner

from freight import ids, netguard
from freight.cli import main
from freight.config import ModelSettings, Settings, WebhookSettings
from freight.protocol import webhook_wire
from freight.service.intake import create_message_batch
from freight.service.runtime import Service
from freight.store import batches, blob_store
from tests.conftest import LiveServer, chat_line, make_settings, wait_for_batch, write_jsonl
from tests.netstubs import StubResolver
from tests.sdk import assert_round_trip
from tests.waiting import wait_until
from tests.webhook_receiver import WebhookReceiver

FAST_WEBHOOKS = WebhookSettings(
    initial_backoff_seconds=0.05,
    max_backoff_seconds=0.2,
    poll_seconds=0.02,
    timeout_seconds=5,
    allow_hosts=["127.0.0.1"],  # the receivers listen on loopback
)


def webhook_settings(home: Path) -> Settings:
    return make_settings(
        home,
        models=[
            ModelSettings(name="echo", engine="echo"),
            ModelSettings(name="slow", engine="echo", delay_seconds=60),
        ],
        webhooks=FAST_WEBHOOKS,
    )


@pytest.fixture(autouse=True)
def no_dns(monkeypatch: pytest.MonkeyPatch) -> StubResolver:
    """Host names resolve through a stub (none by default): no test asks a DNS server."""
    resolver = StubResolver()
    monkeypatch.setattr(netguard, "system_resolve", resolver)
    return resolver


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    live = LiveServer(Service(webhook_settings(tmp_path / "home"))).start()
    yield live
    live.stop()


def message_request(custom_id: str, model: str) -> dict[str, Any]:
    return {
        "custom_id": custom_id,
        "params": {
            "model": model,
            "max_tokens": 8,
            "messages": [{"role": "user", "content": "hello"}],
        },
    }


def openai_batch(client: openai.OpenAI, tmp_path: Path, lines: list[Any], window: str) -> str:
    path = write_jsonl(tmp_path / f"{ids.new_id('in-')}.jsonl", lines)
    uploaded = client.files.create(file=path, purpose="batch")
    batch = client.batches.create(
        input_file_id=uploaded.id,
        endpoint="/v1/chat/completions",
        completion_window=window,  # type: ignore[arg-type]  # Freight accepts <n>s
    )
    return batch.id


def end_every_kind_of_batch(server: LiveServer, tmp_path: Path) -> dict[tuple[str, str], str]:
    """One batch of each API ending each way; {(event type, api): batch id}."""
    client = server.openai()
    claude = server.anthropic()
    svc = server.svc
    slow = [chat_line(f"s{i}", "x", model="slow") for i in range(3)]
    ended: dict[tuple[str, str], str] = {}

    ended["batch.completed", "openai"] = openai_batch(
        client, tmp_path, [chat_line("a", "x", model="echo")], "24h"
    )
    ended["batch.failed", "openai"] = openai_batch(client, tmp_path, ["{not json"], "24h")
    cancelled = openai_batch(client, tmp_path, slow, "24h")
    client.batches.cancel(cancelled)
    ended["batch.cancelled", "openai"] = cancelled
    ended["batch.expired", "openai"] = openai_batch(client, tmp_path, slow, "1s")

    completed = claude.messages.batches.create(requests=[message_request("a", "echo")])  # type: ignore[list-item]
    ended["batch.completed", "anthropic"] = completed.id
    to_cancel = claude.messages.batches.create(requests=[message_request("a", "slow")])  # type: ignore[list-item]
    claude.messages.batches.cancel(to_cancel.id)
    ended["batch.cancelled", "anthropic"] = to_cancel.id
    # The API's Message Batches always get 24 hours; a short window is set here directly.
    expiring = ids.new_id("msgbatch_")
    with svc.blobs.create(blob_store.message_batch_requests(expiring)) as fh:
        fh.write(json.dumps({"requests": [message_request("a", "slow")]}).encode())
    ended["batch.expired", "anthropic"] = create_message_batch(
        svc, "default", expiring, window="1s"
    ).id
    # A Message Batch whose stored requests are gone fails at ingest.
    failing = ids.new_id("msgbatch_")
    now = int(time.time())
    with svc.db.write() as conn:
        batches.insert(
            conn,
            id=failing,
            project="default",
            api="anthropic",
            endpoint="/v1/messages",
            completion_window="24h",
            created_at=now,
            expires_at=now + 86400,
        )
    ended["batch.failed", "anthropic"] = failing
    svc.worker.kick()  # type: ignore[union-attr]
    return ended


def test_every_batch_ending_of_both_apis_is_delivered_signed_once(
    server: LiveServer, tmp_path: Path
) -> None:
    client = server.openai()
    with WebhookReceiver() as receiver:
        endpoint = client.webhooks.create(
            url=receiver.url,
            event_types=["batch.completed", "batch.failed", "batch.cancelled", "batch.expired"],
            name="ci",
        )
        receiver.secret = endpoint.signing_secret
        ended = end_every_kind_of_batch(server, tmp_path)
        events = receiver.wait_for_events(len(ended))
        # Once every delivery is logged delivered, none is due or leased: nothing more comes.
        log = wait_until(lambda: all_delivered(server.base_url, endpoint.id, len(ended)))
        assert len(receiver.requests) == len(events) == len(ended) and not receiver.rejected
    assert {(e.type, e.data.id) for e in events} == {(t, b) for (t, _), b in ended.items()}
    assert len({e.id for e in events}) == len(ended)
    for event in events:
        assert event.id.startswith("evt_") and event.object == "event"
        assert abs(event.created_at - time.time()) < 120
    for (event_type, api), batch_id in ended.items():
        status = event_type.removeprefix("batch.")
        if api == "openai":
            assert client.batches.retrieve(batch_id).status == status
        else:
            with server.svc.db.read() as conn:
                assert batches.get(conn, batch_id).status == status
    assert log["object"] == "list" and len(log["data"]) == len(ended)
    for item in log["data"]:
        delivery = webhook_wire.WebhookDelivery.model_validate(item)
        assert (delivery.status, delivery.attempts, delivery.last_status_code) == (
            "delivered",
            1,
            200,
        )
        assert delivery.delivered_at is not None and delivery.next_attempt_at is None


def all_delivered(base_url: str, endpoint_id: str, num: int) -> dict[str, Any] | None:
    """The endpoint's delivery log once it holds `num` deliveries, all delivered."""
    log = httpx.get(f"{base_url}/v1/webhook_endpoints/{endpoint_id}/deliveries").json()
    items = log["data"]
    is_done = len(items) == num and all(d["status"] == "delivered" for d in items)
    return log if is_done else None


def test_a_receiver_failing_twice_gets_the_event_once_marked_delivered_after_3_attempts(
    server: LiveServer, tmp_path: Path
) -> None:
    client = server.openai()
    with WebhookReceiver(num_failures=2) as receiver:
        endpoint = client.webhooks.create(
            url=receiver.url, event_types=["batch.completed"], name=""
        )
        receiver.secret = endpoint.signing_secret
        batch_id = openai_batch(client, tmp_path, [chat_line("a", "x", model="echo")], "24h")
        assert wait_for_batch(client, batch_id, timeout=60).status == "completed"
        (event,) = receiver.wait_for_events(1)
        assert event.type == "batch.completed" and event.data.id == batch_id
        assert receiver.posts_per_id() == {event.id: 3}  # the same webhook-id each time
    url = f"{server.base_url}/v1/webhook_endpoints/{endpoint.id}/deliveries"
    (delivery,) = httpx.get(url).json()["data"]
    assert delivery["status"] == "delivered" and delivery["attempts"] == 3
    assert delivery["last_status_code"] == 200 and delivery["event_id"] == event.id


def test_endpoints_are_managed_with_the_openai_sdk(server: LiveServer) -> None:
    client = server.openai()
    raw = client.webhooks.with_raw_response.create(
        url="https://example.com/hooks", event_types=["batch.failed"], name="alerts"
    )
    created = assert_round_trip(SDKWebhookEndpointWithSecret, raw.http_response.json())
    assert created.id.startswith("we_") and created.signing_secret.startswith("whsec_")
    assert created.event_types == ["batch.failed"] and created.name == "alerts"
    assert created.signing_secret_hint == "whsec_..." + created.signing_secret[-4:]
    fetched = httpx.get(f"{server.base_url}/v1/webhook_endpoints/{created.id}").json()
    assert "signing_secret" not in fetched  # shown only on create and rotate
    assert_round_trip(SDKWebhookEndpoint, fetched)

    second = client.webhooks.create(
        url="http://127.0.0.1:9/x", event_types=["batch.completed"], name="b"
    )
    page = client.webhooks.list(limit=1)
    assert [e.id for e in page.data] == [second.id] and page.has_more
    assert [e.id for e in client.webhooks.list()] == [second.id, created.id]

    updated = client.webhooks.update(created.id, event_types=["batch.failed", "batch.expired"])
    assert updated.event_types == ["batch.failed", "batch.expired"] and updated.name == "alerts"
    rotated = client.webhooks.rotate_secret(created.id)
    assert rotated.signing_secret != created.signing_secret

    deleted = client.webhooks.delete(created.id)
    assert deleted.deleted and deleted.id == created.id
    with pytest.raises(openai.NotFoundError) as missing:
        client.webhooks.retrieve(created.id)
    assert missing.value.body == {  # type: ignore[comparison-overlap]
        "message": f"No such webhook endpoint: {created.id}",
        "type": "invalid_request_error",
        "param": "endpoint_id",
        "code": None,
    }


@pytest.mark.parametrize(
    ("body", "param", "fragment"),
    [
        ({"url": "ftp://example.com", "name": "x"}, "url", "use an absolute http:// or https://"),
        ({"url": "example.com/hooks"}, "url", "use an absolute http:// or https://"),
        (
            {"url": "https://e.com", "event_types": ["response.completed"]},
            "event_types",
            "accepted: batch.completed",
        ),
        ({"url": "https://e.com", "secret": "mine"}, "secret", "Unrecognized request argument"),
        ({"name": "no url"}, "url", "Missing required parameter"),
    ],
)
def test_bad_endpoint_requests_are_400_in_openai_shape(
    server: LiveServer, body: dict[str, Any], param: str, fragment: str
) -> None:
    response = httpx.post(f"{server.base_url}/v1/webhook_endpoints", json=body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param
    assert fragment in error["message"]


def test_unknown_endpoint_ids_are_404_on_every_route(server: LiveServer) -> None:
    base = f"{server.base_url}/v1/webhook_endpoints/we_nope"
    for method, url in [
        ("GET", base),
        ("POST", base),
        ("DELETE", base),
        ("POST", f"{base}/rotate_secret"),
        ("POST", f"{base}/test"),
        ("GET", f"{base}/deliveries"),
    ]:
        body = {"event_type": "batch.completed"} if url.endswith("/test") else {}
        response = httpx.request(method, url, json=body if method == "POST" else None)
        assert response.status_code == 404, (method, url)
        assert response.json()["error"]["message"] == "No such webhook endpoint: we_nope"


def test_dashboard_lists_endpoints_and_recent_deliveries(
    server: LiveServer, tmp_path: Path
) -> None:
    client = server.openai()
    with WebhookReceiver(num_failures=1) as receiver:
        endpoint = client.webhooks.create(
            url=receiver.url, event_types=["batch.failed"], name="dash"
        )
        receiver.secret = endpoint.signing_secret
        batch_id = openai_batch(client, tmp_path, ["{not json"], "24h")
        (event,) = receiver.wait_for_events(1)
    with httpx.Client(base_url=server.base_url) as browser:
        assert browser.post("/ui/login", data={"api_key": "sk-test"}).status_code == 303
        page = browser.get("/ui/webhooks")
    assert page.status_code == 200
    assert f'data-endpoint-id="{endpoint.id}"' in page.text and receiver.url in page.text
    row = page.text.split(f'data-event-id="{event.id}"')[1].split("</tr>")[0]
    assert batch_id in row and "batch.failed" in row and ">delivered<" in row
    assert '<td class="num" data-field="attempts">2</td>' in row
    assert 'href="/ui/webhooks"' in page.text  # in the navigation


def test_cli_adds_lists_shows_deliveries_and_removes(
    server: LiveServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = str(server.svc.settings.home)
    monkeypatch.setenv("FREIGHT_HOME", home)  # --home sets it; restored after the test
    monkeypatch.setenv("FREIGHT_WEBHOOKS__ALLOW_HOSTS", '["127.0.0.1"]')
    runner = CliRunner()
    env = {"COLUMNS": "250"}
    with WebhookReceiver() as receiver:
        added = runner.invoke(
            main.app,
            ["webhooks", "add", receiver.url, "--home", home, "--events", "batch.completed"],
            env=env,
        )
        assert added.exit_code == 0, added.output
        receiver.secret = re.findall(r"^whsec_\S+$", added.output, re.M)[0]
        endpoint_id = re.findall(r"we_[a-z2-7]+", added.output)[0]
        assert "shown only now" in added.output
        batch_id = openai_batch(
            server.openai(), tmp_path, [chat_line("a", "x", model="echo")], "24h"
        )
        (event,) = receiver.wait_for_events(1)
        assert event.data.id == batch_id

    listed = runner.invoke(main.app, ["webhooks", "list", "--home", home, "--json"], env=env)
    assert listed.exit_code == 0, listed.output
    (item,) = json.loads(listed.output)
    assert (item["id"], item["url"], item["project"]) == (endpoint_id, receiver.url, "default")
    assert item["event_types"] == ["batch.completed"] and receiver.secret not in listed.output
    table = runner.invoke(main.app, ["webhooks", "list", "--home", home], env=env)
    assert endpoint_id in table.output and receiver.secret not in table.output

    log = runner.invoke(
        main.app, ["webhooks", "deliveries", endpoint_id, "--home", home, "--json"], env=env
    )
    (delivery,) = json.loads(log.output)
    assert (delivery["event_id"], delivery["status"], delivery["attempts"]) == (
        event.id,
        "delivered",
        1,
    )
    shown = runner.invoke(main.app, ["webhooks", "deliveries", "--home", home], env=env)
    assert shown.exit_code == 0 and event.id in shown.output and "delivered" in shown.output

    removed = runner.invoke(main.app, ["webhooks", "remove", endpoint_id, "--home", home], env=env)
    assert removed.exit_code == 0 and f"Removed webhook endpoint {endpoint_id}" in removed.output
    again = runner.invoke(main.app, ["webhooks", "remove", endpoint_id, "--home", home], env=env)
    assert again.exit_code == 2 and "No such webhook endpoint" in again.output  # as keys revoke
    bad = runner.invoke(main.app, ["webhooks", "add", "ftp://x", "--home", home], env=env)
    assert bad.exit_code == 2 and "use an absolute http:// or https:// URL" in bad.output
    empty = runner.invoke(main.app, ["webhooks", "list", "--home", home], env=env)
    assert "No webhook endpoints." in empty.output


def test_the_readme_receiver_example_verifies_and_dedupes(
    server: LiveServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util
    import threading

    import uvicorn

    from tests.conftest import REPO, free_port

    spec = importlib.util.spec_from_file_location(
        "webhook_receiver_example", REPO / "examples" / "webhook_receiver.py"
    )
    assert spec is not None and spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    port = free_port()
    receiver = uvicorn.Server(
        uvicorn.Config(example.app, host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=receiver.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: receiver.started, what="the example receiver to start")
        client = server.openai()
        endpoint = client.webhooks.create(
            url=f"http://127.0.0.1:{port}/hooks", event_types=["batch.completed"], name="example"
        )
        monkeypatch.setenv("FREIGHT_WEBHOOK_SECRET", endpoint.signing_secret)
        batch_id = openai_batch(client, tmp_path, [chat_line("a", "x", model="echo")], "24h")
        wait_until(lambda: example.events, what="an event at the example receiver")
        (event,) = example.events
        assert event.type == "batch.completed" and event.data.id == batch_id
        forged = httpx.post(
            f"http://127.0.0.1:{port}/hooks",
            content=b'{"object":"event"}',
            headers={
                "webhook-id": "evt_x",
                "webhook-timestamp": str(int(time.time())),
                "webhook-signature": "v1,AAAA",
            },
        )
        assert forged.status_code == 400
    finally:
        receiver.should_exit = True
        thread.join(timeout=30)


@pytest.mark.slow
def test_api_node_and_two_worker_processes_on_postgresql_send_each_event_once(
    tmp_path: Path,
) -> None:
    from tests.deployment import api_only_deployment

    config = (
        '[[models]]\nname = "echo"\nengine = "echo"\n\n'
        "[worker]\npoll_seconds = 0.05\n\n"
        '[webhooks]\npoll_seconds = 0.05\nallow_hosts = ["127.0.0.1"]\n'
    )
    num_batches = 12
    with (
        api_only_deployment(tmp_path, config, database="freight_hooks") as deployment,
        WebhookReceiver() as receiver,
    ):
        for i in range(2):
            deployment.worker(f"worker{i}")
        client = deployment.openai()
        endpoint = client.webhooks.create(
            url=receiver.url, event_types=["batch.completed"], name=""
        )
        receiver.secret = endpoint.signing_secret
        batch_ids = {
            openai_batch(client, tmp_path, [chat_line(f"r{i}", "x", model="echo")], "24h")
            for i in range(num_batches)
        }
        events = receiver.wait_for_events(num_batches, timeout=120)
        # Every delivery logged delivered: none is due or leased, so no duplicate can follow.
        log = wait_until(lambda: all_delivered(deployment.base_url, endpoint.id, num_batches))
        assert {e.data.id for e in events} == batch_ids
        assert len(receiver.requests) == num_batches and set(receiver.posts_per_id().values()) == {
            1
        }
    assert {d["attempts"] for d in log["data"]} == {1} and len(log["data"]) == num_batches


def test_a_test_event_is_sent_signed_at_once_and_not_logged(server: LiveServer) -> None:
    client = server.openai()
    with WebhookReceiver(num_failures=1) as receiver:
        endpoint = client.webhooks.create(url=receiver.url, event_types=["batch.failed"], name="")
        receiver.secret = endpoint.signing_secret
        first = client.webhooks.test(endpoint.id, event_type="batch.expired")
        assert (first.status_code, first.success, first.event_type) == (500, True, "batch.expired")
        second = client.webhooks.test(endpoint.id, event_type="batch.completed")
        assert second.status_code == 200 and second.webhook_endpoint_id == endpoint.id
        (event,) = receiver.events
        assert event.type == "batch.completed" and event.data.id.startswith("batch_test_")
    log = httpx.get(f"{server.base_url}/v1/webhook_endpoints/{endpoint.id}/deliveries").json()
    assert log["data"] == []
    nobody = client.webhooks.create(
        url="http://127.0.0.1:9/x", event_types=["batch.failed"], name=""
    )
    with pytest.raises(openai.BadRequestError) as excinfo:
        client.webhooks.test(nobody.id, event_type="batch.failed")
    assert excinfo.value.code == "webhook_test_failed"
    assert (
        "could not be delivered to http://127.0.0.1:9/x: could not connect" in excinfo.value.message
    )
    with pytest.raises(openai.BadRequestError, match="is not an event Freight sends"):
        client.webhooks.test(nobody.id, event_type="response.completed")


def test_endpoints_and_their_logs_are_scoped_to_the_callers_project(server: LiveServer) -> None:
    _, alice_key = server.svc.keys.create("alice")
    _, bob_key = server.svc.keys.create("bob")
    alice = server.openai().with_options(api_key=alice_key)
    bob = server.openai().with_options(api_key=bob_key)
    mine = alice.webhooks.create(url="https://a.example/h", event_types=["batch.failed"], name="")
    assert [e.id for e in alice.webhooks.list()] == [mine.id]
    assert list(bob.webhooks.list()) == []
    for attempt in (
        lambda: bob.webhooks.retrieve(mine.id),
        lambda: bob.webhooks.update(mine.id, name="taken"),
        lambda: bob.webhooks.delete(mine.id),
        lambda: bob.webhooks.list(after=mine.id),
    ):
        with pytest.raises(openai.NotFoundError):
            attempt()
    response = httpx.get(
        f"{server.base_url}/v1/webhook_endpoints/{mine.id}/deliveries",
        headers={"authorization": f"Bearer {bob_key}"},
    )
    assert response.status_code == 404
    assert alice.webhooks.retrieve(mine.id).name == ""
