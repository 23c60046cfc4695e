"""FREIGHT_HOME is private to its user: folders 0700, files 0600, whatever the umask.

A server runs a file upload, an OpenAI batch and a Message Batch to the end (database,
its -wal/-shm, uploads, result files, the dashboard secret), and then every path in the
home is checked. Before, the database and blobs were 0644 in a 0755 home.
"""

from __future__ import annotations

import json
import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from freight.service.runtime import Service
from freight.store import db as db_module
from tests.conftest import (
    LiveServer,
    chat_line,
    make_settings,
    wait_for_batch,
    wait_for_message_batch,
)


@pytest.fixture
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    previous = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(previous)


def loose_paths(home: Path) -> list[str]:
    """Every path in `home` (and home itself) whose mode is not 0700 (folders) / 0600."""
    found = []
    for path in [home, *home.rglob("*")]:
        mode = path.lstat().st_mode
        expected = 0o700 if stat.S_ISDIR(mode) else 0o600
        if stat.S_IMODE(mode) != expected:
            found.append(f"{path.relative_to(home.parent)} {oct(stat.S_IMODE(mode))}")
    return found


@pytest.mark.parametrize("umask", [0o022, 0o000], indirect=True, ids=["022", "000"])
def test_everything_freight_writes_in_its_home_is_private(tmp_path: Path, umask: int) -> None:
    home = tmp_path / "home"
    server = LiveServer(Service(make_settings(home))).start()
    try:
        client = server.openai()
        data = "".join(json.dumps(chat_line(f"r{i}", "hi", model="echo")) + "\n" for i in range(3))
        upload = client.files.create(file=("in.jsonl", data.encode()), purpose="batch")
        batch = client.batches.create(
            input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        assert wait_for_batch(client, batch.id, timeout=120).status == "completed"
        client.close()
        claude = server.anthropic()
        params = {"model": "echo", "max_tokens": 4, "messages": [{"role": "user", "content": "x"}]}
        message_batch = claude.messages.batches.create(
            requests=[{"custom_id": "a", "params": params}]  # type: ignore[list-item]
        )
        wait_for_message_batch(claude, message_batch.id)
        claude.close()
        names = {p.name for p in home.rglob("*")}
        assert {"freight.db", "freight.db-wal", "freight.db-shm"} <= names  # while it runs
        assert any(n.endswith(".results.jsonl") for n in names)
        assert loose_paths(home) == []
    finally:
        server.stop()
    assert loose_paths(home) == []


def test_an_existing_loose_home_is_tightened_on_start_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    home = tmp_path / "home"
    (home / "files").mkdir(parents=True)
    os.chmod(home, 0o755)
    os.chmod(home / "files", 0o755)
    for path in (home / "freight.db", home / "files" / "blob-old", home / "secret.key"):
        path.write_bytes(b"")
        os.chmod(path, 0o644)
    not_ours = home / "notes.txt"  # someone else's file in the same folder: left as it is
    not_ours.write_bytes(b"")
    os.chmod(not_ours, 0o644)
    db_file = home / "freight.db"
    caplog.set_level(logging.WARNING, logger="freight.store.private")
    db = db_module.open_database(f"sqlite:///{db_file}", home)
    db.dispose()
    assert loose_paths(home) == [f"home/notes.txt {oct(0o644)}"]
    assert any("open to other users" in r.getMessage() for r in caplog.records)
    # a home already private is not walked again, and nothing is logged
    caplog.clear()
    db_module.open_database(f"sqlite:///{db_file}", home).dispose()
    assert not any("open to other users" in r.getMessage() for r in caplog.records)
