"""usage/forecast.py: expected tokens, throughput, the work queued ahead, completion time."""

from __future__ import annotations

import pytest

from freight.store.usage import EngineWork, OpenBatch, RequestHistory
from freight.usage import forecast


def open_batch(
    batch_id: str,
    *,
    expires_at: int = 1000,
    created_ns: int = 1,
    num_open: int = 10,
    num_succeeded: int = 0,
    output_tokens: int = 0,
    input_tokens: int = 0,
    endpoint: str = "/v1/chat/completions",
) -> OpenBatch:
    return OpenBatch(
        batch_id,
        endpoint,
        expires_at,
        created_ns,
        num_open,
        num_succeeded,
        input_tokens,
        output_tokens,
    )


def test_expected_tokens_are_the_history_mean_capped_by_each_requests_ceiling() -> None:
    assert forecast.expected_tokens([8, 100, 30], 25.0) == 8 + 25 + 25


def test_expected_tokens_without_history_are_the_ceilings() -> None:
    assert forecast.expected_tokens([8, 100], None) == 108


def test_expected_tokens_of_a_request_without_a_ceiling_are_the_mean() -> None:
    assert forecast.expected_tokens([None, 4], 10.0) == 14


def test_expected_tokens_are_unknown_with_neither_history_nor_ceiling() -> None:
    assert forecast.expected_tokens([10, None], None) is None


def test_per_request_mean_counts_output_for_generation_and_input_for_embeddings() -> None:
    history = RequestHistory(num_requests=4, input_tokens=100, output_tokens=40)
    assert forecast.per_request(history, "generate") == forecast.PerRequest(10.0, 4)
    assert forecast.per_request(history, "embed") == forecast.PerRequest(25.0, 4)
    assert forecast.per_request(RequestHistory(0, 0, 0), "generate").mean_tokens is None


def test_throughput_is_tokens_per_metered_second_and_none_without_any() -> None:
    work = EngineWork(seconds=4.0, input_tokens=800, output_tokens=200)
    assert forecast.throughput(work, "generate").tokens_per_second == pytest.approx(50.0)
    assert forecast.throughput(work, "embed").tokens_per_second == pytest.approx(200.0)
    assert forecast.throughput(EngineWork(0.0, 0, 0), "generate").tokens_per_second is None
    assert forecast.seconds_for(100, forecast.throughput(EngineWork(0.0, 0, 0), "generate")) is None
    assert forecast.seconds_for(100, forecast.throughput(work, "generate")) == pytest.approx(2.0)


def test_queued_ahead_uses_each_batchs_own_mean_else_the_history() -> None:
    started = open_batch("a", num_open=10, num_succeeded=5, output_tokens=100)  # 20 each
    fresh = open_batch("b", num_open=3, endpoint="/v1/completions")
    ahead = forecast.queued_ahead([started, fresh], "generate", {"/v1/completions": 7.0}.get)
    assert ahead == forecast.QueuedAhead(13, 10 * 20.0 + 3 * 7.0)


def test_a_batch_runs_before_another_by_deadline_then_age() -> None:
    earlier = open_batch("a", expires_at=100, created_ns=5)
    assert forecast.runs_before(earlier, 200, 1)
    assert forecast.runs_before(earlier, 100, 6)
    assert not forecast.runs_before(earlier, 100, 5)
    assert not forecast.runs_before(earlier, 50, 9)


def test_completion_at_rounds_up_to_the_second_and_is_none_without_a_duration() -> None:
    assert forecast.completion_at(100.2, 3.1) == 104
    assert forecast.completion_at(100.0, None) is None
