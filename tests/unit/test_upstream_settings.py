"""`[models.upstream]` takes the keys of its model's engine style, and only those."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from freight import config
from freight.config import (
    AnthropicBatchUpstream,
    HTTPUpstream,
    ModelSettings,
    OpenAIBatchUpstream,
    Settings,
)
from freight.errors import ConfigError

MODELS_GUIDE = Path(__file__).parents[2] / "docs" / "guides" / "models.md"


def load_toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str) -> Settings:
    path = tmp_path / "freight.toml"
    path.write_text(text)
    monkeypatch.setenv("FREIGHT_CONFIG", str(path))
    return config.load()


def one_model(engine: str, upstream_lines: str) -> str:
    return (
        f'[[models]]\nname = "up"\nengine = "{engine}"\n\n'
        f'[models.upstream]\nbase_url = "http://upstream.invalid/v1"\n{upstream_lines}\n'
    )


def guide_upstream_examples() -> list[str]:
    blocks = re.findall(r"```toml\n(.*?)```", MODELS_GUIDE.read_text(encoding="utf-8"), re.S)
    return [b for b in blocks if "[models.upstream]" in b]


def test_the_models_guides_upstream_examples_load_as_their_engines_style(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    examples = guide_upstream_examples()
    assert len(examples) == 3
    loaded = [load_toml(tmp_path, monkeypatch, text).models[0] for text in examples]
    http, openai_batch, anthropic_batch = (m.upstream for m in loaded)
    assert isinstance(http, HTTPUpstream)
    assert (http.api_key_env, http.max_concurrency, http.tokens_per_minute) == (
        "GPU_BOX_KEY",
        256,
        2_000_000,
    )
    assert isinstance(openai_batch, OpenAIBatchUpstream)
    assert (openai_batch.completion_window, openai_batch.max_poll_seconds) == ("24h", 300)
    assert isinstance(anthropic_batch, AnthropicBatchUpstream)
    assert (anthropic_batch.anthropic_version, anthropic_batch.max_requests_per_batch) == (
        "2023-06-01",
        100_000,
    )


@pytest.mark.parametrize(
    ("engine", "key", "value", "owner"),
    [
        ("http", "completion_window", '"2h"', "openai-batch"),
        ("http", "poll_seconds", "1", "openai-batch and anthropic-batch"),
        ("openai-batch", "max_concurrency", "8", "http"),
        ("openai-batch", "anthropic_version", '"2023-06-01"', "anthropic-batch"),
        ("anthropic-batch", "completion_window", '"2h"', "openai-batch"),
        ("anthropic-batch", "requests_per_minute", "60", "http"),
    ],
)
def test_a_key_of_another_engine_style_is_an_error_naming_the_key_and_the_style(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    engine: str,
    key: str,
    value: str,
    owner: str,
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_toml(tmp_path, monkeypatch, one_model(engine, f"{key} = {value}"))
    message = str(caught.value)
    assert f"'{key}' does not apply to an upstream of engine '{engine}'" in message
    assert f"it is a setting of {owner}" in message
    assert f"'{engine}' takes: base_url, " in message  # what would be accepted


def test_a_misspelt_key_is_an_error_listing_the_keys_the_style_takes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ConfigError, match=r"'max_concurency' .* \(no such setting\)") as caught:
        load_toml(tmp_path, monkeypatch, one_model("http", "max_concurency = 8"))
    assert "max_concurrency" in str(caught.value)


def test_keys_both_batch_styles_share_are_accepted_by_each(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shared = "poll_seconds = 1\nmax_poll_seconds = 4\nmax_batch_bytes = 1000\nmodel = 'm'"
    for engine in ("openai-batch", "anthropic-batch"):
        upstream = load_toml(tmp_path, monkeypatch, one_model(engine, shared)).models[0].upstream
        assert upstream is not None and upstream.engine == engine
        assert (upstream.poll_seconds, upstream.max_batch_bytes, upstream.model) == (1, 1000, "m")


def test_a_table_for_another_engine_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(
        ConfigError,
        match=r"'up' \(engine 'http'\): its \[models.upstream\] is for engine 'openai-batch'",
    ):
        load_toml(tmp_path, monkeypatch, one_model("http", 'engine = "openai-batch"'))
    with pytest.raises(ValidationError, match="is for engine 'openai-batch'"):
        ModelSettings(
            name="up",
            engine="anthropic-batch",
            upstream=OpenAIBatchUpstream(base_url="http://upstream.invalid"),
        )


def test_upstreams_given_in_the_environment_take_their_styles_keys_too(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FREIGHT_CONFIG", "/nonexistent/freight.toml")
    model = {"name": "up", "engine": "http", "upstream": {"base_url": "http://x/v1"}}
    monkeypatch.setenv("FREIGHT_MODELS", json.dumps([model]))
    assert isinstance(config.load().models[0].upstream, HTTPUpstream)
    model["upstream"] = {"base_url": "http://x/v1", "completion_window": "1h"}
    monkeypatch.setenv("FREIGHT_MODELS", json.dumps([model]))
    with pytest.raises(ConfigError, match="'completion_window' does not apply"):
        config.load()


def test_upstreams_survive_the_settings_round_trip_to_ray_actors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FREIGHT_CONFIG", "/nonexistent/freight.toml")
    settings = Settings(
        home=tmp_path,
        models=[
            ModelSettings(name="h", engine="http", upstream={"base_url": "http://x/v1"}),
            ModelSettings(name="a", engine="anthropic-batch", upstream={"base_url": "http://x"}),
        ],
    )
    again = Settings.model_validate_json(settings.model_dump_json())
    assert [type(m.upstream) for m in again.models] == [HTTPUpstream, AnthropicBatchUpstream]
