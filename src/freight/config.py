"""Settings: defaults, then `freight.toml`, then `FREIGHT_*` environment variables.

The TOML file is `$FREIGHT_CONFIG` if set, else `freight.toml` in `FREIGHT_HOME`.
Nested settings use `__` in environment names (`FREIGHT_ENGINE__DTYPE=float32`).
Unknown keys in the TOML file and unknown `FREIGHT_*` variables are errors, so a typo
never silently does nothing; each error names its source and the nearest valid key
(config_errors.py).
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal, TypeAlias

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
)

from freight import config_errors, netguard
from freight.errors import ConfigError

MiB = 1024 * 1024
DEFAULT_CHAT_MODEL = "smollm2-135m-instruct"
DEFAULT_EMBEDDING_MODEL = "all-minilm-l6-v2"
DEFAULT_MAX_NUM_SEQS = 256
# The models every Freight serves without a [[models]] entry (engines/registry.py).
EMBEDDED_MODELS = (DEFAULT_CHAT_MODEL, DEFAULT_EMBEDDING_MODEL)


# Batch priorities (a Freight extension) lie in [MIN_BATCH_PRIORITY, the project's bound];
# no bound may pass MAX_BATCH_PRIORITY.
MIN_BATCH_PRIORITY = -1000
MAX_BATCH_PRIORITY = 1000


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EngineSettings(_Section):
    """How the in-process vLLM engine runs (applies to every vLLM model)."""

    dtype: Literal["auto", "bfloat16", "float16", "float32"] = Field(
        "auto",
        description="Weights and activations; auto: the checkpoint's own (bf16 where the "
        "device lacks fp16 kernels); for the embedded default model, float32 on a CPU "
        "without bf16 instructions (AVX512-BF16 or AMX; Arm: BF16), where vLLM would "
        "emulate bf16, several times slower than float32 on batches (set float32 for "
        "your own model there if its float32 weights fit). float32 makes greedy output "
        "batch-invariant on CPU (docs/guides/models.md, Determinism) at about a third "
        "of bf16's speed on a CPU that has them.",
    )
    max_model_len: int | None = Field(
        None, ge=64, description="Context length in tokens; default: the model's own."
    )
    max_num_seqs: int | None = Field(
        None,
        ge=1,
        description="Sequences in the engine's running batch; default: vLLM's choice for "
        "the device (256 on CPU and most GPUs, 1024 on H100/H200).",
    )
    max_num_batched_tokens: int | None = Field(
        None,
        ge=64,
        description="Tokens per engine step; default: vLLM's choice for the device (4096 on "
        "CPU, 8192 on most GPUs, 16384 on H100/H200).",
    )
    kv_cache_gib: float | None = Field(
        None,
        gt=0,
        description="KV cache per engine, in GiB (fractions allowed). Default: 2 on CPU; on "
        "CUDA what gpu_memory_utilization leaves after the weights.",
    )
    gpu_memory_utilization: float = Field(
        0.9,
        gt=0,
        le=1,
        description="Share of each GPU's memory a vLLM engine may take (weights, activations "
        "and KV cache); a model's own share in [[models]] wins. Engines sharing a GPU must "
        "add up to at most 1.",
    )
    enforce_eager: bool = Field(
        False, description="Skip torch.compile: starts in seconds, decodes ~20% slower."
    )
    enable_prefix_caching: bool = Field(True, description="Reuse KV blocks of shared prefixes.")
    seed: int = Field(0, description="Engine seed for sampled (temperature > 0) requests.")
    structured_outputs_backend: Literal["guidance", "xgrammar"] = Field(
        "guidance",
        description="Guided decoding library for response_format / text.format JSON "
        "(llguidance: compact output, wide JSON Schema support).",
    )


class EmbeddingsSettings(_Section):
    """How sentence-transformers embeddings models run (applies to every such model)."""

    batch_size: int = Field(
        64, ge=1, description="Inputs per forward pass; similar lengths are batched together."
    )
    max_inputs_per_call: int = Field(
        256,
        ge=1,
        description="Most inputs gathered from waiting requests into one model call; a "
        "real-time request that arrives during a call waits for it, so keep calls short.",
    )
    dtype: Literal["float32", "bfloat16"] = Field(
        "float32",
        description="float32 gives sentence-transformers' own vectors; bfloat16 is about 2x "
        "faster on CPUs with AMX (cosine to float32 >= 0.9998 for all-minilm-l6-v2).",
    )
    threads: int | None = Field(
        None, ge=1, description="Torch threads for the model; default: torch's own choice."
    )
    device: str = Field(
        "cpu",
        pattern=r"^(cpu|cuda(:[0-9]+)?)$",
        description="Where the models run: cpu, cuda or cuda:N; a model's own `devices` "
        "wins. cpu unless set: on a GPU a model takes memory beside vLLM that no engine's "
        "gpu_memory_utilization counts, so choosing a GPU is deliberate.",
    )


class LimitSettings(_Section):
    """Limits on what clients may send."""

    max_file_bytes: int = Field(200 * MiB, ge=1, description="Largest upload.")
    max_line_bytes: int = Field(10 * MiB, ge=1, description="Largest line of a batch file.")
    max_requests_per_batch: int = Field(1_000_000, ge=1, description="Lines per batch file.")
    max_custom_id_chars: int = Field(512, ge=1, description="Longest custom_id (OpenAI files).")
    max_message_batch_requests: int = Field(
        100_000, ge=1, description="Requests per Anthropic message batch (Anthropic: 100,000)."
    )
    max_message_batch_bytes: int = Field(
        256 * MiB, ge=1, description="Body size of an Anthropic batch create (Anthropic: 256 MB)."
    )
    max_metadata_pairs: int = Field(
        16, ge=0, description="Most key-value pairs in a batch's metadata."
    )
    max_metadata_key_chars: int = Field(
        64, ge=1, description="Longest key in a batch's metadata (OpenAI: 64)."
    )
    max_metadata_value_chars: int = Field(
        512, ge=1, description="Longest value in a batch's metadata (OpenAI: 512)."
    )
    max_completion_window: str = Field(
        "30d",
        pattern=r"^[1-9][0-9]{0,6}[smhd]$",
        description="Longest completion_window a batch may ask for ('<n>s|m|h|d').",
    )
    max_json_depth: int = Field(
        64,
        ge=1,
        le=512,
        description="Levels of arrays and objects in a request body, a batch file line or a "
        "Message Batch request's params (protocol/json_budget.py).",
    )


class WorkerSettings(_Section):
    """How the worker claims and runs requests."""

    lease_seconds: float = Field(60.0, gt=0, description="A claim lasts this long unless renewed.")
    poll_seconds: float = Field(0.2, gt=0, description="Idle wait between looks for work.")
    max_in_flight: int | None = Field(
        None,
        ge=1,
        description="Requests in the engine at once; default 2 x max_num_seqs (on GPUs: "
        "the started engine's own max_num_seqs, vLLM's choice when unset).",
    )
    flush_seconds: float = Field(0.1, gt=0, description="Results are written in groups this often.")
    max_attempts: int = Field(3, ge=1, description="Tries per request for transient failures.")
    max_batch_step_attempts: int = Field(
        3,
        ge=1,
        description="Tries of a batch's ingest, finalize, cancel or expiry before the batch "
        "ends anyway, with the reason (worker/steps.py).",
    )
    request_timeout_seconds: float | None = Field(
        None,
        gt=0,
        description="A batch request that has no result after this long is aborted and "
        "retried like an engine failure (None: no limit).",
    )
    drain_seconds: float = Field(
        10.0, ge=0, description="On shutdown, how long in-flight requests may finish."
    )
    realtime_batch_window: int | None = Field(
        None,
        ge=0,
        description="Batch requests kept in the engine while real-time requests run "
        "(default max_num_seqs / 4 on CPU, the engine's whole max_num_seqs on GPUs); see "
        "worker/scheduler.py.",
    )
    realtime_hold_seconds: float = Field(
        10.0,
        ge=0,
        description="How long after the last real-time request the smaller window holds.",
    )
    models: list[str] | None = Field(
        None,
        min_length=1,
        description="Claim batch requests of these models only (`freight worker --models`), "
        "so a model can live on some nodes; default: every model.",
    )
    realtime_preempt: bool | None = Field(
        None,
        description="When real-time traffic starts, take running batch requests beyond "
        "the window back out too (they run again later); false: only unstarted ones. "
        "Default: true on CPU, false on GPUs (priority scheduling alone).",
    )


class SchedulerSettings(_Section):
    """The order of work (worker/scheduler.py): within-batch optimisations (each can be
    switched off), batch priorities, and the flex tier of single requests (worker/flex.py)."""

    prefix_grouping: bool = Field(
        True, description="Admit requests that share a prompt prefix together."
    )
    length_aware: bool = Field(True, description="Admit requests with long outputs first.")
    deduplicate: bool = Field(True, description="Compute identical temperature-0 requests once.")
    max_batch_priority: int = Field(
        10,
        ge=0,
        le=MAX_BATCH_PRIORITY,
        description="The highest `priority` a batch may be created with (Freight extension; "
        "`[quotas.projects.NAME] max_batch_priority` overrides it per project).",
    )
    flex_max_wait_seconds: float = Field(
        600.0,
        gt=0,
        description='A `service_tier: "flex"` request that cannot start within this long '
        "is answered 429 with Retry-After.",
    )
    flex_max_running: int | None = Field(
        None,
        ge=1,
        description="Flex requests in the engine at once (default: the engine's "
        "max_num_seqs); the worker claims that many fewer batch requests meanwhile.",
    )
    flex_max_queued: int = Field(
        256,
        ge=0,
        description="Flex requests waiting for a slot; one more is answered 429 at once.",
    )


class CacheSettings(_Section):
    """The result cache across batches (store/result_cache.py; docs/guides/economics.md)."""

    enabled: bool = Field(
        True,
        description="Answer a deterministic request this project already ran (same model "
        "weights, endpoint and body) from its stored result instead of the engine.",
    )
    ttl_seconds: int = Field(
        7 * 86400,
        ge=0,
        description="cache_ttl: how old a stored result may be to answer from (seconds; "
        "default 7 days).",
    )


class S3Settings(_Section):
    """The S3-compatible object store behind `files_url = "s3://bucket/prefix"`.

    Credentials come from the usual AWS sources (AWS_ACCESS_KEY_ID and
    AWS_SECRET_ACCESS_KEY, ~/.aws, an instance role), never from freight.toml.
    """

    endpoint_url: str | None = Field(
        None, description="For stores other than AWS S3 (MinIO, Ceph, R2): their URL."
    )
    region: str | None = Field(None, description="The bucket's region (default: AWS's chain).")
    addressing_style: Literal["auto", "path", "virtual"] = Field(
        "auto", description="Bucket in the path or in the host name; MinIO wants 'path'."
    )


class RaySettings(_Section):
    """Handing large batches to a Ray cluster (cluster/handoff.py, cluster/executor.py)."""

    address: str | None = Field(
        None,
        description="The Ray cluster to run large batches on ('auto': the one this node "
        "belongs to; 'local': start one here). None: never use Ray.",
    )
    min_requests: int = Field(
        10_000, ge=0, description="Batches with at least this many open requests go to Ray."
    )
    num_actors: int = Field(
        1, ge=1, description="Engine actors: one per GPU or node is the usual choice."
    )
    num_gpus_per_actor: float | None = Field(
        None,
        ge=0,
        description="GPUs each engine actor reserves. Default: where vLLM runs on CUDA, the "
        "GPUs its model's engine uses (tensor_parallel_size x data_parallel_size: tensor "
        "parallelism inside the actor); on CPU 0. 0 on CUDA is refused: every actor's "
        "engine would open cuda:0 (cluster/executor.py).",
    )
    num_cpus_per_actor: float = Field(1, ge=0, description="CPUs each engine actor reserves.")
    batch_size: int = Field(64, ge=1, description="Requests handed to an actor per call.")
    max_concurrent_batches: int = Field(
        4,
        ge=1,
        description="Calls in flight per actor, so its engine's continuous batch stays full.",
    )
    rows_per_read: int = Field(
        1000, ge=1, description="Requests per read task: the unit of the streaming read."
    )


class _Upstream(_Section):
    """What every upstream takes: where it is, its key, its model name, how long to wait.

    Each engine style has its own `[models.upstream]` keys (the subclasses below);
    `engine` picks the style and is copied from the model's own `engine`, so a table
    never needs to say it.
    """

    base_url: str = Field(
        description="The upstream's API root, e.g. https://api.openai.com/v1 (OpenAI styles) "
        "or https://api.anthropic.com (Anthropic style)."
    )
    api_key: str | None = Field(None, description="The upstream's API key.")
    api_key_env: str | None = Field(
        None, description="Or: the environment variable that holds the key (kept out of files)."
    )
    model: str | None = Field(
        None, description="The upstream's name for the model (default: ours)."
    )
    timeout_seconds: float = Field(600.0, gt=0, description="Longest wait for one upstream call.")

    @model_validator(mode="before")
    @classmethod
    def _only_keys_of_this_style(cls, data: Any) -> Any:
        """A key of another style names where it belongs (not just "extra inputs")."""
        if not isinstance(data, dict):
            return data
        unknown = sorted(set(data) - set(cls.model_fields))
        if unknown:
            engine, key = cls.model_fields["engine"].default, unknown[0]
            owners = [c.model_fields["engine"].default for c in _UPSTREAMS if key in c.model_fields]
            where = f"it is a setting of {' and '.join(owners)}" if owners else "no such setting"
            raise ValueError(
                f"'{key}' does not apply to an upstream of engine '{engine}' ({where}); "
                f"'{engine}' takes: {', '.join(k for k in cls.model_fields if k != 'engine')}"
            )
        return data

    def key(self) -> str | None:
        """The API key: `api_key`, else the environment variable `api_key_env` names."""
        if self.api_key is not None:
            return self.api_key
        return os.environ.get(self.api_key_env) if self.api_key_env else None


class HTTPUpstream(_Upstream):
    """An `http` model's upstream: any OpenAI-compatible server, called per request, with
    adaptive concurrency and optional rate limits (engines/flow.py)."""

    engine: Literal["http"] = Field("http", description="The model's engine (copied from it).")
    initial_concurrency: int = Field(4, ge=1, description="Requests in flight at start.")
    min_concurrency: int = Field(1, ge=1, description="The limit never backs off below this.")
    max_concurrency: int = Field(256, ge=1, description="The limit never grows past this.")
    latency_tolerance: float = Field(
        2.0,
        gt=1,
        description="The limit grows while seconds per output token stay within this "
        "factor of the best seen.",
    )
    backoff_factor: float = Field(
        0.5, gt=0, lt=1, description="The limit is multiplied by this on 429/5xx/timeouts."
    )
    requests_per_minute: int | None = Field(None, ge=1, description="RPM limit, if any.")
    tokens_per_minute: int | None = Field(
        None, ge=1, description="TPM limit (prompt estimate + max_tokens), if any."
    )


class _BatchUpstream(_Upstream):
    """What both provider Batch APIs take: how work is packed and polled
    (upstream/passthrough.py)."""

    max_requests_per_batch: int | None = Field(
        None,
        ge=1,
        description="Requests per upstream batch (default 50,000 for OpenAI, 100,000 for "
        "Anthropic).",
    )
    max_batch_bytes: int = Field(
        190 * MiB, ge=1, description="Bytes of requests per upstream batch."
    )
    poll_seconds: float = Field(
        5.0, gt=0, description="First wait between polls; doubles per poll."
    )
    max_poll_seconds: float = Field(300.0, gt=0, description="Longest poll wait.")


class OpenAIBatchUpstream(_BatchUpstream):
    """An `openai-batch` model's upstream: an OpenAI-style Batch API (files + batches)."""

    engine: Literal["openai-batch"] = Field(
        "openai-batch", description="The model's engine (copied from it)."
    )
    completion_window: str = Field("24h", description="The completion_window of upstream batches.")


class AnthropicBatchUpstream(_BatchUpstream):
    """An `anthropic-batch` model's upstream: an Anthropic-style Message Batches API."""

    engine: Literal["anthropic-batch"] = Field(
        "anthropic-batch", description="The model's engine (copied from it)."
    )
    anthropic_version: str = Field("2023-06-01", description="The anthropic-version header.")


_UPSTREAMS: tuple[type[_Upstream], ...] = (
    HTTPUpstream,
    OpenAIBatchUpstream,
    AnthropicBatchUpstream,
)
UPSTREAM_ENGINES = ("http", "openai-batch", "anthropic-batch")
# `[models.upstream]` of an `http`, `openai-batch` or `anthropic-batch` model (README,
# Upstreams), one class per engine style.
UpstreamSettings: TypeAlias = HTTPUpstream | OpenAIBatchUpstream | AnthropicBatchUpstream
BatchUpstream: TypeAlias = OpenAIBatchUpstream | AnthropicBatchUpstream


class WebhookSettings(_Section):
    """Delivery of signed batch webhooks (service/webhook_sender.py)."""

    timeout_seconds: float = Field(
        10.0, gt=0, description="How long one delivery POST may take before it counts as failed."
    )
    initial_backoff_seconds: float = Field(
        5.0,
        gt=0,
        description="Wait before the first retry; each further retry waits twice as long.",
    )
    max_backoff_seconds: float = Field(
        3600.0, gt=0, description="The longest wait between two attempts."
    )
    max_retry_seconds: float = Field(
        86400.0,
        ge=0,
        description="A delivery that has not succeeded this long after its event is marked failed.",
    )
    poll_seconds: float = Field(1.0, gt=0, description="How often due deliveries are looked for.")
    max_concurrent: int = Field(16, ge=1, description="Deliveries in flight per process.")
    allow_hosts: list[str] = Field(
        default_factory=list,
        description="Internal receivers webhooks may be sent to: host names, IP addresses "
        "or networks (CIDR). Every other destination must be a public address: loopback, "
        "private, link-local and other special-purpose addresses are refused.",
    )

    @field_validator("allow_hosts")
    @classmethod
    def _check_allow_hosts(cls, entries: list[str]) -> list[str]:
        for entry in entries:
            netguard.parse_allow_entry(entry)  # its ValueError names the entry
        return entries


class ModelSettings(_Section):
    """One entry of the model registry."""

    name: str = Field(description="The name clients put in `model`.")
    aliases: list[str] = Field(
        default_factory=list,
        description="Other names clients may put in `model` for it (e.g. gpt-4o-mini), so "
        "existing batch files and client code run unchanged; /v1/models lists them, and "
        "usage and cost are recorded under `name`.",
    )
    engine: Literal["vllm", "echo", "embeddings", "http", "openai-batch", "anthropic-batch"] = (
        Field(
            "vllm",
            description="Which engine serves it: `vllm` and `echo` generate text, `embeddings` "
            "(sentence-transformers) serves /v1/embeddings; `http` is any OpenAI-compatible "
            "server, `openai-batch`/`anthropic-batch` an upstream Batch API (`upstream`).",
        )
    )
    upstream: Annotated[UpstreamSettings, Field(discriminator="engine")] | None = Field(
        None,
        description="For `http`, `openai-batch`, `anthropic-batch`: where to send work; "
        "each takes its own keys.",
    )
    path: Path | None = Field(
        None,
        description="A local Hugging Face model directory (for `embeddings`: a "
        "sentence-transformers model directory).",
    )
    delay_seconds: float = Field(
        0.0,
        ge=0,
        description="Echo engine only: how long each request takes (tests, benchmarks).",
    )
    tool_call_parser: str | None = Field(
        None,
        description="vLLM engine only: the name of one of vLLM's tool-call parsers for this "
        "model's output format (e.g. `hermes`), which lets `tool_choice` `auto` work; "
        "without one, `auto` is a 400 and only forced tool calls run.",
    )
    tensor_parallel_size: int = Field(
        1, ge=1, description="vLLM only: GPUs one copy of the model is split across."
    )
    data_parallel_size: int = Field(
        1, ge=1, description="vLLM only: copies of the model, each on its own GPU(s)."
    )
    devices: list[int] | None = Field(
        None,
        min_length=1,
        description="vLLM: the GPUs (indices) it runs on, tensor_parallel_size x "
        "data_parallel_size of them; default: the first ones. Embeddings: the one GPU it "
        "runs on, e.g. [0]; default: [embeddings] device.",
    )
    gpu_memory_utilization: float | None = Field(
        None,
        gt=0,
        le=1,
        description="vLLM only: its share of each of its GPUs (default [engine]'s).",
    )
    kv_cache_bytes: int | None = Field(
        None,
        ge=1,
        description="vLLM only: its KV cache in bytes (default [engine] kv_cache_gib); on "
        "a GPU it must fit in the model's memory share beside the weights.",
    )
    max_model_len: int | None = Field(
        None, ge=64, description="vLLM only: context length (default [engine]'s, else the model's)."
    )
    quantization: str | None = Field(
        None, description="vLLM only: the weights' quantization method (awq, gptq, fp8, ...)."
    )
    kv_cache_dtype: str | None = Field(
        None, description="vLLM only: the KV cache's dtype (auto, fp8, ...)."
    )
    trust_remote_code: bool = Field(
        False, description="vLLM only: run the model folder's own Python code."
    )
    engine_args: dict[str, Any] = Field(
        default_factory=dict,
        description="vLLM only: further vLLM engine arguments by name (EngineArgs fields); "
        "unknown names are refused when the engine starts.",
    )
    input_price: float | None = Field(
        None, ge=0, description="Real-time list price, $ per million input tokens ([pricing])."
    )
    output_price: float | None = Field(
        None, ge=0, description="Real-time list price, $ per million output tokens ([pricing])."
    )

    @model_validator(mode="before")
    @classmethod
    def _upstream_of_its_engine(cls, data: Any) -> Any:
        """Give `[models.upstream]` the model's engine, which decides the keys it takes."""
        if not isinstance(data, dict):
            return data
        engine, upstream = data.get("engine", "vllm"), data.get("upstream")
        if upstream is None or not isinstance(engine, str):
            return data
        if engine not in UPSTREAM_ENGINES:
            raise ValueError(_upstream_rule(data.get("name"), engine))
        if isinstance(upstream, dict) and "engine" not in upstream:
            return {**data, "upstream": {**upstream, "engine": engine}}
        return data

    @model_validator(mode="after")
    def _engine_options_fit(self) -> ModelSettings:
        where = f"models: '{self.name}'"
        if self.engine != "vllm":
            fields = type(self).model_fields
            # An embeddings model runs on one device of its own choosing, so it may name it.
            allowed = ("devices",) if self.engine == "embeddings" else ()
            used = [  # set to something other than the default (a dump round-trips)
                name
                for name in VLLM_MODEL_OPTIONS
                if name not in allowed
                and getattr(self, name) != fields[name].get_default(call_default_factory=True)
            ]
            if used:
                raise ValueError(
                    f"{where} (engine '{self.engine}'): {', '.join(used)} apply to vLLM models only"
                )
            if self.devices is not None and (len(self.devices) != 1 or self.devices[0] < 0):
                raise ValueError(
                    f"{where} (engine 'embeddings'): devices names the one GPU it runs on, "
                    f"e.g. [0]; got {self.devices}"
                )
            return self
        if self.devices is not None:
            num_needed = self.tensor_parallel_size * self.data_parallel_size
            if len(set(self.devices)) != len(self.devices) or min(self.devices) < 0:
                raise ValueError(f"{where}: devices must be distinct GPU indices (0, 1, ...)")
            if len(self.devices) != num_needed:
                raise ValueError(
                    f"{where}: {len(self.devices)} devices for tensor_parallel_size "
                    f"{self.tensor_parallel_size} x data_parallel_size "
                    f"{self.data_parallel_size}; list exactly {num_needed}"
                )
        return self

    @model_validator(mode="after")
    def _upstream_where_needed(self) -> ModelSettings:
        if self.engine in UPSTREAM_ENGINES and self.upstream is None:
            raise ValueError(_upstream_rule(self.name, self.engine))
        if self.upstream is not None and self.upstream.engine != self.engine:
            raise ValueError(
                f"models: '{self.name}' (engine '{self.engine}'): its [models.upstream] is "
                f"for engine '{self.upstream.engine}'"
            )
        if self.tool_call_parser is not None and self.engine != "vllm":
            raise ValueError(
                f"models: '{self.name}' (engine '{self.engine}'): tool_call_parser is for "
                "engine 'vllm' only"
            )
        return self


# The [[models]] keys that configure a vLLM engine (engines/engine_args.py).
VLLM_MODEL_OPTIONS = (
    "tensor_parallel_size",
    "data_parallel_size",
    "devices",
    "gpu_memory_utilization",
    "kv_cache_bytes",
    "max_model_len",
    "quantization",
    "kv_cache_dtype",
    "trust_remote_code",
    "engine_args",
)


def _upstream_rule(name: object, engine: str) -> str:
    return (
        f"models: '{name}' (engine '{engine}'): a [models.upstream] table is needed by, "
        f"and only allowed for, the engines {', '.join(UPSTREAM_ENGINES)}"
    )


class PricingSettings(_Section):
    """What work costs: list prices, the batch discount, and what the hardware costs.

    A model's own `input_price`/`output_price` in [[models]] win; these defaults price
    every other model (the embedded default included). Unset prices leave costs unknown.
    """

    input_price: float | None = Field(
        None, ge=0, description="$ per million input tokens, real time, for unpriced models."
    )
    output_price: float | None = Field(
        None, ge=0, description="$ per million output tokens, real time, for unpriced models."
    )
    batch_discount: float = Field(
        0.5, ge=0, le=1, description="Fraction off the real-time price for batch work."
    )
    hardware_per_hour: float | None = Field(
        None, ge=0, description="What the machine running the engines costs, $ per hour."
    )


class MetricsSettings(_Section):
    """Engine metering: how often measured busy time and tokens are written to the store."""

    usage_record_seconds: float = Field(
        10.0, gt=0, description="Metered engine usage is written to the store this often."
    )
    utilization_window_seconds: float = Field(
        60.0, gt=0, description="The trailing window of the engine utilisation gauge."
    )


class WebSettings(_Section):
    """The dashboard."""

    session_secret: str | None = Field(
        None,
        min_length=16,
        description="Signs session cookies; default: a random secret kept in home.",
    )
    page_size: int = Field(50, ge=1, le=500, description="Batches per dashboard page.")
    https_only_cookies: bool = Field(
        False, description="Send the session cookie over HTTPS only (set behind TLS)."
    )


class SecuritySettings(_Section):
    """API keys, request size limits and CORS (docs/guides/security.md)."""

    key_secret: str | None = Field(
        None,
        min_length=16,
        description="Keys are stored as HMAC-SHA256 with this secret; default: a random one "
        "kept in home (secret.key). Nodes sharing a database must share it.",
    )
    max_body_bytes: int = Field(
        10 * MiB,
        ge=1,
        description="Largest request body, except file uploads ([limits] max_file_bytes) "
        "and Message Batch creates ([limits] max_message_batch_bytes).",
    )
    cors_origins: list[str] = Field(
        default_factory=list,
        description="Browser origins allowed to call the API (CORS); empty: CORS off.",
    )


class ServerSettings(_Section):
    """Limits on connections before a request reaches the app (api/slow_clients.py)."""

    max_header_bytes: int = Field(
        64 * 1024,
        ge=1024,
        description="Largest request head (request line and headers); over it: 431.",
    )
    header_timeout_seconds: float = Field(
        10.0,
        gt=0,
        description="A connection must send a complete request head within this long of "
        "opening, or of its previous response; otherwise 408 and closed.",
    )
    body_timeout_seconds: float = Field(
        30.0,
        gt=0,
        description="Longest wait for the next piece of an unfinished request body; "
        "otherwise 408 and closed.",
    )
    max_connections: int = Field(
        1000,
        ge=1,
        description="Open connections at once; one more is answered 503 and closed.",
    )


class QuotaLimits(_Section):
    """One project's limits; unset: unlimited."""

    max_queued_requests: int | None = Field(
        None, ge=0, description="Batch requests not yet finished, over all its batches."
    )
    max_stored_bytes: int | None = Field(
        None, ge=0, description="Bytes of its files (uploads and batch results)."
    )
    requests_per_minute: int | None = Field(
        None, ge=0, description="Real-time requests per rate window."
    )
    tokens_per_minute: int | None = Field(
        None, ge=0, description="Real-time input + output tokens per rate window."
    )
    max_batch_priority: int | None = Field(
        None,
        ge=0,
        le=MAX_BATCH_PRIORITY,
        description="The highest batch `priority` this project may ask for (default: "
        "`[scheduler] max_batch_priority`).",
    )


class QuotaSettings(_Section):
    """Per-project quotas: `[quotas.default]`, overridden per field by `[quotas.projects.NAME]`."""

    default: QuotaLimits = Field(default_factory=QuotaLimits)  # type: ignore[arg-type]
    projects: dict[str, QuotaLimits] = Field(default_factory=dict)
    window_seconds: float = Field(
        60.0, gt=0, description="The rate window of the per-minute quotas (shorter in tests)."
    )
    orphan_grace_seconds: float = Field(
        3600.0,
        gt=0,
        description="A blob with no row (or an upload's hold) this old is an abandoned "
        "write and is collected; until then it counts toward max_stored_bytes.",
    )
    orphan_sweep_seconds: float = Field(
        600.0, gt=0, description="How often the API looks for abandoned blobs."
    )

    def for_project(self, project: str) -> QuotaLimits:
        """The default limits with the project's own overrides applied."""
        override = self.projects.get(project)
        if override is None:
            return self.default
        return self.default.model_copy(update=override.model_dump(exclude_unset=True))


class Settings(BaseSettings):
    """Everything Freight can be configured with."""

    model_config = SettingsConfigDict(
        env_prefix="FREIGHT_", env_nested_delimiter="__", extra="forbid"
    )

    home: Path = Field(Path(".freight"), description="Database, files and model cache.")
    model_cache: Path | None = Field(
        None, description="Where converted models are kept (default: home/models)."
    )
    database_url: str | None = Field(
        None,
        description="SQLAlchemy URL: sqlite:///PATH (default: SQLite in home) or "
        "postgresql+psycopg://USER@HOST:PORT/DB for several API and worker nodes.",
    )
    files_url: str | None = Field(
        None,
        description="Where file contents live: a directory (default home/files; a shared "
        "one for several nodes) or s3://bucket/prefix.",
    )
    host: str = Field(
        "127.0.0.1",
        description="Address `freight serve` binds (`--host`); any but a loopback address needs "
        "an API key first (`freight keys create`).",
    )
    port: int = Field(8000, description="Port `freight serve` listens on (`--port`).")
    public_base_url: str | None = Field(
        None, description="Absolute URL clients reach this server at (for results_url)."
    )
    default_model: str = Field(
        DEFAULT_CHAT_MODEL,
        description="The model a table run (`freight run TABLE --prompt`) uses without "
        "`--model`, and the one `freight serve` starts at once (if you registered vLLM "
        "models and this is none of them, it starts those instead).",
    )
    models: list[ModelSettings] = Field(default_factory=list)
    engine: EngineSettings = Field(default_factory=EngineSettings)  # type: ignore[arg-type]
    embeddings: EmbeddingsSettings = Field(default_factory=EmbeddingsSettings)  # type: ignore[arg-type]
    limits: LimitSettings = Field(default_factory=LimitSettings)  # type: ignore[arg-type]
    worker: WorkerSettings = Field(default_factory=WorkerSettings)  # type: ignore[arg-type]
    scheduler: SchedulerSettings = Field(default_factory=SchedulerSettings)  # type: ignore[arg-type]
    cache: CacheSettings = Field(default_factory=CacheSettings)  # type: ignore[arg-type]
    pricing: PricingSettings = Field(default_factory=PricingSettings)  # type: ignore[arg-type]
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)  # type: ignore[arg-type]
    web: WebSettings = Field(default_factory=WebSettings)  # type: ignore[arg-type]
    s3: S3Settings = Field(default_factory=S3Settings)  # type: ignore[arg-type]
    ray: RaySettings = Field(default_factory=RaySettings)  # type: ignore[arg-type]
    security: SecuritySettings = Field(default_factory=SecuritySettings)  # type: ignore[arg-type]
    server: ServerSettings = Field(default_factory=ServerSettings)  # type: ignore[arg-type]
    quotas: QuotaSettings = Field(default_factory=QuotaSettings)  # type: ignore[arg-type]
    webhooks: WebhookSettings = Field(default_factory=WebhookSettings)  # type: ignore[arg-type]

    @field_validator("models")
    @classmethod
    def _each_name_serves_one_model(cls, models: list[ModelSettings]) -> list[ModelSettings]:
        """An alias may not be another model's name or alias: a request naming it would
        have two models to go to."""
        owners = {name: f"the built-in model '{name}'" for name in EMBEDDED_MODELS}
        owners.update({m.name: f"the name of model '{m.name}'" for m in models})
        for model in models:
            for alias in model.aliases:
                if alias in owners:
                    raise ValueError(
                        f"the alias '{alias}' of model '{model.name}' is already "
                        f"{owners[alias]}; a name can lead to one model only"
                    )
                owners[alias] = f"an alias of model '{model.name}'"
        return models

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls, _toml_path()))

    @property
    def sqlalchemy_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.home / 'freight.db').resolve()}"

    @property
    def files_dir(self) -> Path:
        return self.home / "files"

    @property
    def run_dir(self) -> Path:
        """Records of this home's running engine processes (engines/reaper.py)."""
        return self.home / "run"

    @property
    def models_dir(self) -> Path:
        return self.model_cache or self.home / "models"

    @property
    def max_num_seqs(self) -> int:
        """The engine batch width the worker sizes its window by on CPU: [engine]
        max_num_seqs, else 256 (vLLM's own default there). On GPUs the worker reads the
        started engine's own width instead (worker/scheduler.py, `window_policy`)."""
        return self.engine.max_num_seqs or DEFAULT_MAX_NUM_SEQS

    @property
    def max_in_flight(self) -> int:
        return self.worker.max_in_flight or 2 * self.max_num_seqs

    @property
    def flex_max_running(self) -> int:
        """Flex requests in the engine at once: `[scheduler] flex_max_running`, else the
        engine's max_num_seqs as configured (or 256)."""
        return self.scheduler.flex_max_running or self.max_num_seqs

    def max_batch_priority(self, project: str) -> int:
        """The highest batch priority `project` may ask for."""
        own = self.quotas.for_project(project).max_batch_priority
        return self.scheduler.max_batch_priority if own is None else own

    @property
    def realtime_batch_window(self) -> int:
        window = self.worker.realtime_batch_window
        return max(1, self.max_num_seqs // 4) if window is None else window


def _toml_path() -> Path:
    explicit = os.environ.get("FREIGHT_CONFIG")
    if explicit:
        return Path(explicit)
    return Path(os.environ.get("FREIGHT_HOME", ".freight")) / "freight.toml"


def load(**overrides: Any) -> Settings:
    """Load settings; every problem becomes one ConfigError that names where the bad
    value came from (the TOML file, an environment variable, a command-line option)."""
    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        settings = Settings(**given)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            f"invalid configuration: {config_errors.toml_syntax(_toml_path(), exc)}"
        ) from None
    except SettingsError as exc:
        problem = config_errors.env_source_error(exc, os.environ)
        raise ConfigError(f"invalid configuration: {problem}") from exc
    except ValidationError as exc:
        problems = config_errors.describe(
            exc,
            Settings,
            toml_path=_toml_path(),
            environ=os.environ,
            options={k: f"--{k.replace('_', '-')}" for k in given},
        )
        raise ConfigError(f"invalid configuration: {problems}") from exc
    # An upstream's key may sit in any variable, FREIGHT_* included.
    key_vars = frozenset(
        name
        for m in settings.models
        if m.upstream is not None and (name := m.upstream.api_key_env) is not None
    )
    unknown = config_errors.unknown_env_vars(Settings, os.environ, allowed=key_vars)
    if unknown:
        raise ConfigError(f"invalid configuration: {'; '.join(unknown)}")
    return settings
