"""Batch files with the corpus on a line: uploaded, a batch created on them, run to the end.

Each file has the hostile line first and a valid line (`ok`) after it, and goes through
the real path: POST /v1/files, POST /v1/batches, the worker's ingest, run and finalize.
The batch must reach a terminal status within the deadline; its output and error files
must be strict JSON Lines; a line that is not valid JSON must not be run (the batch
fails naming line 1, or the line gets an error result); otherwise the valid line still
gets its answer. And the process must survive it all under the memory cap.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.hostile import corpus
from tests.hostile.capped_server import CappedServer, report
from tests.hostile.routes import BATCH_LINE, STRUCTURED_CHAT, strict_json

pytestmark = pytest.mark.slow

OK_LINE = json.dumps({**BATCH_LINE, "custom_id": "ok"}).encode()
STRUCTURED_LINE = {**BATCH_LINE, "body": STRUCTURED_CHAT}
# Where the value goes: a line's message, its JSON schema, its custom_id, the whole line.
SLOTS: dict[str, tuple[dict[str, Any], tuple[str | int, ...]] | None] = {
    "content": (BATCH_LINE, ("body", "messages", 0, "content")),
    "schema": (STRUCTURED_LINE, ("body", "response_format", "json_schema", "schema")),
    "custom_id": (BATCH_LINE, ("custom_id",)),
    "line": None,
}


def _hostile_line(slot: str, value: corpus.Value) -> bytes:
    where = SLOTS[slot]
    return value.raw if where is None else corpus.splice(where[0], where[1], value.raw)


@pytest.mark.parametrize("value", corpus.VALUES, ids=lambda v: v.name)
def test_batch_files_with_hostile_line_end(server: CappedServer, value: corpus.Value) -> None:
    """One batch per slot, created together (each takes about half a second to end, most
    of it the worker's housekeeping interval), then each run to its end and checked."""
    problems: list[str] = []
    created: dict[str, str] = {}
    must_fail: dict[str, bool] = {}
    try:
        for slot in SLOTS:
            hostile = _hostile_line(slot, value)
            # JSON, but not one request object: that fails the file, not just the line.
            must_fail[slot] = not value.is_json or slot == "line"
            content = hostile + b"\n" + OK_LINE + b"\n"
            batch_id, found = _create(server, content)
            problems += [f"{slot}: {p}" for p in found]
            if batch_id is not None:
                created[slot] = batch_id
        for slot, batch_id in created.items():
            found = _check_ended(server, batch_id, must_fail=must_fail[slot])
            problems += [f"{slot}: {p}" for p in found]
    except httpx.TransportError as exc:
        problems.append(f"no answer: {exc!r}")
    problems += server.problems()
    if problems:
        server.needs_restart = True
    assert not problems, report(server, f"batch files with {value.name} on a line", problems)


def _create(server: CappedServer, content: bytes) -> tuple[str | None, list[str]]:
    """Upload `content` and create a batch on it: (its id if created, problems)."""
    uploaded = server.client.post(
        "/v1/files", files={"file": ("hostile.jsonl", content)}, data={"purpose": "batch"}
    )
    if uploaded.status_code != 200:
        return None, [f"the upload answered {uploaded.status_code}: {uploaded.text[:300]}"]
    created = server.client.post(
        "/v1/batches",
        json={
            "input_file_id": uploaded.json()["id"],
            "endpoint": "/v1/chat/completions",
            "completion_window": "24h",
        },
    )
    if created.status_code >= 500:
        return None, [f"the batch create answered {created.status_code}: {created.text[:300]}"]
    if created.status_code != 200:
        return None, []  # refused at create, in the API's shape (test_bodies checks shapes)
    return str(created.json()["id"]), []


def _check_ended(server: CappedServer, batch_id: str, *, must_fail: bool) -> list[str]:
    batch, problems = server.wait_batch_ended("openai", batch_id)
    if problems or batch is None:
        return problems
    results: dict[str, list[dict[str, Any]]] = {}
    for key in ("output_file_id", "error_file_id"):
        if batch.get(key):
            problems += _read_results(server, batch[key], results)
    if batch["status"] == "failed":
        lines = [e.get("line") for e in (batch.get("errors") or {}).get("data", [])]
        if 1 not in lines:
            problems.append(f"the batch failed without naming line 1: {batch.get('errors')}")
        return problems
    if batch["status"] != "completed":
        return [*problems, f"the batch ended '{batch['status']}', not completed or failed"]
    if must_fail:
        hostile = [r for cid, rs in results.items() if cid != "ok" for r in rs]
        if any(r.get("response") and r["response"].get("status_code") == 200 for r in hostile):
            problems.append(f"a line that is not a valid request was run: {hostile}")
    ok = results.get("ok", [])
    if len(ok) != 1 or (ok[0].get("response") or {}).get("status_code") != 200:
        problems.append(f"the valid line after the hostile one did not get one answer: {ok}")
    return problems


def _read_results(
    server: CappedServer, file_id: str, results: dict[str, list[dict[str, Any]]]
) -> list[str]:
    answer = server.get(f"/v1/files/{file_id}/content")
    if answer.status_code != 200:
        return [f"GET the file {file_id} answered {answer.status_code}: {answer.text[:200]}"]
    problems = []
    for number, line in enumerate(answer.content.splitlines(), 1):
        try:
            result = strict_json(line.decode("utf-8"))
        except ValueError as exc:
            problems.append(
                f"line {number} of {file_id} is not strict JSON ({exc}): {line[:200]!r}"
            )
            continue
        results.setdefault(str(result.get("custom_id")), []).append(result)
    return problems
