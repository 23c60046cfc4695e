"""Which requests the result cache may answer (each endpoint's own defaults), the key it
finds them by, and the id of a model's weights."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from freight.engines import weights
from freight.engines.registry import ModelSpec
from freight.protocol import cache_keys
from freight.protocol.batch_input import AcceptedLine

CHAT = "/v1/chat/completions"


@pytest.mark.parametrize(
    ("url", "body", "expected"),
    [
        (CHAT, {"temperature": 0}, True),
        (CHAT, {"temperature": 0.0}, True),
        (CHAT, {}, False),  # the default temperature is 1
        (CHAT, {"temperature": 0.7}, False),
        (CHAT, {"temperature": 0.7, "seed": 42}, True),
        (CHAT, {"seed": 0}, True),  # an explicit seed, whatever its value
        (CHAT, {"temperature": 0, "n": 2}, False),
        (CHAT, {"temperature": 0, "n": 1}, True),
        (CHAT, {"seed": 1, "n": 3}, False),
        (CHAT, {"temperature": False}, False),  # not a number
        (CHAT, {"seed": True}, False),
        ("/v1/completions", {"temperature": 0}, True),
        ("/v1/completions", {"seed": 7}, True),
        ("/v1/completions", {}, False),
        ("/v1/responses", {"temperature": 0}, True),
        ("/v1/responses", {"seed": 7}, False),  # no seed in the Responses API
        ("/v1/responses", {}, False),
        ("/v1/messages", {"temperature": 0}, True),
        ("/v1/messages", {}, False),  # Anthropic's default temperature is 1.0
        ("/v1/embeddings", {}, True),  # deterministic
        ("/v1/other", {"temperature": 0}, False),
    ],
)
def test_a_request_is_cacheable_only_when_its_endpoint_defaults_make_it_deterministic(
    url: str, body: dict[str, Any], expected: bool
) -> None:
    assert cache_keys.is_deterministic(url, body) is expected


def test_the_key_covers_project_weights_endpoint_and_every_body_field() -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": 0}
    key = cache_keys.cache_key("alpha", "w1", CHAT, body)
    assert len(key) == 64
    assert key == cache_keys.cache_key("alpha", "w1", CHAT, dict(reversed(body.items())))
    assert key != cache_keys.cache_key("beta", "w1", CHAT, body)
    assert key != cache_keys.cache_key("alpha", "w2", CHAT, body)
    assert key != cache_keys.cache_key("alpha", "w1", "/v1/completions", body)
    assert key != cache_keys.cache_key("alpha", "w1", CHAT, {**body, "max_tokens": 5})


def accepted(custom_id: str, body: dict[str, Any], *, error: bool = False) -> AcceptedLine:
    return AcceptedLine(
        line=1,
        custom_id=custom_id,
        url=CHAT,
        body=body,
        body_json="{}",
        model=body.get("model"),
        error_body={"error": "bad"} if error else None,
    )


def test_lines_differing_only_in_custom_id_share_a_key_and_bad_lines_get_none() -> None:
    looked_up: list[str] = []

    def weights_of(model: str) -> str | None:
        looked_up.append(model)
        return None if model == "remote" else "w"

    key_of = cache_keys.key_of("alpha", weights_of)
    body = {"model": "m", "messages": [], "temperature": 0}
    assert key_of(accepted("a", body)) == key_of(accepted("b", body)) is not None
    assert key_of(accepted("c", body, error=True)) is None
    assert key_of(accepted("d", {**body, "temperature": 1})) is None
    assert key_of(accepted("e", {**body, "model": "remote"})) is None  # weights unknown
    assert looked_up == ["m", "remote"]  # once per model


def test_the_weights_id_changes_when_a_weight_file_does(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "model.safetensors").write_bytes(b"a" * 10)
    spec = ModelSpec("m", "vllm", tmp_path)
    first = weights.weights_id(spec)
    assert first is not None and first == weights.weights_id(spec)
    (tmp_path / "model.safetensors").write_bytes(b"b" * 11)
    assert weights.weights_id(spec) != first
    stat = (tmp_path / "model.safetensors").stat()
    again = weights.weights_id(spec)
    os.utime(tmp_path / "model.safetensors", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert weights.weights_id(spec) != again  # rewritten in place, same size


def test_models_whose_weights_are_not_ours_have_no_weights_id() -> None:
    assert weights.weights_id(ModelSpec("remote", "http", None)) is None
    assert weights.weights_id(ModelSpec("up", "openai-batch", None)) is None
    assert weights.weights_id(ModelSpec("echo", "echo", None)) == "echo"
