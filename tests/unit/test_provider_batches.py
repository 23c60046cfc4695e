"""Provider batch results mapped onto Freight's own lines (upstream/provider_batches.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from freight import config
from freight.config import AnthropicBatchUpstream, ModelSettings, OpenAIBatchUpstream
from freight.engines.registry import Registry
from freight.errors import ConfigError
from freight.store.batch_requests import ClaimedRequest
from freight.store.statuses import RequestStatus
from freight.upstream import passthrough, provider_batches
from freight.upstream.provider_batches import (
    UpstreamState,
    anthropic_outcome,
    openai_outcome,
    with_missing,
)
from tests.conftest import make_settings

SUCCEEDED, ERRORED = RequestStatus.SUCCEEDED, RequestStatus.ERRORED
CANCELLED, EXPIRED = RequestStatus.CANCELLED, RequestStatus.EXPIRED
REQUEST = ClaimedRequest("batch_req_1", "batch_1", 1, "my-id", "/v1/chat/completions", "{}", 1)


def test_openai_results_keep_bodies_statuses_and_token_counts() -> None:
    body = {
        "object": "chat.completion",
        "usage": {
            "prompt_tokens": 7,
            "completion_tokens": 3,
            "prompt_tokens_details": {"cached_tokens": 2},
        },
    }
    ok = openai_outcome(REQUEST, {"response": {"status_code": 200, "body": body}, "error": None})
    assert (ok.status, ok.status_code, json.loads(ok.response_json or "")) == (SUCCEEDED, 200, body)
    assert (ok.input_tokens, ok.cached_tokens, ok.output_tokens) == (7, 2, 3)
    refused = {"error": {"message": "bad", "type": "invalid_request_error"}}
    line = {"response": {"status_code": 400, "body": refused}, "error": None}
    failed = openai_outcome(REQUEST, line)
    assert (failed.status, failed.status_code, failed.input_tokens) == (ERRORED, 400, 0)
    assert json.loads(failed.response_json or "") == refused


def test_openai_expired_and_cancelled_lines_become_freights_own() -> None:
    expired = openai_outcome(REQUEST, {"error": {"code": "batch_expired", "message": "x"}})
    cancelled = openai_outcome(REQUEST, {"error": {"code": "batch_cancelled", "message": "y"}})
    other = openai_outcome(REQUEST, {"error": {"code": "server_error", "message": "z"}})
    assert expired.status == EXPIRED and "completion window" in (expired.error_json or "")
    assert cancelled.status == CANCELLED and "cancelled" in (cancelled.error_json or "")
    assert other.status == ERRORED and json.loads(other.error_json or "")["code"] == "server_error"


def test_requests_without_a_result_take_the_meaning_of_the_batchs_end() -> None:
    other = ClaimedRequest("batch_req_2", "batch_1", 2, "b", "/v1/chat/completions", "{}", 1)
    found = {REQUEST.id: openai_outcome(REQUEST, {"error": {"code": "batch_expired"}})}
    expired = with_missing([REQUEST, other], found, UpstreamState("expired", True))
    assert [o.request_id for o in expired] == [REQUEST.id, other.id]
    assert [o.status for o in expired] == [EXPIRED, EXPIRED]
    (failed,) = with_missing([other], {}, UpstreamState("failed", True, "Line 1: bad model"))
    error = json.loads(failed.error_json or "")
    assert failed.status == ERRORED and error["code"] == "upstream_batch_failed"
    assert error["message"] == "Line 1: bad model"
    (cancelled,) = with_missing([other], {}, UpstreamState("cancelled", True))
    assert cancelled.status == CANCELLED


def test_anthropic_results_map_each_type() -> None:
    message = {"type": "message", "usage": {"input_tokens": 5, "output_tokens": 4}}
    ok = anthropic_outcome(REQUEST, {"type": "succeeded", "message": message})
    assert (ok.status, ok.input_tokens, ok.output_tokens) == (SUCCEEDED, 5, 4)
    error = {"type": "error", "error": {"type": "invalid_request_error", "message": "no"}}
    failed = anthropic_outcome(REQUEST, {"type": "errored", "error": error})
    assert (failed.status, failed.status_code) == (ERRORED, 400)
    assert json.loads(failed.response_json or "") == error
    assert anthropic_outcome(REQUEST, {"type": "canceled"}).status == CANCELLED
    assert anthropic_outcome(REQUEST, {"type": "expired"}).status == EXPIRED


def test_passthrough_models_carry_only_their_styles_urls(tmp_path: Path) -> None:
    table = {"base_url": "http://upstream.invalid/v1"}
    settings = make_settings(
        tmp_path,
        models=[
            ModelSettings(name="o", engine="openai-batch", upstream=table),
            ModelSettings(name="a", engine="anthropic-batch", upstream=table),
        ],
    )
    registry = Registry(settings)
    assert passthrough.url_problem(registry.get("o"), "/v1/embeddings") is None
    assert "not /v1/messages" in (passthrough.url_problem(registry.get("o"), "/v1/messages") or "")
    assert passthrough.url_problem(registry.get("a"), "/v1/messages") is None
    assert provider_batches.max_requests(AnthropicBatchUpstream(**table)) == 100_000
    assert provider_batches.max_requests(OpenAIBatchUpstream(**table)) == 50_000


def test_the_upstream_table_is_needed_by_upstream_engines_and_only_by_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FREIGHT_CONFIG", "/nonexistent/freight.toml")
    table = {"base_url": "http://upstream.invalid/v1"}
    for model in (
        {"name": "h", "engine": "http"},
        {"name": "e", "engine": "echo", "upstream": table},
    ):
        with pytest.raises(ConfigError, match=r"\[models.upstream\] table"):
            config.load(models=[model])
