"""The embeddings engine: a sentence-transformers model behind a micro-batching queue.

Requests wait in a priority queue (real-time first, as for generation). One loop takes
everything that is waiting, up to `max_inputs_per_call` inputs, and embeds it in one
model call on the engine's own thread, so the event loop stays free and concurrent
requests share forward passes: the batch lines the worker keeps in flight, or real-time
requests that arrive together, are embedded together. While one call runs, the next
requests queue up and form the next call, so there is no waiting window to tune.

Inputs are tokenized here with the model's own tokenizer, so texts and token arrays take
the same path and usage counts are exact. Inside a call, inputs are sorted by length and
run `batch_size` at a time, as `SentenceTransformer.encode` does, to keep padding small.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from freight.config import EmbeddingsSettings, ModelSettings
from freight.engines.base import EmbeddingRequest, Embeddings, EngineDied, RequestRejected
from freight.errors import ConfigError, EngineUnavailable

log = logging.getLogger(__name__)


@dataclass
class _Waiting:
    request: EmbeddingRequest
    future: asyncio.Future[Embeddings]


def device_for(settings: EmbeddingsSettings, entry: ModelSettings | None) -> str:
    """The torch device a sentence-transformers model runs on: its own `devices` GPU,
    else `[embeddings] device` (cpu unless set).

    Always named: left to itself sentence-transformers takes cuda:0 wherever torch sees
    a GPU, beside vLLM's engines and outside their memory shares.
    """
    if entry is not None and entry.devices:
        return f"cuda:{entry.devices[0]}"
    return settings.device


class EmbeddingsEngine:
    """One sentence-transformers model, loaded from a local folder, in this process."""

    def __init__(
        self, name: str, path: Path, settings: EmbeddingsSettings, *, device: str = "cpu"
    ) -> None:
        self.name = name
        self.path = path
        self.settings = settings
        self.dimension: int | None = None
        self.max_input_tokens: int | None = None
        self.device = device  # torch's name for it once loaded ('cuda' becomes 'cuda:0')
        self._model: Any = None
        self._tokenizer: Any = None
        self._queue: list[tuple[int, int, _Waiting]] = []  # heap: (priority, arrival, item)
        self._in_call: list[_Waiting] = []  # taken from the queue, in the model call now
        self._arrivals = itertools.count()
        self._wake = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        # One thread owns the model: calls never overlap, and the event loop's default
        # executor stays free for the worker's database work.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"embed-{name}")

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._load)
        self._loop_task = asyncio.create_task(self._serve(), name=f"embeddings-{self.name}")

    def _load(self) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for a model hub
        import torch
        from sentence_transformers import SentenceTransformer

        if self.settings.threads is not None:
            torch.set_num_threads(self.settings.threads)
        model = SentenceTransformer(
            str(self.path),
            device=self.device,
            local_files_only=True,
            model_kwargs={"dtype": getattr(torch, self.settings.dtype)},
        )
        model.eval()
        self.device = str(model.device)
        tokenizer = getattr(model, "tokenizer", None)
        if tokenizer is None or not hasattr(tokenizer, "pad"):
            raise ConfigError(
                f"{self.path} is not a text sentence-transformers model with a Hugging Face "
                "tokenizer; an embeddings model needs one."
            )
        self._model, self._tokenizer = model, tokenizer
        self.dimension = model.get_embedding_dimension()
        self.max_input_tokens = model.get_max_seq_length()

    @property
    def is_running(self) -> bool:
        return self._loop_task is not None and not self._loop_task.done()

    # --- requests ------------------------------------------------------------------------

    async def embed(self, request: EmbeddingRequest) -> Embeddings:
        if not self.is_running:
            raise EngineUnavailable(f"the engine for {self.name} is not started")
        if request.dimensions is not None and request.dimensions != self.dimension:
            raise RequestRejected(
                f"The model '{self.name}' returns {self.dimension}-dimensional embeddings; "
                f"dimensions={request.dimensions} is not available. Omit dimensions or set it "
                f"to {self.dimension}.",
            )
        future: asyncio.Future[Embeddings] = asyncio.get_running_loop().create_future()
        waiting = _Waiting(request, future)
        heapq.heappush(self._queue, (request.priority, next(self._arrivals), waiting))
        self._wake.set()
        return await future

    async def abort(self, request_ids: list[str]) -> None:
        wanted = set(request_ids)
        for _, _, waiting in self._queue:
            if waiting.request.request_id in wanted:
                waiting.future.cancel()

    async def shutdown(self) -> None:
        task, self._loop_task = self._loop_task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        for waiting in self._in_call + [item for _, _, item in self._queue]:
            if not waiting.future.done():
                waiting.future.set_exception(EngineDied(f"the engine for {self.name} stopped"))
        self._queue.clear()
        self._executor.shutdown(wait=False, cancel_futures=True)

    # --- the loop --------------------------------------------------------------------------

    def _take(self) -> list[_Waiting]:
        """The next call's requests: highest priority first, up to the input budget."""
        taken: list[_Waiting] = []
        num_inputs = 0
        while self._queue and num_inputs < self.settings.max_inputs_per_call:
            _, _, waiting = self._queue[0]
            if waiting.future.done():  # cancelled while it waited
                heapq.heappop(self._queue)
                continue
            size = len(waiting.request.inputs)
            if taken and num_inputs + size > self.settings.max_inputs_per_call:
                break
            heapq.heappop(self._queue)
            taken.append(waiting)
            num_inputs += size
        return taken

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            self._wake.clear()
            while taken := self._take():
                self._in_call = taken
                requests = [w.request for w in taken]
                results: list[Embeddings | Exception]
                try:
                    results = await loop.run_in_executor(self._executor, self._embed_all, requests)
                except Exception as exc:  # the model failed: let the callers retry elsewhere
                    log.exception("embeddings model %s failed", self.name)
                    died = EngineDied(f"the embeddings model {self.name} failed: {exc!r}")
                    results = [died] * len(taken)
                self._in_call = []
                for waiting, result in zip(taken, results, strict=True):
                    if waiting.future.done():
                        continue
                    if isinstance(result, Embeddings):
                        waiting.future.set_result(result)
                    else:
                        waiting.future.set_exception(result)

    # --- on the model's thread -------------------------------------------------------------

    def _embed_all(self, requests: list[EmbeddingRequest]) -> list[Embeddings | Exception]:
        """Tokenize every request's inputs, reject the invalid ones, embed the rest at once."""
        texts = [x for r in requests for x in r.inputs if isinstance(x, str)]
        encoded = iter(self._tokenizer(texts)["input_ids"] if texts else [])
        token_ids: list[list[list[int]]] = []
        results: list[Embeddings | Exception] = []
        for request in requests:
            ids = [next(encoded) if isinstance(x, str) else list(x) for x in request.inputs]
            problem = self._check(ids)
            token_ids.append(ids if problem is None else [])
            results.append(problem or Embeddings([], sum(len(x) for x in ids)))
        vectors = iter(self._forward([x for ids in token_ids for x in ids]))
        for ids, result in zip(token_ids, results, strict=True):
            if isinstance(result, Embeddings):
                result.vectors = [next(vectors) for _ in ids]
        return results

    def _check(self, ids: list[list[int]]) -> RequestRejected | None:
        vocab = len(self._tokenizer)
        for index, one in enumerate(ids):
            if self.max_input_tokens is not None and len(one) > self.max_input_tokens:
                return RequestRejected(
                    f"Input {index} has {len(one)} tokens; the model '{self.name}' reads at "
                    f"most {self.max_input_tokens} tokens per input. Shorten or split it.",
                    code="context_length_exceeded",
                )
            if any(t < 0 or t >= vocab for t in one):
                return RequestRejected(
                    f"Input {index} holds a token id outside the model's vocabulary "
                    f"(0..{vocab - 1}); token arrays are read in the model's own tokenizer.",
                )
        return None

    def _forward(self, token_ids: list[list[int]]) -> list[list[float]]:
        import torch

        vectors: list[list[float]] = [[] for _ in token_ids]
        by_length = sorted(range(len(token_ids)), key=lambda i: len(token_ids[i]))
        size = self.settings.batch_size
        with torch.inference_mode():
            for start in range(0, len(by_length), size):
                rows = by_length[start : start + size]
                features = self._tokenizer.pad(
                    {"input_ids": [token_ids[i] for i in rows]}, return_tensors="pt"
                )
                features = {k: v.to(self._model.device) for k, v in features.items()}
                out = self._model(features)["sentence_embedding"].float().cpu().tolist()
                for row, vector in zip(rows, out, strict=True):
                    vectors[row] = vector
        return vectors
