"""Prompt tokens counted as each model's engine will count them, without starting it.

- vLLM models: the model's own Hugging Face tokenizer from its weights folder, and the
  engine's own prompt building (`vllm_engine.prompt_token_ids`: the chat template with
  the tools and the generation prompt): exact.
- Embeddings models: the sentence-transformers model's tokenizer, special tokens
  included, as the engine reads each input (token arrays count as they are): exact.
- The echo engine: whitespace words, which is how it counts: exact for it.
- Upstream models (`http`, `openai-batch`, `anthropic-batch`): their tokenizer is not
  here, so about 4 characters a token (http_engine.approximate_prompt_tokens); the
  count says it is approximate (`is_exact` false), and their context length is unknown.
  Embeddings models are never upstream (only `embeddings` models embed).

Loading a tokenizer takes a moment, so each is loaded once per process (`_tokenizer`).
"""

from __future__ import annotations

import functools
import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from freight.config import ModelSettings, Settings
from freight.engines import http_engine, vllm_engine
from freight.engines.base import EmbeddingRequest, GenerationRequest
from freight.engines.echo import EchoEngine
from freight.engines.pool import EnginePool
from freight.engines.registry import ModelSpec, Registry


@dataclass(frozen=True)
class ContextLength:
    """A model's context length in tokens and where that figure comes from."""

    num_tokens: int | None
    source: str


class TokenCounter:
    """Counts one model's prompt tokens; says how (`method`) and whether exactly."""

    method: str
    is_exact: bool
    note: str
    context: ContextLength

    def prompt(self, request: GenerationRequest) -> int:
        raise NotImplementedError

    def embedding_inputs(self, request: EmbeddingRequest) -> int:
        raise NotImplementedError


@dataclass(frozen=True)
class SharedTokenizer:
    """A loaded HF tokenizer and the lock its users take: a fast tokenizer used from two
    threads at once can fail ("Already borrowed"), and API estimates run in threads."""

    tokenizer: Any
    lock: threading.Lock


class TokenizerCounter(TokenCounter):
    method = "tokenizer"
    is_exact = True

    def __init__(self, shared: SharedTokenizer, note: str, context: ContextLength) -> None:
        self._shared = shared
        self.note = note
        self.context = context

    def prompt(self, request: GenerationRequest) -> int:
        with self._shared.lock:
            return len(vllm_engine.prompt_token_ids(self._shared.tokenizer, request))

    def embedding_inputs(self, request: EmbeddingRequest) -> int:
        texts = [x for x in request.inputs if isinstance(x, str)]
        with self._shared.lock:
            encoded = self._shared.tokenizer(texts)["input_ids"] if texts else []
        arrays = [x for x in request.inputs if not isinstance(x, str)]
        return sum(len(ids) for ids in encoded) + sum(len(ids) for ids in arrays)


def _words(request: GenerationRequest) -> list[str]:
    if request.messages is not None:
        return [w for m in request.messages for w in m.content.split()]
    if request.token_ids is not None:
        return [str(t) for t in request.token_ids]
    return (request.text or "").split()


class WhitespaceCounter(TokenCounter):
    method = "whitespace"
    is_exact = True
    note = "whitespace-separated words: the echo engine's own count"

    def __init__(self, context: ContextLength) -> None:
        self.context = context

    def prompt(self, request: GenerationRequest) -> int:
        return len(_words(request))

    def embedding_inputs(self, request: EmbeddingRequest) -> int:
        return sum(len(x.split()) if isinstance(x, str) else len(x) for x in request.inputs)


class CharacterCounter(TokenCounter):
    method = "characters"
    is_exact = False
    note = (
        "approximate: about 4 characters a token and 4 per chat message (as the http "
        "engine budgets tokens per minute); the model runs upstream and its tokenizer is "
        "not on this server"
    )
    context = ContextLength(None, "unknown: the model runs upstream")

    def prompt(self, request: GenerationRequest) -> int:
        return http_engine.approximate_prompt_tokens(request)

    def embedding_inputs(self, request: EmbeddingRequest) -> int:
        return sum(len(x) // 4 if isinstance(x, str) else len(x) for x in request.inputs)


@functools.lru_cache(maxsize=8)
def _tokenizer(path: str, trust_remote_code: bool) -> SharedTokenizer:
    tokenizer = vllm_engine.load_tokenizer(Path(path), trust_remote_code=trust_remote_code)
    return SharedTokenizer(tokenizer, threading.Lock())


def embeddings_tokenizer_dir(model_dir: Path) -> Path:
    """Where a sentence-transformers folder keeps its Transformer module's tokenizer."""
    try:
        modules = json.loads((model_dir / "modules.json").read_text())
    except (OSError, ValueError):
        return model_dir
    for module in modules if isinstance(modules, list) else []:
        if isinstance(module, dict) and str(module.get("type", "")).endswith(".Transformer"):
            return model_dir / str(module.get("path") or "")
    return model_dir


def _entry(settings: Settings, name: str) -> ModelSettings:
    found = next((m for m in settings.models if m.name == name), None)
    return found or ModelSettings(name=name)


def context_length(
    settings: Settings, spec: ModelSpec, weights: Path, engines: EnginePool | None
) -> ContextLength:
    """The context length the model's vLLM engine runs with: the started engine's, else
    the configured one, else the model's own (its config.json)."""
    started = engines.engine(spec.name) if engines is not None else None
    running = getattr(started, "max_model_len", 0) if started is not None else 0
    if running:
        return ContextLength(int(running), "the running engine")
    entry = _entry(settings, spec.name)
    if entry.max_model_len is not None:
        return ContextLength(entry.max_model_len, f"[[models]] max_model_len of {spec.name}")
    if settings.engine.max_model_len is not None:
        return ContextLength(settings.engine.max_model_len, "[engine] max_model_len")
    configured = entry.engine_args.get("max_model_len")
    if isinstance(configured, int):
        return ContextLength(configured, f"engine_args max_model_len of {spec.name}")
    try:
        config = json.loads((weights / "config.json").read_text())
    except (OSError, ValueError):
        config = {}
    own = config.get("max_position_embeddings") if isinstance(config, dict) else None
    if isinstance(own, int):
        return ContextLength(own, "the model's config.json (max_position_embeddings)")
    return ContextLength(None, "unknown: not configured and not in the model's config.json")


def counter_for(
    settings: Settings, registry: Registry, model: str, *, engines: EnginePool | None = None
) -> TokenCounter:
    """How `model`'s prompt tokens are counted here (loads its tokenizer, once)."""
    spec = registry.get(model)
    if spec.engine == "echo":
        return WhitespaceCounter(ContextLength(EchoEngine(model).max_model_len, "the echo engine"))
    if spec.engine == "vllm":
        weights = registry.weights_dir(spec)
        entry = _entry(settings, model)
        tokenizer = _tokenizer(str(weights), entry.trust_remote_code)
        return TokenizerCounter(
            tokenizer,
            f"{model}'s own tokenizer; chat requests through its chat template with the "
            "generation prompt, as the engine builds them",
            context_length(settings, spec, weights, engines),
        )
    if spec.engine == "embeddings":
        weights = registry.weights_dir(spec)
        tokenizer = _tokenizer(str(embeddings_tokenizer_dir(weights)), False)
        return TokenizerCounter(
            tokenizer,
            f"{model}'s own tokenizer, special tokens included, as the embeddings engine reads",
            ContextLength(None, "embeddings generate no tokens"),
        )
    return CharacterCounter()
