"""The embeddings engine on the real all-minilm-l6-v2 model: batching, priority, rejections.

The vectors are compared with sentence-transformers called directly on the same folder,
the reference users hold Freight to.
"""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from freight.config import DEFAULT_CHAT_MODEL, DEFAULT_EMBEDDING_MODEL, EmbeddingsSettings
from freight.engines.base import (
    BATCH_PRIORITY,
    REALTIME_PRIORITY,
    EmbeddingRequest,
    RequestRejected,
)
from freight.engines.embeddings import EmbeddingsEngine
from freight.engines.pool import EnginePool
from freight.engines.registry import Registry, find_minilm_dir
from freight.errors import InvalidRequest
from tests.conftest import make_settings

TEXTS = [
    "The blender crushed ice on the first try.",
    "Stopped working after three weeks.",
    "Shipping took almost a month, but the item is fine.",
    "ok",
]


@pytest.fixture(scope="module")
def reference() -> Any:
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(find_minilm_dir()), local_files_only=True)


def cosine(a: list[float], b: Any) -> float:
    dot = sum(x * float(y) for x, y in zip(a, b, strict=True))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(float(y) ** 2 for y in b)))


class Engine:
    """An EmbeddingsEngine on its own event loop, recording each model call's requests."""

    def __init__(self, **settings: Any) -> None:
        self.engine = EmbeddingsEngine(
            DEFAULT_EMBEDDING_MODEL, find_minilm_dir(), EmbeddingsSettings(**settings)
        )
        self.calls: list[list[str]] = []
        embed_all = self.engine._embed_all

        def recording(requests: list[EmbeddingRequest]) -> Any:
            self.calls.append([r.request_id for r in requests])
            return embed_all(requests)

        self.engine._embed_all = recording  # type: ignore[method-assign]

    async def embed_all(self, *requests: EmbeddingRequest) -> list[Any]:
        return await asyncio.gather(
            *(self.engine.embed(r) for r in requests), return_exceptions=True
        )


@pytest.fixture
def engine() -> Iterator[Engine]:
    yield Engine()


def run(engine: Engine, coro_fn: Any) -> Any:
    async def main() -> Any:
        await engine.engine.start()
        try:
            return await coro_fn()
        finally:
            await engine.engine.shutdown()

    return asyncio.run(main())


def request(request_id: str, *inputs: Any, **kwargs: Any) -> EmbeddingRequest:
    return EmbeddingRequest(request_id, DEFAULT_EMBEDDING_MODEL, tuple(inputs), **kwargs)


def test_vectors_equal_sentence_transformers_called_directly(
    engine: Engine, reference: Any
) -> None:
    (result,) = run(engine, lambda: engine.embed_all(request("r", *TEXTS)))
    expected = reference.encode(TEXTS)
    assert len(result.vectors) == len(TEXTS)
    for got, want in zip(result.vectors, expected, strict=True):
        assert len(got) == 384
        assert cosine(got, want) >= 0.999
    tokens = reference.tokenizer(TEXTS)["input_ids"]
    assert result.num_prompt_tokens == sum(len(t) for t in tokens)


def test_bfloat16_vectors_stay_close_to_float32(reference: Any) -> None:
    engine = Engine(dtype="bfloat16")
    (result,) = run(engine, lambda: engine.embed_all(request("r", *TEXTS)))
    for got, want in zip(result.vectors, reference.encode(TEXTS), strict=True):
        assert cosine(got, want) >= 0.999


def test_token_arrays_embed_like_the_text_they_encode(engine: Engine, reference: Any) -> None:
    token_ids = tuple(reference.tokenizer(TEXTS[0])["input_ids"])
    by_text, by_ids = run(
        engine, lambda: engine.embed_all(request("t", TEXTS[0]), request("i", token_ids))
    )
    assert by_ids.num_prompt_tokens == by_text.num_prompt_tokens == len(token_ids)
    assert cosine(by_ids.vectors[0], by_text.vectors[0]) >= 0.9999


def test_concurrent_requests_share_one_model_call(engine: Engine) -> None:
    requests = [request(f"r{i}", TEXTS[i % len(TEXTS)]) for i in range(24)]
    results = run(engine, lambda: engine.embed_all(*requests))
    assert all(len(r.vectors) == 1 for r in results)
    # All 24 are queued before the engine's loop runs: one call embeds them all.
    assert [len(c) for c in engine.calls] == [24]


def test_the_input_budget_splits_calls_and_real_time_goes_first() -> None:
    engine = Engine(max_inputs_per_call=2)
    release = threading.Event()

    async def scenario() -> list[Any]:
        # Hold the model's thread so that every request below is waiting at once.
        loop = asyncio.get_running_loop()
        blocker = loop.run_in_executor(engine.engine._executor, release.wait)
        batch = [request(f"batch-{i}", "text") for i in range(4)]
        waiting = [asyncio.ensure_future(engine.engine.embed(r)) for r in batch]
        realtime = request("realtime", "now", priority=REALTIME_PRIORITY)
        waiting.append(asyncio.ensure_future(engine.engine.embed(realtime)))
        await asyncio.sleep(0)  # each embed() queues its request on its first step
        assert len(engine.engine._queue) == len(waiting)
        release.set()
        await blocker
        return await asyncio.gather(*waiting)

    results = run(engine, scenario)
    assert len(results) == 5
    assert engine.calls == [["realtime", "batch-0"], ["batch-1", "batch-2"], ["batch-3"]]
    assert BATCH_PRIORITY > REALTIME_PRIORITY


def test_a_rejected_request_does_not_fail_the_others_in_its_call(engine: Engine) -> None:
    too_long = " ".join(["word"] * 300)
    results = run(
        engine,
        lambda: engine.embed_all(
            request("ok", TEXTS[0]),
            request("long", TEXTS[1], too_long),
            request("vocab", (101, 10**6, 102)),
            request("dims", TEXTS[0], dimensions=128),
        ),
    )
    ok, long, vocab, dims = results
    assert len(ok.vectors) == 1
    assert isinstance(long, RequestRejected) and long.code == "context_length_exceeded"
    assert "Input 1 has 302 tokens" in str(long) and "at most 256 tokens" in str(long)
    assert isinstance(vocab, RequestRejected) and "outside the model's vocabulary" in str(vocab)
    assert isinstance(dims, RequestRejected) and "384-dimensional" in str(dims)
    assert engine.calls == [["ok", "long", "vocab"]]  # `dims` is refused before it queues


def test_the_pool_hands_out_each_kind_of_engine_only_for_its_own_task(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    pool = EnginePool(settings, Registry(settings))

    async def scenario() -> None:
        embedder = await pool.get_embedder(DEFAULT_EMBEDDING_MODEL)
        assert isinstance(embedder.engine, EmbeddingsEngine)  # type: ignore[attr-defined]  # metered
        with pytest.raises(InvalidRequest, match="creates embeddings"):
            await pool.get(DEFAULT_EMBEDDING_MODEL)
        with pytest.raises(InvalidRequest, match="generates text"):
            await pool.get_embedder(DEFAULT_CHAT_MODEL)  # refused before any engine starts
        assert pool.started() == [DEFAULT_EMBEDDING_MODEL]
        assert pool.devices() == {DEFAULT_EMBEDDING_MODEL: "cpu"}  # [embeddings] device
        await pool.shutdown()

    asyncio.run(scenario())


def test_shutdown_fails_waiting_requests_as_transient() -> None:
    engine = Engine()
    release, holding = threading.Event(), threading.Event()

    def hold() -> None:
        holding.set()
        release.wait()

    async def scenario() -> list[Any]:
        await engine.engine.start()
        loop = asyncio.get_running_loop()
        blocker = loop.run_in_executor(engine.engine._executor, hold)
        await asyncio.to_thread(holding.wait)  # the model's thread is busy from here on
        waiting = [
            asyncio.ensure_future(engine.engine.embed(request(f"r{i}", "x"))) for i in range(3)
        ]
        await asyncio.sleep(0)  # queued; the loop takes them into a call held by `blocker`
        await engine.engine.shutdown()
        release.set()
        await blocker
        return await asyncio.gather(*waiting, return_exceptions=True)

    results = asyncio.run(scenario())
    assert [type(r).__name__ for r in results] == ["EngineDied"] * 3
