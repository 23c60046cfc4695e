"""API keys and projects through the official SDKs: isolation on every route, admin keys,
401s for missing, wrong, revoked and expired keys, and the dashboard's share of it.

Two projects (`alpha`, `beta`) and an admin key on one echo server. Each project's
objects answer 404 to the other on every route, in the API's own error shape, and never
show up in its lists; the admin key sees and reads both.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest
from openai.types import Batch as SDKBatch

from freight.service.runtime import Service
from freight.store import api_keys
from tests.conftest import (
    LiveServer,
    chat_line,
    make_settings,
    wait_for_batch,
    wait_for_message_batch,
)
from tests.sdk import assert_round_trip, message_batch_results, output_lines


@dataclass
class Tenant:
    project: str
    key: str
    openai: openai.OpenAI
    anthropic: anthropic.Anthropic
    file_id: str = ""
    batch_id: str = ""
    message_batch_id: str = ""


def clients(server: LiveServer, key: str) -> tuple[openai.OpenAI, anthropic.Anthropic]:
    return (
        openai.OpenAI(base_url=f"{server.base_url}/v1", api_key=key, max_retries=0),
        anthropic.Anthropic(base_url=server.base_url, api_key=key, max_retries=0),
    )


def message_request(custom_id: str) -> dict[str, Any]:
    return {
        "custom_id": custom_id,
        "params": {
            "model": "echo",
            "max_tokens": 8,
            "messages": [{"role": "user", "content": "hello"}],
        },
    }


@dataclass
class World:
    server: LiveServer
    alpha: Tenant
    beta: Tenant
    admin: Tenant
    revoked_key: str
    expired_key: str


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    home = tmp_path_factory.mktemp("security") / "home"
    svc = Service(make_settings(home))
    server = LiveServer(svc).start()
    tenants = []
    for project, is_admin in (("alpha", False), ("beta", False), ("ops", True)):
        _, key = svc.keys.create(project, is_admin=is_admin)
        tenants.append(Tenant(project, key, *clients(server, key)))
    revoked, revoked_key = svc.keys.create("alpha")
    with svc.db.write() as conn:
        api_keys.revoke(conn, revoked.prefix, int(time.time()))
    # a key for 1 s, created 2 s ago
    _, expired_key = svc.keys.create("alpha", expires_in_days=1 / 86400, now=time.time() - 2)
    alpha, beta, admin = tenants
    for tenant in (alpha, beta):
        lines = [chat_line(f"{tenant.project}-{i}", "hi", model="echo") for i in range(3)]
        data = "".join(json.dumps(line) + "\n" for line in lines).encode()
        uploaded = tenant.openai.files.create(
            file=(f"{tenant.project}.jsonl", io.BytesIO(data)), purpose="batch"
        )
        tenant.file_id = uploaded.id
        batch = tenant.openai.batches.create(
            input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        tenant.batch_id = batch.id
        wait_for_batch(tenant.openai, batch.id, timeout=60)
        message_batch = tenant.anthropic.messages.batches.create(
            requests=[message_request("one")]  # type: ignore[list-item]
        )
        tenant.message_batch_id = message_batch.id
        wait_for_message_batch(tenant.anthropic, message_batch.id, timeout=60)
    yield World(server, alpha, beta, admin, revoked_key, expired_key)
    for tenant in tenants:
        tenant.openai.close()
        tenant.anthropic.close()
    server.stop()


# --- isolation --------------------------------------------------------------------------------


def openai_routes(owner: Tenant) -> list[tuple[str, Any]]:
    """Every OpenAI route that takes an id, called for `owner`'s objects."""
    return [
        ("files.retrieve", lambda c: c.files.retrieve(owner.file_id)),
        ("files.content", lambda c: c.files.content(owner.file_id)),
        ("files.delete", lambda c: c.files.delete(owner.file_id)),
        ("batches.retrieve", lambda c: c.batches.retrieve(owner.batch_id)),
        ("batches.cancel", lambda c: c.batches.cancel(owner.batch_id)),
        (
            "batches.create from the file",
            lambda c: c.batches.create(
                input_file_id=owner.file_id,
                endpoint="/v1/chat/completions",
                completion_window="24h",
            ),
        ),
    ]


def anthropic_routes(owner: Tenant) -> list[tuple[str, Any]]:
    batches = "messages.batches"
    return [
        (f"{batches}.retrieve", lambda c: c.messages.batches.retrieve(owner.message_batch_id)),
        (f"{batches}.results", lambda c: list(c.messages.batches.results(owner.message_batch_id))),
        (f"{batches}.cancel", lambda c: c.messages.batches.cancel(owner.message_batch_id)),
        (f"{batches}.delete", lambda c: c.messages.batches.delete(owner.message_batch_id)),
    ]


@pytest.mark.parametrize("direction", ["alpha->beta", "beta->alpha"])
def test_another_projects_ids_answer_404_on_every_route(world: World, direction: str) -> None:
    caller, owner = (
        (world.alpha, world.beta) if direction == "alpha->beta" else (world.beta, world.alpha)
    )
    for name, call in openai_routes(owner):
        with pytest.raises(openai.NotFoundError) as caught:
            call(caller.openai)
        body = caught.value.body
        assert isinstance(body, dict) and body["type"] == "invalid_request_error", name
    for name, call in anthropic_routes(owner):
        with pytest.raises(anthropic.NotFoundError) as not_found:
            call(caller.anthropic)
        error = not_found.value.body
        assert isinstance(error, dict) and error["type"] == "error", name
        assert error["error"]["type"] == "not_found_error", name
    # ... and the owner's objects are all still there, untouched
    assert owner.openai.files.retrieve(owner.file_id).id == owner.file_id
    assert owner.openai.batches.retrieve(owner.batch_id).status == "completed"
    assert owner.anthropic.messages.batches.retrieve(owner.message_batch_id).id


def test_lists_show_only_the_callers_own_objects(world: World) -> None:
    for me, other in ((world.alpha, world.beta), (world.beta, world.alpha)):
        file_ids = {f.id for f in me.openai.files.list()}
        assert me.file_id in file_ids and other.file_id not in file_ids
        output = me.openai.batches.retrieve(me.batch_id).output_file_id
        assert output in file_ids  # a batch's results belong to its project
        batch_ids = {b.id for b in me.openai.batches.list()}
        assert batch_ids == {me.batch_id}
        message_ids = {b.id for b in me.anthropic.messages.batches.list()}
        assert message_ids == {me.message_batch_id}


def test_an_admin_key_lists_and_reads_every_project(world: World) -> None:
    admin = world.admin
    file_ids = {f.id for f in admin.openai.files.list()}
    batch_ids = {b.id for b in admin.openai.batches.list()}
    message_ids = {b.id for b in admin.anthropic.messages.batches.list()}
    for tenant in (world.alpha, world.beta):
        assert tenant.file_id in file_ids
        assert tenant.batch_id in batch_ids
        assert tenant.message_batch_id in message_ids
        raw = admin.openai.batches.with_raw_response.retrieve(tenant.batch_id)
        batch = assert_round_trip(SDKBatch, raw.http_response.json())
        assert batch.status == "completed"
        content = admin.openai.files.content(tenant.file_id).text
        assert f"{tenant.project}-0" in content
        results = message_batch_results(admin.anthropic, tenant.message_batch_id)
        assert [r.custom_id for r in results] == ["one"]


# --- 401s -----------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["missing", "wrong", "revoked", "expired"])
def test_bad_keys_get_401_in_each_apis_shape(world: World, which: str) -> None:
    key = {
        "missing": "",
        "wrong": "frk_" + "x" * 43,
        "revoked": world.revoked_key,
        "expired": world.expired_key,
    }[which]
    headers = {"authorization": f"Bearer {key}"} if key else {}
    url = world.server.base_url
    for path in ("/v1/files", "/v1/batches", "/v1/models", "/v1/no-such-route"):
        response = httpx.get(url + path, headers=headers)
        assert response.status_code == 401, path
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}
        assert key == "" or key not in response.text
    for path in ("/v1/messages/batches", "/v1/messages"):
        response = httpx.request(
            "GET" if path.endswith("batches") else "POST",
            url + path,
            headers={"x-api-key": key} if key else {},
            json={} if path == "/v1/messages" else None,
        )
        assert response.status_code == 401, path
        body = response.json()
        assert body["type"] == "error" and body["error"]["type"] == "authentication_error"
    if key:
        sdk_openai, sdk_anthropic = clients(world.server, key)
        with sdk_openai, sdk_anthropic:
            with pytest.raises(openai.AuthenticationError):
                sdk_openai.batches.list()
            with pytest.raises(anthropic.AuthenticationError):
                sdk_anthropic.messages.batches.list()


def test_either_header_works_on_either_api(world: World) -> None:
    url = world.server.base_url
    key = world.alpha.key
    assert httpx.get(f"{url}/v1/files", headers={"x-api-key": key}).status_code == 200
    response = httpx.get(f"{url}/v1/messages/batches", headers={"authorization": f"Bearer {key}"})
    assert response.status_code == 200
    assert [b["id"] for b in response.json()["data"]] == [world.alpha.message_batch_id]


def test_health_answers_without_a_key(world: World) -> None:
    assert httpx.get(f"{world.server.base_url}/health").status_code == 200


# --- the dashboard ------------------------------------------------------------------------------


@contextlib.contextmanager
def signed_in(server: LiveServer, key: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url) as client:
        response = client.post("/ui/login", data={"api_key": key})
        assert response.status_code == 303, response.text
        yield client


def test_the_dashboard_answers_404_for_another_projects_pages_and_downloads(
    world: World,
) -> None:
    with signed_in(world.server, world.alpha.key) as client:
        check_dashboard_isolation(world, client)
    with signed_in(world.server, world.admin.key) as admin:
        index = admin.get("/").text
        assert world.alpha.batch_id in index and world.beta.batch_id in index
        output = world.beta.openai.batches.retrieve(world.beta.batch_id).output_file_id
        assert admin.get(f"/ui/files/{output}").status_code == 200


def check_dashboard_isolation(world: World, client: httpx.Client) -> None:
    beta = world.beta
    output = beta.openai.batches.retrieve(beta.batch_id).output_file_id
    for path in (
        f"/ui/batches/{beta.batch_id}",
        f"/ui/batches/{beta.message_batch_id}",
        f"/ui/files/{beta.file_id}",
        f"/ui/files/{output}",
        f"/ui/batches/{beta.message_batch_id}/results",
    ):
        assert client.get(path).status_code == 404, path
    progress = client.get("/ui/progress", params={"ids": [beta.batch_id, world.alpha.batch_id]})
    assert list(progress.json()["batches"]) == [world.alpha.batch_id]
    index = client.get("/").text
    assert world.alpha.batch_id in index and beta.batch_id not in index


def test_the_dashboard_refuses_bad_keys_and_signs_out_revoked_ones(world: World) -> None:
    with httpx.Client(base_url=world.server.base_url) as client:
        for key in ("", "frk_wrong", world.revoked_key, world.expired_key):
            response = client.post("/ui/login", data={"api_key": key})
            assert response.status_code == 401
            assert not key or key not in response.text


def test_dashboard_pages_carry_security_headers(world: World) -> None:
    with signed_in(world.server, world.alpha.key) as client:
        for path in ("/", "/ui/login", f"/ui/batches/{world.alpha.batch_id}", "/ui/cost"):
            response = client.get(path)
            assert response.status_code == 200, path
            assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
            assert "default-src 'self'" in response.headers["content-security-policy"]
            assert response.headers["x-frame-options"] == "DENY"
            assert response.headers["x-content-type-options"] == "nosniff"
            assert response.headers["referrer-policy"] == "no-referrer"


# --- ids ----------------------------------------------------------------------------------------


def test_ids_carry_at_least_128_random_bits(world: World) -> None:
    ids = [world.alpha.file_id, world.alpha.batch_id, world.alpha.message_batch_id]
    for object_id in ids:
        suffix = re.sub(r"^[a-z]+[-_]", "", object_id)
        assert re.fullmatch(r"[a-z2-7]{32}", suffix), object_id  # base32: 5 bits a character
    client = world.alpha.openai
    lines = output_lines(client, client.batches.retrieve(world.alpha.batch_id).output_file_id)
    assert lines and all(re.fullmatch(r"batch_req_[0-9a-f]{32}", x["id"]) for x in lines)


def test_keys_are_stored_hashed_and_shown_by_prefix_only(world: World, tmp_path: Path) -> None:
    svc = world.server.svc
    with svc.db.read() as conn:
        records = api_keys.list_all(conn)
    stored = json.dumps([r.__dict__ for r in records])
    for tenant in (world.alpha, world.beta, world.admin):
        assert tenant.key not in stored
        assert tenant.key[:12] in stored  # the shown prefix
