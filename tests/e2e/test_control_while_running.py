"""Control while it runs (issue 21, points 1 and 2), end to end through the official
`openai` SDK and the CLI: GET /v1/batches/{id}/results while a batch runs, `freight
batches watch` killed and restarted, POST /v1/batches/{id}/retry after a cancel, and
`freight run --resume`.

The acceptance tests run on the session's real engine; the refusals (bad parameters,
another project's batch, a batch not ended) on the echo engine.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from openai.types import Batch

from freight.store import batches
from tests.conftest import (
    TEST_ENGINE_ENV,
    LiveServer,
    chat_line,
    run_cli,
    wait_for_batch,
    write_jsonl,
)
from tests.sdk import batch_lines
from tests.waiting import wait_until

TERMINAL = {"completed", "failed", "expired", "cancelled"}


def create_batch(client: openai.OpenAI, path: Path, **kwargs: Any) -> Batch:
    with open(path, "rb") as fh:
        uploaded = client.files.create(file=fh, purpose="batch")
    return client.batches.create(
        input_file_id=uploaded.id,
        endpoint="/v1/chat/completions",
        completion_window="24h",
        **kwargs,
    )


def chat_lines(tmp_path: Path, num: int, max_tokens: int, model: str | None = None) -> Path:
    extra = {} if model is None else {"model": model}
    lines = [
        chat_line(f"r{i}", f"Say a word about the number {i}.", max_tokens=max_tokens, **extra)
        for i in range(num)
    ]
    return write_jsonl(tmp_path / "in.jsonl", lines)


def short_and_long_lines(tmp_path: Path, num: int, *, every: int, long_tokens: int) -> Path:
    """Every `every`-th request answers in 4 tokens, the others count for `long_tokens`:
    the engine runs them all at once, so the short ones land well before the long ones
    end (a batch that is seen running with lines already out)."""
    lines = [
        chat_line(f"r{i}", "Say hi.", max_tokens=4)
        if i % every == 0
        else chat_line(
            f"r{i}", "Count from 1 to 1000, separated by commas.", max_tokens=long_tokens
        )
        for i in range(num)
    ]
    return write_jsonl(tmp_path / "in.jsonl", lines)


def results_page(
    client: openai.OpenAI, batch_id: str, after: str | None = None, limit: int | None = None
) -> httpx.Response:
    """GET /v1/batches/{id}/results through the SDK's own client (an extension route)."""
    params: dict[str, Any] = {}
    if after is not None:
        params["after"] = after
    if limit is not None:
        params["limit"] = limit
    response: httpx.Response = client.get(
        f"/batches/{batch_id}/results", cast_to=httpx.Response, options={"params": params}
    )
    return response


def retry(client: openai.OpenAI, batch_id: str, body: dict[str, Any] | None = None) -> Batch:
    return client.post(f"/batches/{batch_id}/retry", cast_to=Batch, body=body or {})


def file_lines(client: openai.OpenAI, file_id: str | None) -> list[dict[str, Any]]:
    return batch_lines(client.files.content(file_id).text) if file_id else []


def canonical(lines: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return {(line["custom_id"], json.dumps(line, sort_keys=True)) for line in lines}


@pytest.mark.slow
def test_results_while_running_serve_every_line_once_and_equal_the_final_files(
    real_server: LiveServer, tmp_path: Path
) -> None:
    client = real_server.openai()
    batch = create_batch(client, chat_lines(tmp_path, 120, max_tokens=4))
    read: list[dict[str, Any]] = []
    num_read_while_running = 0
    cursor: str | None = None
    deadline = time.monotonic() + 600
    while True:
        assert time.monotonic() < deadline, "the batch did not end in 10 minutes"
        page = results_page(client, batch.id, after=cursor, limit=37)
        assert page.headers["content-type"].startswith("application/jsonl")
        lines = batch_lines(page.text)
        read += lines
        if page.headers["freight-batch-status"] not in TERMINAL:
            num_read_while_running += len(lines)
        next_cursor = page.headers["freight-next-cursor"]
        assert lines or next_cursor == (cursor or "0")
        cursor = next_cursor
        if page.headers["freight-results-complete"] == "true":
            break
        if len(lines) < 37:
            time.sleep(0.05)
    assert num_read_while_running > 0  # some lines came before the batch ended
    ended = client.batches.retrieve(batch.id)
    assert ended.status == "completed"
    custom_ids = [line["custom_id"] for line in read]
    assert len(custom_ids) == 120 and len(set(custom_ids)) == 120  # each exactly once
    final = file_lines(client, ended.output_file_id) + file_lines(client, ended.error_file_id)
    assert canonical(read) == canonical(final)
    # read again from the start once it has ended: the same lines, in the same order
    again = results_page(client, batch.id, limit=1000)
    assert batch_lines(again.text) == read
    assert again.headers["freight-results-complete"] == "true"


def watch_command(base_url: str, batch_id: str, output: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "freight.cli.main",
        "batches",
        "watch",
        batch_id,
        "-o",
        str(output),
        "--interval",
        "0.05",
        "--base-url",
        f"{base_url}/v1",
    ]


@pytest.mark.slow
def test_watch_killed_mid_run_and_restarted_ends_with_the_same_file(
    real_server: LiveServer, tmp_path: Path
) -> None:
    client = real_server.openai()
    num = 30
    batch = create_batch(client, short_and_long_lines(tmp_path, num, every=6, long_tokens=64))
    out = tmp_path / "watched.jsonl"
    env = {**os.environ, **TEST_ENGINE_ENV}
    proc = subprocess.Popen(
        watch_command(real_server.base_url, batch.id, out),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(
            lambda: out.exists() and out.read_bytes().count(b"\n") >= 1,
            timeout=300,
            interval=0.02,
            what="the watch to write its first lines",
        )
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert client.batches.retrieve(batch.id).status not in TERMINAL  # killed mid-run
    written_before = out.read_bytes().count(b"\n")
    restarted = run_cli(*watch_command(real_server.base_url, batch.id, out)[3:], env=env)
    assert restarted.returncode in (0, 3), restarted.stderr
    ended = wait_for_batch(client, batch.id)
    clean = tmp_path / "clean.jsonl"
    rerun = run_cli(*watch_command(real_server.base_url, batch.id, clean)[3:], env=env)
    assert rerun.returncode == restarted.returncode, rerun.stderr
    assert out.read_bytes() == clean.read_bytes()
    watched = batch_lines(out.read_text())
    assert len(watched) == num > written_before
    final = file_lines(client, ended.output_file_id) + file_lines(client, ended.error_file_id)
    assert canonical(watched) == canonical(final)


@pytest.mark.slow
def test_a_batch_cancelled_half_way_then_retried_answers_every_custom_id_once(
    real_server: LiveServer, tmp_path: Path
) -> None:
    client = real_server.openai()
    num = 40
    path = short_and_long_lines(tmp_path, num, every=4, long_tokens=64)
    batch = create_batch(client, path, metadata={"team": "ml"})
    wait_until(
        lambda: client.batches.retrieve(batch.id).request_counts.completed >= 5,  # type: ignore[union-attr]
        timeout=300,
        interval=0.02,
        what="the first answers",
    )
    with pytest.raises(openai.ConflictError) as not_ended:
        retry(client, batch.id)
    assert "batch_not_ended" in str(not_ended.value.body)
    client.batches.cancel(batch.id)
    cancelled = wait_for_batch(client, batch.id)
    assert cancelled.status == "cancelled"
    counts = cancelled.request_counts
    assert counts is not None and 0 < counts.completed < num  # cancelled half way
    retried = retry(client, batch.id)
    assert retried.metadata == {"team": "ml", "freight_retry_of": batch.id}
    assert retried.endpoint == batch.endpoint
    assert retried.completion_window == batch.completion_window
    second = wait_for_batch(client, retried.id)
    assert second.status == "completed"
    assert second.request_counts is not None
    assert second.request_counts.total == num - counts.completed
    succeeded = [
        line["custom_id"]
        for b in (cancelled, second)
        for line in file_lines(client, b.output_file_id)
    ]
    assert sorted(succeeded) == sorted(f"r{i}" for i in range(num))  # each exactly once


# --- refusals and the smaller pieces, on the echo engine --------------------------------------


def test_results_parameters_and_projects_are_checked(echo_server: LiveServer) -> None:
    _, alpha = echo_server.svc.keys.create("alpha")
    _, beta = echo_server.svc.keys.create("beta")
    client = openai.OpenAI(base_url=f"{echo_server.base_url}/v1", api_key=alpha)
    path = write_jsonl(
        echo_server.svc.settings.home / "in.jsonl",
        [chat_line(f"e{i}", "hi", model="echo") for i in range(3)],
    )
    batch = create_batch(client, path)
    for params, name in (({"limit": "0"}, "limit"), ({"after": "-3"}, "after")):
        with pytest.raises(openai.BadRequestError) as bad:
            results_page(client, batch.id, **params)
        assert bad.value.param == name  # type: ignore[attr-defined]
    other = openai.OpenAI(base_url=f"{echo_server.base_url}/v1", api_key=beta)
    with pytest.raises(openai.NotFoundError):
        results_page(other, batch.id)
    with pytest.raises(openai.NotFoundError):
        retry(other, batch.id)
    ended = wait_for_batch(client, batch.id)
    assert ended.status == "completed"
    page = results_page(client, batch.id, limit=2)
    assert len(batch_lines(page.text)) == 2
    assert page.headers["freight-results-complete"] == "false"
    rest = results_page(client, batch.id, after=page.headers["freight-next-cursor"])
    assert len(batch_lines(rest.text)) == 1
    assert rest.headers["freight-results-complete"] == "true"
    with pytest.raises(openai.ConflictError) as nothing:
        retry(client, batch.id)
    assert "nothing_to_retry" in str(nothing.value.body)
    with pytest.raises(openai.BadRequestError) as bad_body:
        retry(client, batch.id, {"include": ["everything"]})
    assert "include" in str(bad_body.value.body)


def ok_and_invalid_lines(tmp_path: Path) -> Path:
    """One echo request that succeeds and one refused as invalid (`max_tokens` 0)."""
    return write_jsonl(
        tmp_path / "in.jsonl",
        [chat_line("ok", "hi", model="echo"), chat_line("bad", "hi", model="echo", max_tokens=0)],
    )


def test_retry_includes_invalid_requests_only_when_asked_and_from_the_cli(
    echo_server: LiveServer, tmp_path: Path
) -> None:
    client = echo_server.openai()
    path = ok_and_invalid_lines(tmp_path)
    batch = create_batch(client, path)
    assert wait_for_batch(client, batch.id).request_counts.failed == 1  # type: ignore[union-attr]
    with pytest.raises(openai.ConflictError):
        retry(client, batch.id)  # a 4xx line is the request's own fault: not by default
    base = f"{echo_server.base_url}/v1"
    done = run_cli("batches", "retry", batch.id, "--include-invalid", "-q", "--base-url", base)
    assert done.returncode == 0, done.stderr
    retried = wait_for_batch(client, done.stdout.strip())
    assert retried.metadata == {"freight_retry_of": batch.id}
    (line,) = file_lines(client, retried.error_file_id)
    assert line["custom_id"] == "bad"
    with httpx.Client(base_url=echo_server.base_url, timeout=30) as browser:
        assert browser.post("/ui/login", data={"api_key": ""}).status_code == 303
        page = browser.get(f"/ui/batches/{batch.id}")
        assert "Latest answers" in page.text and "Retry the requests" in page.text
        pressed = browser.post(f"/ui/batches/{batch.id}/retry")
        assert pressed.status_code == 409  # the button retries the default set: none here
        assert "nothing to retry" in pressed.text


def test_a_retry_keeps_the_output_expiry_priority_and_cache_switch(
    echo_server: LiveServer, tmp_path: Path
) -> None:
    client = echo_server.openai()
    path = ok_and_invalid_lines(tmp_path)
    batch = create_batch(
        client,
        path,
        output_expires_after={"anchor": "created_at", "seconds": 7200},
        extra_body={"priority": 5, "cache": False},
    )
    wait_for_batch(client, batch.id)
    retried = retry(client, batch.id, {"include": ["invalid_request"]})
    with echo_server.svc.db.read() as conn:
        original, again = (batches.get(conn, b, None) for b in (batch.id, retried.id))
    assert (again.output_expires_after, again.priority, again.cache) == (7200, 5, False)
    assert (original.output_expires_after, original.priority, original.cache) == (7200, 5, False)


def test_run_resume_runs_only_the_custom_ids_the_output_lacks(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "freight.toml").write_text('[[models]]\nname = "echo"\nengine = "echo"\n')
    source = write_jsonl(
        tmp_path / "in.jsonl", [chat_line(c, f"hi {c}", model="echo") for c in "abcd"]
    )
    out = tmp_path / "out.jsonl"
    first = run_cli("run", str(source), "-o", str(out), "--home", str(home))
    assert first.returncode == 0, first.stderr
    lines = out.read_text().splitlines(keepends=True)
    kept = [line for line in lines if json.loads(line)["custom_id"] in ("b", "d")]
    out.write_text("".join(kept) + lines[0][:15])  # as if killed: two lines and a cut one
    again = run_cli("run", str(source), "-o", str(out), "--resume", "--home", str(home))
    assert again.returncode == 0, again.stderr
    assert "2 lines already in" in again.stderr
    resumed = batch_lines(out.read_text())
    assert [line["custom_id"] for line in resumed[:2]] == [
        json.loads(line)["custom_id"] for line in kept
    ]
    assert sorted(line["custom_id"] for line in resumed) == ["a", "b", "c", "d"]
    nothing_left = run_cli("run", str(source), "-o", str(out), "--resume", "--home", str(home))
    assert nothing_left.returncode == 0 and "0 to run" in nothing_left.stderr
    assert len(batch_lines(out.read_text())) == 4


@pytest.mark.slow
def test_run_resume_on_the_real_engine_appends_only_the_missing_custom_ids(
    real_server: LiveServer, tmp_path: Path
) -> None:
    """What `freight run --resume` does (cli/run.py), on the session's engine: the lines
    of the custom_ids the output lacks are run and appended, the others kept as they are."""
    from rich.console import Console

    from freight.service import offline, resume_file

    source = chat_lines(tmp_path, 6, max_tokens=4)
    out = tmp_path / "out.jsonl"
    kept = '{"id": "x", "custom_id": "r1", "response": null, "error": null}\n'
    out.write_text(kept + '{"id": "y", "custom_id": "r4", "resp')  # killed mid-line
    left = resume_file.remaining(source, resume_file.done_custom_ids(out), tmp_path / "left.jsonl")
    assert (left.num_lines, left.num_skipped) == (5, 1)
    run = offline.run_file_async(
        real_server.svc.settings,
        left.path,
        out,
        None,
        None,
        console=Console(file=io.StringIO()),
        engines=real_server.svc.engines,
        append=True,
    )
    assert real_server.run_in_loop(run) == 0
    text = out.read_text()
    assert text.startswith(kept)
    appended = batch_lines(text[len(kept) :])
    assert sorted(line["custom_id"] for line in appended) == ["r0", "r2", "r3", "r4", "r5"]
