"""service/estimate.py on real tokenizers and a real store: the exact parts equal an
independent count; the forecast parts follow the seeded history exactly."""

from __future__ import annotations

import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from freight.config import (
    DEFAULT_CHAT_MODEL,
    DEFAULT_EMBEDDING_MODEL,
    PricingSettings,
    Settings,
)
from freight.engines.metering import BATCH
from freight.engines.registry import Registry
from freight.service import completion, estimate, token_counts
from freight.store import batches
from freight.store.db import Database, open_database
from freight.usage import pricing
from tests.conftest import TEST_ENGINE, chat_line, make_settings, write_jsonl
from tests.seed import add_batch, add_engine_time

CHAT = "/v1/chat/completions"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path / "home")


@pytest.fixture
def db(settings: Settings) -> Database:
    return open_database(settings.sqlalchemy_url, settings.home)


def run_estimate(
    settings: Settings, db: Database, path: Path, endpoint: str | None = None
) -> estimate.Estimate:
    return estimate.estimate_path(settings, Registry(settings), db, path, endpoint)


def hf_tokenizer(settings: Settings, model: str) -> Any:
    from transformers import AutoTokenizer

    registry = Registry(settings)
    folder = registry.weights_dir(registry.get(model))
    return AutoTokenizer.from_pretrained(str(folder))


def line(custom_id: str, url: str, body: dict[str, Any]) -> dict[str, Any]:
    return {"custom_id": custom_id, "method": "POST", "url": url, "body": body}


def test_chat_prompt_tokens_and_ceiling_equal_the_tokenizers_count(
    settings: Settings, db: Database, tmp_path: Path
) -> None:
    conversations = [
        ([{"role": "user", "content": "Name a colour."}], {"max_tokens": 16}),
        (
            [
                {"role": "system", "content": "You answer in one word."},
                {"role": "user", "content": "What is the capital of France?"},
            ],
            {"max_completion_tokens": 20},
        ),
        ([{"role": "user", "content": "Count to three, please."}], {}),  # no max_tokens
        ([{"role": "user", "content": "Two answers: yes or no?"}], {"max_tokens": 5, "n": 2}),
    ]
    lines = [
        line(f"c{i}", CHAT, {"model": DEFAULT_CHAT_MODEL, "messages": m, **extra})
        for i, (m, extra) in enumerate(conversations)
    ]
    result = run_estimate(settings, db, write_jsonl(tmp_path / "in.jsonl", lines))

    tokenizer = hf_tokenizer(settings, DEFAULT_CHAT_MODEL)
    prompts = []
    for messages, _ in conversations:
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        prompts.append(len(tokenizer(text, add_special_tokens=False)["input_ids"]))
    context = TEST_ENGINE.max_model_len
    assert context is not None
    assert result.num_requests == 4 and result.num_invalid_requests == 0
    assert result.model == DEFAULT_CHAT_MODEL
    assert result.prompt_tokens.total == sum(prompts)
    assert (result.prompt_tokens.method, result.prompt_tokens.is_exact) == ("tokenizer", True)
    assert result.output_tokens.ceiling == 16 + 20 + (context - prompts[2]) + 5 * 2
    assert result.output_tokens.num_requests_without_max_tokens == 1
    assert result.output_tokens.context_length == context
    assert result.output_tokens.context_length_source == "[engine] max_model_len"
    # no history on this fresh store: the ceiling is the expectation, and nothing is timed
    assert result.output_tokens.expected_basis == "ceiling"
    assert result.output_tokens.expected == result.output_tokens.ceiling
    assert result.output_tokens.num_past_requests == 0
    assert result.duration.expected_seconds is None and result.duration.tokens_per_second is None
    # none of these is deterministic (chat's default temperature is 1): no cache hit
    assert result.cache_hits == 0 and "result cache would answer" in result.cache_note


def test_completion_prompts_are_counted_each_and_a_prompt_over_the_context_is_an_error_line(
    settings: Settings, db: Database, tmp_path: Path
) -> None:
    long_prompt = "word " * 3000  # over the test engine's 2048-token context
    lines = [
        line(
            "p",
            "/v1/completions",
            {"model": DEFAULT_CHAT_MODEL, "prompt": ["a b c", "d"], "max_tokens": 3},
        ),
        line(
            "long",
            "/v1/completions",
            {"model": DEFAULT_CHAT_MODEL, "prompt": long_prompt, "max_tokens": 3},
        ),
        line(
            "bad",
            "/v1/completions",
            {"model": DEFAULT_CHAT_MODEL, "prompt": "x", "max_tokens": "3"},
        ),
    ]
    result = run_estimate(settings, db, write_jsonl(tmp_path / "in.jsonl", lines))
    tokenizer = hf_tokenizer(settings, DEFAULT_CHAT_MODEL)
    assert result.prompt_tokens.total == len(tokenizer.encode("a b c")) + len(tokenizer.encode("d"))
    assert result.output_tokens.ceiling == 2 * 3
    assert result.num_requests == 1
    assert result.num_invalid_requests == 2  # the long prompt, and a string for max_tokens
    assert result.num_requests_over_context == 1


def test_embedding_inputs_are_counted_with_the_models_tokenizer(
    settings: Settings, db: Database, tmp_path: Path
) -> None:
    texts = ["The quick brown fox.", "Jumps over the lazy dog, twice!", "Short"]
    lines = [
        line("e1", "/v1/embeddings", {"model": DEFAULT_EMBEDDING_MODEL, "input": texts[0]}),
        line("e2", "/v1/embeddings", {"model": DEFAULT_EMBEDDING_MODEL, "input": texts[1:]}),
        line("e3", "/v1/embeddings", {"model": DEFAULT_EMBEDDING_MODEL, "input": [5, 6, 7]}),
    ]
    result = run_estimate(settings, db, write_jsonl(tmp_path / "in.jsonl", lines))
    tokenizer = hf_tokenizer(settings, DEFAULT_EMBEDDING_MODEL)
    counted = sum(len(ids) for ids in tokenizer(texts)["input_ids"]) + 3
    assert result.prompt_tokens.total == counted
    assert (result.output_tokens.ceiling, result.output_tokens.expected) == (0, 0)
    assert result.num_requests == 3


def test_the_echo_model_counts_whitespace_words_as_it_does(
    settings: Settings, db: Database, tmp_path: Path
) -> None:
    lines = [chat_line("a", "one two three", model="echo", max_tokens=2)]
    result = run_estimate(settings, db, write_jsonl(tmp_path / "in.jsonl", lines))
    assert result.prompt_tokens.total == 3
    assert result.prompt_tokens.method == "whitespace"
    assert result.output_tokens.ceiling == 2


def test_an_upstream_model_is_counted_approximately_and_says_so(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path / "home",
        models=[
            {
                "name": "remote",
                "engine": "http",
                "upstream": {"engine": "http", "base_url": "https://example.com/v1"},
            }
        ],
    )
    db = open_database(settings.sqlalchemy_url, settings.home)
    lines = [
        chat_line("a", "x" * 40, model="remote", max_tokens=5),
        chat_line("b", "y", model="remote"),
    ]
    result = run_estimate(settings, db, write_jsonl(tmp_path / "in.jsonl", lines))
    assert (result.prompt_tokens.method, result.prompt_tokens.is_exact) == ("characters", False)
    assert result.prompt_tokens.total == (40 // 4 + 4) + (1 // 4 + 4)  # 4 per message
    assert result.output_tokens.ceiling is None  # a request without max_tokens, context unknown
    assert result.output_tokens.context_length is None


def test_history_throughput_and_queued_work_make_the_expectation(
    tmp_path: Path, database_url: str
) -> None:
    settings = make_settings(
        tmp_path / "home",
        database_url=database_url,
        pricing=PricingSettings(input_price=1.0, output_price=2.0, batch_discount=0.5),
    )
    db = open_database(database_url)
    now = int(time.time())
    # history: 4 succeeded echo requests with 40 output tokens, and the running batch
    # below with 2 and 8: 48 tokens over 6 requests, 8 per request
    add_batch(
        db, project="p", model="echo", created_at=now - 600, finished=[(now - 500.0, 3, 10)] * 4
    )
    # 100 s of batch engine time that produced 500 output tokens: 5 tokens/s
    add_engine_time(
        db, model="echo", kind=BATCH, period_start=now - now % 60, seconds=100.0, output_tokens=500
    )
    # a running batch ahead (an earlier deadline): 6 open requests at its own 4 tokens each
    with db.write() as conn:
        batches.insert(
            conn,
            id="batch_ahead",
            project="p",
            api="openai",
            endpoint=CHAT,
            input_file_id="file-x",
            completion_window="1h",
            status="in_progress",
            model="echo",
            created_at=now,
            created_ns=now * 10**9,
            expires_at=now + 3600,
            num_total=8,
            num_succeeded=2,
            output_tokens=8,
        )
    lines = [
        chat_line("a", "w " * 5, model="echo", max_tokens=4),  # capped: 4
        chat_line("b", "w " * 5, model="echo", max_tokens=50),  # the mean: 8
        chat_line("c", "w " * 5, model="echo", max_tokens=50),  # 8
    ]
    result = run_estimate(settings, db, write_jsonl(tmp_path / "in.jsonl", lines))
    out = result.output_tokens
    assert (out.expected_basis, out.mean_per_past_request, out.num_past_requests) == (
        "history",
        8.0,
        6,
    )
    assert out.expected == 4 + 8 + 8 and out.ceiling == 4 + 50 + 50
    d = result.duration
    assert d.tokens_per_second == pytest.approx(5.0)
    assert (d.num_requests_queued_ahead, d.tokens_queued_ahead) == (6, 24)
    assert d.seconds_for_this_batch == pytest.approx(20 / 5)
    assert d.seconds_queued_ahead == pytest.approx(24 / 5)
    assert d.expected_seconds == pytest.approx(44 / 5)
    assert d.expected_completion_at is not None
    assert 0 <= d.expected_completion_at - (result.created_at + 44 / 5) <= 2
    # 15 prompt words at $1/M, 20 output tokens at $2/M; batch work half price
    realtime = (Decimal(15) * 1 + Decimal(20) * 2) / 1_000_000
    assert result.cost.realtime == pricing.usd(realtime)
    assert result.cost.batch == pricing.usd(realtime / 2)
    assert result.cost.savings == result.cost.realtime - result.cost.batch


def test_a_running_batch_is_expected_to_end_after_its_open_work(
    settings: Settings, db: Database
) -> None:
    now = int(time.time())
    add_engine_time(
        db, model="echo", kind=BATCH, period_start=now - now % 60, seconds=10.0, output_tokens=100
    )
    with db.write() as conn:
        record = batches.insert(
            conn,
            id="batch_live",
            project="p",
            api="openai",
            endpoint=CHAT,
            input_file_id="file-x",
            completion_window="24h",
            status="in_progress",
            model="echo",
            created_at=now,
            created_ns=now * 10**9,
            expires_at=now + 86400,
            num_total=30,
            num_succeeded=10,
            output_tokens=50,  # 5 per request: 20 open x 5 = 100 tokens at 10 tokens/s
        )
        at = completion.live_completion_at(conn, record, now=float(now))
    assert at == now + 10


def test_a_model_tokenizer_counter_reports_its_context_source(settings: Settings) -> None:
    counter = token_counts.counter_for(settings, Registry(settings), DEFAULT_CHAT_MODEL)
    assert counter.context.num_tokens == TEST_ENGINE.max_model_len
    bare = Settings(home=settings.home, model_cache=settings.model_cache)
    own = token_counts.counter_for(bare, Registry(bare), DEFAULT_CHAT_MODEL)
    assert own.context.source == "the model's config.json (max_position_embeddings)"
    assert own.context.num_tokens is not None and own.context.num_tokens > 2048
