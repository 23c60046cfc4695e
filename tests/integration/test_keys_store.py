"""API keys and project usage in the store, on SQLite and PostgreSQL."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from freight.config import SecuritySettings
from freight.errors import NotFound, Unauthorized
from freight.service import access
from freight.store import api_keys, batches, files, project_usage
from freight.store.db import open_database
from tests.conftest import make_settings


def test_keys_identify_their_project_until_revoked_or_expired(
    database_url: str, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path / "home", database_url=database_url)
    db = open_database(database_url, tmp_path)
    ring = access.KeyRing(settings, db)
    assert not ring.is_enabled()
    assert ring.identify(None) == access.SINGLE_USER  # no keys: single-user
    assert ring.identify("frk_anything") == access.SINGLE_USER
    record, key = ring.create("alpha")
    _, admin_key = ring.create("ops", is_admin=True)
    assert ring.is_enabled()
    assert ring.identify(key) == access.Identity("alpha") and ring.identify(key).scope == "alpha"
    assert ring.identify(admin_key).scope is None
    with pytest.raises(Unauthorized, match="Missing API key"):
        ring.identify(None)
    with pytest.raises(Unauthorized, match="Invalid API key"):
        ring.identify(key + "x")
    with db.write() as conn:
        api_keys.revoke(conn, record.prefix, int(time.time()))
        with pytest.raises(NotFound):
            api_keys.revoke(conn, "frk_unknown", 0)
    with pytest.raises(Unauthorized, match="revoked"):
        ring.identify(key)
    _, expiring = ring.create("alpha", expires_in_days=0)
    with pytest.raises(Unauthorized, match="expired"):
        ring.identify(expiring)
    # the same key under another server secret is another hash: no match
    other = make_settings(
        tmp_path / "home2",
        database_url=database_url,
        security=SecuritySettings(key_secret="another-secret-of-16+"),
    )
    with pytest.raises(Unauthorized, match="Invalid API key"):
        access.KeyRing(other, db).identify(admin_key)
    db.dispose()


def test_project_usage_counts_only_that_projects_open_work_and_files(
    database_url: str, tmp_path: Path
) -> None:
    db = open_database(database_url, tmp_path)
    now = int(time.time())
    with db.write() as conn:
        records = [
            files.new_record(project=project, filename="x", purpose="batch", num_bytes=size)
            for project, size in (("a", 100), ("a", 50), ("b", 7))
        ]
        for record in records:
            files.insert(conn, record)
        common = dict(
            api="openai",
            endpoint="/v1/chat/completions",
            completion_window="24h",
            created_at=now,
            expires_at=now + 60,
        )
        batches.insert(conn, id="b1", project="a", num_total=10, **common)
        batches.transition(conn, "b1", "in_progress")
        batches.add_counts(conn, "b1", num_succeeded=4)
        batches.insert(conn, id="b2", project="a", num_total=5, **common)
        batches.transition(conn, "b2", "failed")  # ended: nothing open
        batches.insert(conn, id="b3", project="b", num_total=3, **common)
        batches.insert(conn, id="b4", project="a", input_file_id=records[0].id, **common)
        assert project_usage.stored_bytes(conn, "a") == 150
        assert project_usage.stored_bytes(conn, "nobody") == 0
        work = project_usage.open_work(conn, "a")
        assert work.num_open == 6
        assert work.unvalidated_blobs == [records[0].blob]  # b4, not yet ingested
    db.dispose()
