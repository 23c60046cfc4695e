"""`freight keys` and `freight serve`'s safe default, as a user runs them (subprocesses).

No keys: serve binds loopback only and says it is single-user; any other address is
refused with the command that creates a key. With keys: serve runs on any address, and
its whole output (access log included) never shows a key.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port, run_cli, serve_process, wait_http

pytestmark = pytest.mark.slow  # several CLI processes


def test_keys_create_list_revoke(tmp_path: Path) -> None:
    home = str(tmp_path / "home")
    created = run_cli("keys", "create", "--project", "alpha", "--home", home)
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    assert key.startswith("frk_") and len(key) >= 40
    assert "shown only now" in created.stderr
    admin = run_cli(
        "keys", "create", "--project", "ops", "--admin", "--expires-in", "30", "--home", home
    )
    assert admin.returncode == 0
    listed = run_cli("keys", "list", "--json", "--home", home)
    rows = json.loads(listed.stdout)
    assert [(r["project"], r["admin"], r["status"]) for r in rows] == [
        ("alpha", False, "active"),
        ("ops", True, "active"),
    ]
    assert rows[1]["expires_at"] - rows[1]["created_at"] == 30 * 86400
    assert rows[0]["prefix"] == key[:12] and key not in listed.stdout
    table = run_cli("keys", "list", "--home", home)
    assert key[:12] in table.stdout and key not in table.stdout
    revoked = run_cli("keys", "revoke", rows[0]["prefix"], "--home", home)
    assert revoked.returncode == 0, revoked.stderr
    rows = json.loads(run_cli("keys", "list", "--json", "--home", home).stdout)
    assert [r["status"] for r in rows] == ["revoked", "active"]
    unknown = run_cli("keys", "revoke", "frk_nothere", "--home", home)
    assert unknown.returncode == 2 and "freight keys list" in unknown.stderr
    bad_name = run_cli("keys", "create", "--project", "../x", "--home", home)
    assert bad_name.returncode == 2 and "Invalid project name" in bad_name.stderr
    secret = Path(home) / "secret.key"
    assert secret.stat().st_mode & 0o777 == 0o600


def test_serve_without_keys_refuses_other_addresses(tmp_path: Path) -> None:
    home = str(tmp_path / "home")
    result = run_cli("serve", "--host", "0.0.0.0", "--port", str(free_port()), "--home", home)
    assert result.returncode == 2
    assert "freight keys create --project NAME" in result.stderr
    assert "0.0.0.0" in result.stderr


def test_serve_without_keys_is_single_user_on_loopback(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    port = free_port()
    with serve_process(home, port, "--no-preload") as proc:
        wait_http(f"http://127.0.0.1:{port}/health", proc=proc)
        assert httpx.get(f"http://127.0.0.1:{port}/v1/files").status_code == 200
    output = next(home.glob("serve-*.log")).read_text()
    assert "single-user" in output and f"127.0.0.1:{port}" in output


def test_serve_with_keys_listens_anywhere_and_never_logs_a_key(tmp_path: Path) -> None:
    home = tmp_path / "home"
    key = run_cli("keys", "create", "--project", "alpha", "--home", str(home)).stdout.strip()
    wrong = "frk_" + "z" * 43
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with serve_process(home, port, "--host", "0.0.0.0", "--no-preload") as proc:
        wait_http(f"{base}/health", proc=proc)
        for k in (key, wrong):
            for headers in ({"authorization": f"Bearer {k}"}, {"x-api-key": k}):
                httpx.get(f"{base}/v1/files", headers=headers)
                httpx.post(f"{base}/v1/batches", json={"input_file_id": "x"}, headers=headers)
            httpx.post(f"{base}/ui/login", data={"api_key": k})
            httpx.get(f"{base}/v1/files", params={"api_key": k})  # a key pasted into a URL
        assert httpx.get(f"{base}/v1/files", headers={"x-api-key": key}).status_code == 200
        assert httpx.get(f"{base}/v1/files", headers={"x-api-key": wrong}).status_code == 401
    output = next(home.glob("serve-*.log")).read_text()
    assert '"GET /v1/files HTTP/1.1" 401' in output  # the access log was captured
    assert f"GET /v1/files?api_key={key[:12]}... HTTP/1.1" in output  # redacted
    assert "single-user" not in output
    for k in (key, wrong):
        assert k not in output and k[12:] not in output
