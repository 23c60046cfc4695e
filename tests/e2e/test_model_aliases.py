"""Model aliases end to end: files and client code written for hosted models (gpt-4o-mini,
claude-haiku-4-5, text-embedding-3-small) run unchanged through the official SDKs and
`freight run`, and what is recorded (results, batches, `freight report`) names the
model itself. The registry and validators alone: tests/unit/test_model_aliases.py."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from freight.cli import main
from freight.config import DEFAULT_EMBEDDING_MODEL, ModelSettings
from freight.service.runtime import Service
from tests.conftest import (
    CHAT_MODEL,
    LiveServer,
    chat_line,
    make_settings,
    run_offline,
    wait_for_batch,
    wait_for_message_batch,
    write_jsonl,
)
from tests.sdk import batch_lines, message_batch_results, output_lines

ALIASED = [
    ModelSettings(name="echo", engine="echo", aliases=["gpt-4o-mini", "claude-haiku-4-5"]),
    ModelSettings(
        name=DEFAULT_EMBEDDING_MODEL, engine="embeddings", aliases=["text-embedding-3-small"]
    ),
]
ALIASES_TOML = """
[[models]]
name = "echo"
engine = "echo"
aliases = ["gpt-4o-mini", "claude-haiku-4-5"]
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    home = tmp_path_factory.mktemp("aliases") / "home"
    live = LiveServer(Service(make_settings(home, models=ALIASED))).start()
    yield live
    live.stop()


def test_models_lists_each_alias_as_a_model(server: LiveServer) -> None:
    client = server.openai()
    ids = {card.id for card in client.models.list()}
    assert {"echo", "gpt-4o-mini", "claude-haiku-4-5", "text-embedding-3-small"} <= ids
    assert client.models.retrieve("gpt-4o-mini").id == "gpt-4o-mini"
    shown = CliRunner().invoke(main.app, ["models", "--base-url", f"{server.base_url}/v1"])
    assert shown.exit_code == 0, shown.output
    rows = dict(line.split(maxsplit=1) for line in shown.stdout.splitlines())
    assert rows["echo"] in ("cpu", "not started")
    assert rows["gpt-4o-mini"] == f"{rows['echo']} (alias of echo)"  # its model's device


def test_real_time_requests_naming_an_alias_are_served_by_its_model(server: LiveServer) -> None:
    chat = server.openai().chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], max_tokens=4
    )
    assert chat.model == "echo" and chat.choices[0].message.content
    message = server.anthropic().messages.create(
        model="claude-haiku-4-5", max_tokens=4, messages=[{"role": "user", "content": "hi"}]
    )
    assert message.model == "echo"
    embedded = server.openai().embeddings.create(model="text-embedding-3-small", input=["hi"])
    assert embedded.model == DEFAULT_EMBEDDING_MODEL and len(embedded.data[0].embedding) == 384


def test_a_batch_file_for_gpt_4o_mini_runs_unchanged_and_is_reported_under_the_model(
    server: LiveServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = server.openai()
    path = write_jsonl(
        tmp_path / "in.jsonl", [chat_line(f"r{i}", "hi", model="gpt-4o-mini") for i in range(3)]
    )
    uploaded = client.files.create(file=path, purpose="batch")
    batch = client.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    batch = wait_for_batch(client, batch.id)
    assert batch.status == "completed" and batch.request_counts.completed == 3
    assert batch.model == "echo"
    lines = output_lines(client, batch.output_file_id)
    assert {x["response"]["body"]["model"] for x in lines} == {"echo"}

    anthropic = server.anthropic()
    params = {
        "model": "claude-haiku-4-5",
        "max_tokens": 4,
        "messages": [{"role": "user", "content": "hi"}],
    }
    created = anthropic.messages.batches.create(requests=[{"custom_id": "m", "params": params}])
    wait_for_message_batch(anthropic, created.id)
    (result,) = message_batch_results(anthropic, created.id)
    assert result.result.type == "succeeded" and result.result.message.model == "echo"

    home = str(server.svc.settings.home)
    monkeypatch.setenv("FREIGHT_HOME", home)  # --home sets it; restored after the test
    shown = CliRunner().invoke(main.app, ["report", "--home", home, "--json"])
    assert shown.exit_code == 0, shown.output
    rows = json.loads(shown.stdout)["rows"]
    assert {r["model"] for r in rows if r["kind"] == "batch"} == {"echo"}
    assert "gpt-4o-mini" not in shown.stdout and "claude-haiku-4-5" not in shown.stdout


def test_freight_run_takes_an_alias_or_model_for_every_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "freight.toml").write_text(ALIASES_TOML)
    monkeypatch.setenv("FREIGHT_HOME", str(home))  # --home sets it; restored after the test
    monkeypatch.delenv("FREIGHT_CONFIG", raising=False)
    path = write_jsonl(
        tmp_path / "in.jsonl",
        [chat_line("a", "hi", model="gpt-4o-mini"), chat_line("b", "hi", model="echo")],
    )
    runner = CliRunner()
    done = runner.invoke(main.app, ["run", str(path), "-o", str(tmp_path / "out.jsonl")])
    assert done.exit_code == 0, done.output
    lines = batch_lines((tmp_path / "out.jsonl").read_text())
    assert [x["response"]["body"]["model"] for x in lines] == ["echo", "echo"]

    other = write_jsonl(tmp_path / "other.jsonl", [chat_line("c", "hi", model="gpt-4")])
    refused = runner.invoke(main.app, ["run", str(other), "-o", str(tmp_path / "no.jsonl")])
    assert refused.exit_code == 1 and "model_not_found" in refused.output
    done = runner.invoke(
        main.app,
        ["run", str(other), "-o", str(tmp_path / "o.jsonl"), "--model", "claude-haiku-4-5"],
    )
    assert done.exit_code == 0, done.output
    (line,) = batch_lines((tmp_path / "o.jsonl").read_text())
    assert line["custom_id"] == "c" and line["response"]["body"]["model"] == "echo"
    assert json.loads(other.read_text())["body"]["model"] == "gpt-4"  # the file is untouched


@pytest.mark.slow
def test_an_alias_of_the_real_model_runs_on_it(real_server: LiveServer, tmp_path: Path) -> None:
    """The real engine: the embedded chat model aliased (no path: its packaged weights)."""
    aliased = ModelSettings(name=CHAT_MODEL, aliases=["gpt-4o-mini"])
    settings = make_settings(tmp_path / "home", models=[aliased])
    path = write_jsonl(
        tmp_path / "in.jsonl",
        [chat_line("a", "What is 2 + 2?", model="gpt-4o-mini", max_tokens=8, temperature=0)],
    )
    code, printed = run_offline(real_server, settings, path, tmp_path / "out.jsonl")
    assert code == 0, printed
    (line,) = batch_lines((tmp_path / "out.jsonl").read_text())
    body = line["response"]["body"]
    assert body["model"] == CHAT_MODEL and body["usage"]["completion_tokens"] > 0
