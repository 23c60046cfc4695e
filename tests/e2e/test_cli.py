"""The `freight` CLI as a user runs it: `run` offline against the API path, client commands."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import (
    CHAT_MODEL,
    LiveServer,
    chat_line,
    make_settings,
    run_cli,
    run_offline,
    wait_for_batch,
    write_jsonl,
)
from tests.sdk import batch_lines, output_lines


def contents(lines: list[dict]) -> dict[str, str]:
    return {
        x["custom_id"]: x["response"]["body"]["choices"][0]["message"]["content"] for x in lines
    }


@pytest.mark.slow
def test_run_gives_the_same_outputs_as_the_api(real_server: LiveServer, tmp_path: Path) -> None:
    """Greedy decoding in fp32 is batch-invariant: `freight run`'s path (offline.py, on
    the session's engine) and the API's agree. Two engines agreeing: test_ray; the
    `freight run` command itself: the tests below and test_ray's `--ray` run."""
    prompts = [
        "Name a color.",
        "What is 2 + 2?",
        "Say hello in French.",
        "Give one word for happy.",
        "What is the capital of Italy?",
        "Name a fruit.",
        "Write a haiku about rain.",
        "Count to five.",
    ]
    lines = [chat_line(f"q{i}", p, max_tokens=24, temperature=0) for i, p in enumerate(prompts)]
    path = write_jsonl(tmp_path / "in.jsonl", lines)

    settings = make_settings(tmp_path / "home")
    code, printed = run_offline(real_server, settings, path, tmp_path / "out.jsonl")
    assert code == 0, printed
    assert "completed: 8 succeeded, 0 failed" in printed
    offline = batch_lines((tmp_path / "out.jsonl").read_text())
    assert [x["custom_id"] for x in offline] == [x["custom_id"] for x in lines]  # input order

    client = real_server.openai()
    uploaded = client.files.create(file=path, purpose="batch")
    batch = client.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    batch = wait_for_batch(client, batch.id)
    online = output_lines(client, batch.output_file_id)
    assert contents(offline) == contents(online)
    for x in offline:
        assert x["response"]["body"]["model"] == CHAT_MODEL


def test_run_reports_validation_errors_with_lines_and_exit_code(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "in.jsonl",
        [chat_line("a", "x", model="echo"), "{broken", chat_line("a", "y", model="echo")],
    )
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "freight.toml").write_text('[[models]]\nname = "echo"\nengine = "echo"\n')
    done = run_cli(
        "run", str(path), "-o", str(tmp_path / "out.jsonl"), "--home", str(tmp_path / "home")
    )
    assert done.returncode == 1
    assert "invalid_json_line" in done.stderr and "duplicate_custom_id" in done.stderr
    assert not (tmp_path / "out.jsonl").exists()


def test_run_splits_error_lines_and_exits_3(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "freight.toml").write_text('[[models]]\nname = "echo"\nengine = "echo"\n')
    path = write_jsonl(
        tmp_path / "in.jsonl",
        [chat_line("ok", "hi", model="echo"), chat_line("bad", "hi", model="echo", max_tokens=0)],
    )
    done = run_cli(
        "run",
        str(path),
        "-o",
        str(tmp_path / "out.jsonl"),
        "--errors",
        str(tmp_path / "err.jsonl"),
        "--home",
        str(home),
    )
    assert done.returncode == 3, done.stderr
    assert [x["custom_id"] for x in batch_lines((tmp_path / "out.jsonl").read_text())] == ["ok"]
    (bad,) = batch_lines((tmp_path / "err.jsonl").read_text())
    assert bad["custom_id"] == "bad" and bad["response"]["status_code"] == 400


def test_bad_arguments_exit_2_with_a_message(tmp_path: Path) -> None:
    done = run_cli("run", str(tmp_path / "missing.jsonl"), "-o", str(tmp_path / "o.jsonl"))
    assert done.returncode == 2 and "does not exist" in done.stderr
    (tmp_path / "freight.toml").write_text("[engine]\ndtipe = 'x'\n")
    done = run_cli(
        "run",
        str(tmp_path / "missing.jsonl"),
        "-o",
        "o",
        env={"FREIGHT_CONFIG": str(tmp_path / "freight.toml")},
    )
    assert done.returncode == 2


def test_bad_config_key_is_an_error_naming_it(tmp_path: Path) -> None:
    (tmp_path / "freight.toml").write_text("[engine]\ndtipe = 'x'\n")
    path = write_jsonl(tmp_path / "in.jsonl", [chat_line("a", "x")])
    done = run_cli(
        "run",
        str(path),
        "-o",
        str(tmp_path / "o.jsonl"),
        env={"FREIGHT_CONFIG": str(tmp_path / "freight.toml")},
    )
    assert done.returncode == 2
    assert "engine.dtipe" in done.stderr


def test_client_commands_against_a_server(echo_server: LiveServer, tmp_path: Path) -> None:
    env = {"FREIGHT_BASE_URL": f"{echo_server.base_url}/v1"}
    path = write_jsonl(
        tmp_path / "in.jsonl", [chat_line(f"r{i}", "hi", model="echo") for i in range(3)]
    )
    up = run_cli("files", "upload", str(path), "-q", env=env, check=True)
    file_id = up.stdout.strip()
    assert file_id.startswith("file-")
    created = run_cli(
        "batches",
        "create",
        "--input-file-id",
        file_id,
        "--metadata",
        "team=qa",
        "-q",
        env=env,
        check=True,
    )
    batch_id = created.stdout.strip()
    waited = run_cli(
        "batches", "wait", batch_id, "--interval", "0.1", "-o", str(tmp_path / "out.jsonl"), env=env
    )
    assert waited.returncode == 0, waited.stderr
    assert json.loads(waited.stdout)["status"] == "completed"
    assert len(batch_lines((tmp_path / "out.jsonl").read_text())) == 3
    listed = run_cli("batches", "list", env=env, check=True)
    assert batch_id in listed.stdout
    models = run_cli("models", env=env, check=True)
    rows = [line.split(maxsplit=1) for line in models.stdout.splitlines()]
    assert ["echo", "cpu"] in rows  # its engine ran the batch: the device it runs on
    assert ["smollm2-135m-instruct", "not started"] in rows
    missing = run_cli("batches", "get", "batch_nope", env=env)
    assert missing.returncode == 2 and "No such batch" in missing.stderr  # an unknown id
    cancel = run_cli("batches", "cancel", batch_id, env=env)
    assert cancel.returncode == 2 and "409" in cancel.stderr  # refused as given
    unreachable = run_cli("models", env={"FREIGHT_BASE_URL": "http://127.0.0.1:9/v1"})
    assert unreachable.returncode == 1 and "cannot reach" in unreachable.stderr
    assert "freight serve" in unreachable.stderr and "--base-url" in unreachable.stderr
