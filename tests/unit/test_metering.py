"""Engine metering: busy/idle partition, kinds, periods, histograms, the metered engine."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from freight.engines.base import (
    BATCH_PRIORITY,
    REALTIME_PRIORITY,
    Choice,
    Generation,
    GenerationRequest,
    Message,
    Sampling,
)
from freight.engines.echo import EchoEngine
from freight.engines.metering import BATCH, IDLE, REALTIME, EngineMeter, MeteredEngine
from tests.waiting import ManualClock

START = 1_000_020.0  # 20 s into a minute period


def generation(prompt: int, output: int, cached: int = 0) -> Generation:
    return Generation(prompt, cached, [Choice("x", output, "stop")])


def seconds(meter: EngineMeter, model: str = "m") -> dict[str, float]:
    meter.busy_and_up_seconds(model)  # accounts the time up to now
    return {k: round(meter.totals[(model, k)].seconds, 6) for k in (BATCH, REALTIME, IDLE)}


def test_time_is_split_into_busy_per_kind_and_idle() -> None:
    clock = ManualClock(START)
    meter = EngineMeter(clock)
    meter.engine_up("m")
    clock.advance(10)  # idle 10
    a = meter.started("m", BATCH)
    b = meter.started("m", BATCH)
    clock.advance(4)  # 2 batch requests: 4 s batch
    r = meter.started("m", REALTIME)
    clock.advance(3)  # 2 batch + 1 real-time: 2 s batch, 1 s real time
    meter.finished(r, generation(10, 5))
    meter.finished(a, generation(100, 20))
    clock.advance(2)  # 1 batch: 2 s batch
    meter.finished(b, None)  # aborted: time counts, tokens do not
    clock.advance(1)  # idle
    assert seconds(meter) == {BATCH: 8.0, REALTIME: 1.0, IDLE: 11.0}
    busy, up = meter.busy_and_up_seconds("m")
    assert (busy, up) == pytest.approx((9.0, 20.0))
    assert meter.totals[("m", BATCH)].output_tokens == 20
    assert meter.totals[("m", BATCH)].num_requests == 1
    assert meter.totals[("m", REALTIME)].input_tokens == 10


def test_periods_split_at_minute_boundaries_and_are_handed_over_once() -> None:
    clock = ManualClock(START)  # period 999_960 .. 1_000_020 is [999960, 1000020)
    meter = EngineMeter(clock)
    meter.engine_up("m")
    running = meter.started("m", BATCH)
    clock.advance(70)  # crosses one boundary: 60 s in the first period, 10 s in the next
    meter.finished(running, generation(7, 3, cached=2))
    deltas = meter.take_unrecorded()
    by_period = {(d.kind, d.period_start): d.usage for d in deltas}
    assert by_period[(BATCH, 1_000_020)].seconds == pytest.approx(60)
    assert by_period[(BATCH, 1_000_080)].seconds == pytest.approx(10)
    assert by_period[(BATCH, 1_000_080)].output_tokens == 3
    assert by_period[(BATCH, 1_000_080)].cached_tokens == 2
    assert meter.take_unrecorded() == []  # nothing accrued since: no time passed
    clock.advance(5)
    (idle,) = meter.take_unrecorded()
    assert (idle.kind, idle.usage.seconds) == (IDLE, pytest.approx(5))


def test_no_time_accrues_while_the_engine_is_down_and_replacements_overlap() -> None:
    clock = ManualClock(START)
    meter = EngineMeter(clock)
    meter.engine_up("m")
    clock.advance(5)
    meter.engine_up("m")  # a replacement starts before the dead engine is shut down
    clock.advance(5)
    meter.engine_down("m")  # the dead one: the model is still up
    clock.advance(5)
    meter.engine_down("m")
    clock.advance(100)
    assert seconds(meter)[IDLE] == pytest.approx(15)


def test_latency_and_first_token_histograms() -> None:
    clock = ManualClock(START)
    meter = EngineMeter(clock)
    meter.engine_up("m")
    running = meter.started("m", REALTIME)
    assert meter.num_waiting[REALTIME] == 1
    clock.advance(0.2)
    meter.first_output(running)
    meter.first_output(running)  # only the first output counts
    assert meter.num_waiting[REALTIME] == 0
    clock.advance(2.0)
    meter.finished(running, generation(1, 1))
    ttft = meter.time_to_first_token[("m", REALTIME)]
    latency = meter.latency[("m", REALTIME)]
    assert (ttft.num, round(ttft.total, 6)) == (1, 0.2)
    assert dict(ttft.cumulative())[0.25] == 1 and dict(ttft.cumulative())[0.1] == 0
    assert dict(latency.cumulative())[2.5] == 1 and dict(latency.cumulative())[1.0] == 0


def test_utilisation_over_a_trailing_window() -> None:
    clock = ManualClock(START)
    meter = EngineMeter(clock)
    meter.engine_up("m")
    clock.advance(60)  # a minute idle
    meter.sample()
    running = meter.started("m", BATCH)
    clock.advance(30)
    assert meter.utilization("m", 60) == pytest.approx(30 / 90)  # no sample a window old yet
    clock.advance(30)
    assert meter.utilization("m", 60) == pytest.approx(1.0)  # the last 60 s were all busy
    meter.finished(running, None)
    assert meter.utilization("never-up", 60) is None


def request(priority: int) -> GenerationRequest:
    return GenerationRequest(
        "r1",
        "echo",
        Sampling(max_tokens=3),
        messages=(Message("user", "one two three four"),),
        priority=priority,
    )


def test_metered_engine_counts_batch_and_real_time_work_by_priority() -> None:
    clock = ManualClock(START)
    meter = EngineMeter(clock)
    engine = MeteredEngine(EchoEngine("echo"), meter)

    async def main() -> None:
        await engine.generate(request(BATCH_PRIORITY))
        async for _ in engine.stream(request(REALTIME_PRIORITY)):
            pass

    asyncio.run(main())
    assert meter.totals[("echo", BATCH)].output_tokens == 3
    assert meter.totals[("echo", BATCH)].input_tokens == 4
    assert meter.totals[("echo", REALTIME)].num_requests == 1
    assert ("echo", REALTIME) in meter.time_to_first_token
    assert ("echo", BATCH) not in meter.time_to_first_token  # batch asks for final output only
    assert meter.in_flight("echo", BATCH) == meter.in_flight("echo", REALTIME) == 0
    assert engine.num_requests == 2  # other attributes are the wrapped engine's


def test_metered_engine_counts_a_failed_request_out_of_the_engine() -> None:
    meter = EngineMeter(ManualClock(START))
    echo = EchoEngine("echo")
    echo.fail_next = 1
    engine = MeteredEngine(echo, meter)
    with pytest.raises(Exception, match="injected"):
        asyncio.run(engine.generate(request(BATCH_PRIORITY)))
    assert meter.in_flight("echo", BATCH) == 0
    assert meter.totals[("echo", BATCH)].num_requests == 0


def test_shutdown_marks_the_engine_down_once() -> None:
    clock = ManualClock(START)
    meter = EngineMeter(clock)
    engine = MeteredEngine(EchoEngine("echo"), meter)
    asyncio.run(engine.shutdown())
    asyncio.run(engine.shutdown())
    clock.advance(10)
    assert meter.busy_and_up_seconds("echo") == (0.0, 0.0)


def test_an_embeddings_engine_is_metered_by_its_input_tokens() -> None:
    class Embedder:
        name = "minilm"

        async def embed(self, request: Any) -> Any:
            return SimpleNamespace(vectors=[[0.1]] * 3, num_prompt_tokens=21)

    meter = EngineMeter(ManualClock(START))
    engine = MeteredEngine(Embedder(), meter)  # type: ignore[arg-type]
    result = asyncio.run(engine.embed(SimpleNamespace(priority=BATCH_PRIORITY)))
    assert result.num_prompt_tokens == 21
    totals = meter.totals[("minilm", BATCH)]
    assert (totals.num_requests, totals.input_tokens, totals.output_tokens) == (1, 21, 0)
    with pytest.raises(AttributeError):
        engine.max_num_seqs  # noqa: B018  (an embedder has none, and the wrapper adds none)
