"""Model aliases: the registry leads an alias to its model, and every way a request comes
in (batch lines, Message Batch requests, `freight run --model`) carries the model's own
name from there on. The server and `freight report`: tests/e2e/test_model_aliases.py."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from freight.config import DEFAULT_CHAT_MODEL, DEFAULT_EMBEDDING_MODEL, LimitSettings, ModelSettings
from freight.engines.registry import Registry
from freight.protocol import message_batch_input
from freight.protocol.batch_input import FileValidator, iter_lines
from freight.service import offline
from tests.conftest import chat_line, make_settings, write_jsonl

URL = "/v1/chat/completions"


def registry(tmp_path: Path) -> Registry:
    return Registry(
        make_settings(
            tmp_path,
            models=[
                ModelSettings(name="echo", engine="echo", aliases=["gpt-4o-mini", "claude-x"]),
                ModelSettings(name=DEFAULT_CHAT_MODEL, aliases=["gpt-4.1-nano"]),  # no path
            ],
        )
    )


def test_an_alias_leads_to_its_model_and_a_name_to_itself(tmp_path: Path) -> None:
    models = registry(tmp_path)
    assert models.canonical("gpt-4o-mini") == "echo" and models.canonical("echo") == "echo"
    assert models.canonical("nope") == "nope"
    assert models.has("claude-x") and not models.has("nope")
    assert models.get("gpt-4o-mini") is models.get("echo")
    assert models.get("gpt-4.1-nano").is_embedded_default  # the packaged weights
    assert models.aliases() == {
        "claude-x": "echo",
        "gpt-4.1-nano": DEFAULT_CHAT_MODEL,
        "gpt-4o-mini": "echo",
    }
    assert models.names() == sorted(["echo", DEFAULT_CHAT_MODEL, DEFAULT_EMBEDDING_MODEL])


def accepted_lines(models: Registry, lines: list[dict[str, Any]]) -> tuple[FileValidator, list]:
    validator = FileValidator(
        URL, LimitSettings(), has_model=models.has, canonical_model=models.canonical
    )
    raw = b"".join(json.dumps(x).encode() + b"\n" for x in lines)
    found = [validator.feed(n, chunk) for n, chunk in iter_lines(io.BytesIO(raw), 1 << 20)]
    return validator, found


def test_batch_lines_naming_an_alias_are_queued_under_the_models_own_name(
    tmp_path: Path,
) -> None:
    models = registry(tmp_path)
    lines = [chat_line("a", "hi", model="gpt-4o-mini"), chat_line("b", "hi", model="echo")]
    validator, (first, second) = accepted_lines(models, lines)
    assert not validator.finish()  # an alias and its model's name are one model
    assert validator.model == "echo"
    assert first is not None and second is not None
    assert (first.model, first.body["model"]) == ("echo", "echo")
    assert json.loads(first.body_json)["model"] == "echo"  # what the worker runs
    assert first.body["messages"] == lines[0]["body"]["messages"]


def test_an_unknown_model_is_still_model_not_found(tmp_path: Path) -> None:
    validator, _ = accepted_lines(registry(tmp_path), [chat_line("a", "hi", model="gpt-5")])
    assert [(p.code, p.line) for p in validator.finish()] == [("model_not_found", 1)]


def test_message_batch_requests_naming_an_alias_run_as_the_model(tmp_path: Path) -> None:
    models = registry(tmp_path)
    params = {"model": "claude-x", "max_tokens": 4, "messages": [{"role": "user", "content": "x"}]}
    body = io.BytesIO(json.dumps({"requests": [{"custom_id": "a", "params": params}]}).encode())
    (accepted,) = message_batch_input.iter_requests(
        body, has_model=models.has, canonical_model=models.canonical
    )
    assert accepted.error_body is None
    assert accepted.model == "echo" and json.loads(accepted.body_json)["model"] == "echo"


def test_run_model_replaces_every_lines_model_and_keeps_broken_lines(tmp_path: Path) -> None:
    source = write_jsonl(
        tmp_path / "in.jsonl",
        [
            chat_line("a", "hi", model="gpt-4o-mini"),
            "{broken",
            {"custom_id": "b", "body": "not an object"},
            chat_line("c", "é", model="other"),
        ],
    )
    target = offline.with_model(source, "echo", tmp_path / "out.jsonl")
    first, broken, odd, last = target.read_text().splitlines()
    assert json.loads(first)["body"]["model"] == "echo"
    assert json.loads(last)["body"] == {**chat_line("c", "é")["body"], "model": "echo"}
    assert broken == "{broken" and json.loads(odd) == {"custom_id": "b", "body": "not an object"}
