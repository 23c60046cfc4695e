"""vLLM's engine arguments for one model, from Freight's settings and the device it runs on.

vLLM picks good per-device values for most of its arguments (context length from the
model, batch sizes by GPU memory), so an argument is passed only where Freight's
settings or the model's `[[models]]` entry set it. What differs by platform is the KV
cache and where the engine's processes run:

- CUDA: each engine takes a share of each of its GPUs (`gpu_memory_utilization`: vLLM
  refuses to start unless that much is free), and its KV cache is what the share
  leaves after the weights, or `kv_cache_memory_bytes` when a size is given. A model's
  `devices` become its processes' CUDA_VISIBLE_DEVICES. The shares of the engines on
  one GPU must add up to at most 1.
- CPU: the cache is `kv_cache_memory_bytes` too (vLLM 0.32's CPU worker reads it;
  its older `VLLM_CPU_KVCACHE_SPACE` takes whole GiB only, so `kv_cache_gib = 1.5`
  could not be said with it), 2 GiB unless set; AOT compile is switched off (its cache
  fails to load on CPU and every start recompiles). For the embedded default model,
  `dtype = "auto"` is float32 on a CPU without bf16 instructions (x86 without
  AVX512-BF16 or AMX, Arm without BF16): vLLM's CPU build runs bf16 there too,
  converting in software, and on an AVX2-only EPYC its prefill and its 16-sequence steps
  took several times as long as float32's (only a lone sequence's step was quicker;
  BENCHMARKS.md, bf16 and float32). A model of the user's keeps vLLM's choice: its
  float32 weights take twice the memory of bf16's, which may not fit.

The platform is vLLM's own (`vllm.platforms.current_platform`), read once by `detect`;
everything else here is plain data, so tests pass a stand-in platform object.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import os
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from freight.config import ModelSettings, Settings
from freight.errors import ConfigError

GiB = 1024**3
DEFAULT_CPU_KV_CACHE_GIB = 2.0
# Arguments Freight sets itself on every engine: an `engine_args` table may not change them.
FREIGHT_OWNED = ("model", "served_model_name", "scheduling_policy", "disable_log_stats")
# Arguments with their own key in a `[[models]]` entry (or in [engine]): said there, once.
OWN_KEYS = {
    "tensor_parallel_size": "tensor_parallel_size",
    "data_parallel_size": "data_parallel_size",
    "gpu_memory_utilization": "gpu_memory_utilization",
    "kv_cache_memory_bytes": "kv_cache_bytes",
    "max_model_len": "max_model_len",
    "quantization": "quantization",
    "kv_cache_dtype": "kv_cache_dtype",
    "trust_remote_code": "trust_remote_code",
}


class Platform(Protocol):
    """What Freight reads from vLLM's platform object (its `Platform` class)."""

    device_type: str

    def get_device_name(self, device_id: int = 0) -> str: ...

    def get_device_total_memory(self, device_id: int = 0) -> int: ...


@dataclass(frozen=True)
class Device:
    """The accelerator this process's engines run on, as vLLM sees it."""

    kind: Literal["cuda", "cpu"]
    num_gpus: int = 0  # visible GPUs (CUDA_VISIBLE_DEVICES applied); 0 on CPU
    name: str = "cpu"
    memory_bytes: int = 0  # of one device
    bf16_native: bool = True  # a CPU with bf16 instructions (cpu_has_bf16); GPUs: vLLM's call

    @property
    def is_cuda(self) -> bool:
        return self.kind == "cuda"


def detect(platform: Platform | None = None) -> Device:
    """The device vLLM would run on here; `platform` defaults to vLLM's current one."""
    if platform is None:
        from vllm.platforms import current_platform

        platform = current_platform
    if platform.device_type == "cuda":
        count = getattr(platform, "device_count", None)
        num_gpus = int(count()) if callable(count) else 1
        return Device(
            "cuda",
            num_gpus=num_gpus,
            name=platform.get_device_name(0),
            memory_bytes=int(platform.get_device_total_memory(0)),
        )
    if platform.device_type == "cpu":
        return Device(
            "cpu",
            memory_bytes=int(platform.get_device_total_memory(0)),
            bf16_native=cpu_has_bf16(),
        )
    raise ConfigError(
        f"vLLM runs on '{platform.device_type}' here; Freight supports CUDA GPUs and CPUs"
    )


def detect_without_vllm() -> Device | None:
    """The device, where the installed packages alone say it: vLLM's CPU build
    (`vllm-cpu`) without its CUDA build (`vllm`) runs on the CPU. None where only vLLM
    can tell (`detect`): importing it takes seconds and brings torch, which a process
    that starts no engine itself (a Ray driver) need not pay."""
    try:
        importlib.metadata.version("vllm")
    except importlib.metadata.PackageNotFoundError:
        try:
            importlib.metadata.version("vllm-cpu")
        except importlib.metadata.PackageNotFoundError:
            return None
        return Device("cpu", bf16_native=cpu_has_bf16())
    return None


BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})  # x86 (two kinds), Arm


def cpu_has_bf16(cpuinfo: str | None = None) -> bool:
    """Whether this CPU has bf16 instructions, from the flags in /proc/cpuinfo (`cpuinfo`,
    for tests). True where the file cannot be read (not Linux): vLLM's own choice stands."""
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
                cpuinfo = f.read(1 << 20)  # the flags are on each core's first lines
        except OSError:
            return True
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return not BF16_FLAGS.isdisjoint(value.split())
    return True


@dataclass(frozen=True)
class EnginePlan:
    """How one model's vLLM engine is started: its arguments, environment and devices."""

    args: dict[str, Any]  # keyword arguments of vLLM's AsyncEngineArgs (model and name aside)
    env: dict[str, str] = field(default_factory=dict)  # set while the engine starts
    devices: tuple[int, ...] = ()  # GPU indices it occupies (empty on CPU)
    memory_share: float | None = None  # of each of its GPUs; None on CPU
    kv_cache_bytes: int | None = None

    @property
    def device_label(self) -> str:
        """Where it runs, for /health and `freight models`: 'cpu', 'cuda:0', 'cuda:0,1'."""
        if not self.devices:
            return "cpu"
        label = "cuda:" + ",".join(str(d) for d in self.devices)
        tp = self.args.get("tensor_parallel_size", 1)
        dp = self.args.get("data_parallel_size", 1)
        parts = [f"tensor parallel {tp}"] if tp > 1 else []
        parts += [f"data parallel {dp}"] if dp > 1 else []
        return f"{label} ({', '.join(parts)})" if parts else label


def plan(settings: Settings, model: ModelSettings | None, device: Device) -> EnginePlan:
    """The engine arguments for `model` (None: the embedded default) on `device`."""
    engine = settings.engine
    entry = model or ModelSettings(name=settings.default_model)
    args: dict[str, Any] = {
        "dtype": vllm_dtype(engine.dtype, device, is_default_model=model is None),
        "enable_prefix_caching": engine.enable_prefix_caching,
        "enforce_eager": engine.enforce_eager,
        "seed": engine.seed,
    }
    for name in ("max_num_seqs", "max_num_batched_tokens"):  # None: vLLM's per-device choice
        if getattr(engine, name) is not None:
            args[name] = getattr(engine, name)
    max_model_len = entry.max_model_len or engine.max_model_len
    if max_model_len is not None:
        args["max_model_len"] = max_model_len
    for name in ("quantization", "kv_cache_dtype"):
        if getattr(entry, name) is not None:
            args[name] = getattr(entry, name)
    if entry.trust_remote_code:
        args["trust_remote_code"] = True
    if entry.tensor_parallel_size > 1:
        args["tensor_parallel_size"] = entry.tensor_parallel_size
    if entry.data_parallel_size > 1:
        args["data_parallel_size"] = entry.data_parallel_size
    args.update(entry.engine_args)

    kv_bytes = entry.kv_cache_bytes
    if kv_bytes is None and engine.kv_cache_gib is not None:
        kv_bytes = round(engine.kv_cache_gib * GiB)
    if not device.is_cuda:
        kv_bytes = kv_bytes or round(DEFAULT_CPU_KV_CACHE_GIB * GiB)
        args["kv_cache_memory_bytes"] = kv_bytes
        return EnginePlan(args, env={"VLLM_USE_AOT_COMPILE": "0"}, kv_cache_bytes=kv_bytes)

    devices = tuple(entry.devices or range(entry.tensor_parallel_size * entry.data_parallel_size))
    env = {"CUDA_VISIBLE_DEVICES": ",".join(map(str, devices))} if entry.devices else {}
    # vLLM checks at start that the share is free on each GPU, even when the KV cache is
    # sized in bytes: so the share is always set, and always counted.
    share = entry.gpu_memory_utilization or engine.gpu_memory_utilization
    args["gpu_memory_utilization"] = share
    if kv_bytes is not None:
        args["kv_cache_memory_bytes"] = kv_bytes
    return EnginePlan(args, env, devices, memory_share=share, kv_cache_bytes=kv_bytes)


def vllm_dtype(dtype: str, device: Device, *, is_default_model: bool) -> str:
    """`dtype` as vLLM gets it: for the embedded default model, "auto" is float32 on a CPU
    without bf16 instructions, where vLLM would pick the checkpoint's bf16 and emulate it;
    a model of the user's keeps vLLM's choice (the module's docstring says why)."""
    if is_default_model and dtype == "auto" and not device.is_cuda and not device.bf16_native:
        return "float32"
    return dtype


def vllm_models(settings: Settings) -> list[ModelSettings | None]:
    """The vLLM models the startup check covers: the user's, else the embedded default.

    A worker limited to some models (`freight worker --models`) runs only those, so the
    others (which live on other machines) do not count toward its GPUs' shares.
    """
    limit = settings.worker.models
    own: list[ModelSettings | None] = [
        m for m in settings.models if m.engine == "vllm" and (limit is None or m.name in limit)
    ]
    return own or [None]


def check(settings: Settings, device: Device, known_args: Collection[str]) -> None:
    """Refuse a configuration that cannot start as a whole, before any engine starts.

    Each vLLM model's devices and parallel sizes must fit the visible GPUs, its
    `engine_args` must name vLLM arguments, and the memory shares on each GPU must add
    up to at most 1.
    """
    for model in vllm_models(settings):
        if model is not None:
            check_engine_args(model, known_args)
            check_devices(model, device)
    check_shares(
        (m.name if m else settings.default_model, plan(settings, m, device))
        for m in vllm_models(settings)
    )


def check_engine_args(model: ModelSettings, known_args: Collection[str]) -> None:
    """`engine_args` names vLLM arguments that Freight neither sets nor has a key for."""
    for name in model.engine_args:
        where = f"models: '{model.name}' engine_args.{name}"
        if name in FREIGHT_OWNED:
            raise ConfigError(f"{where}: Freight sets this argument itself; remove it")
        if name in OWN_KEYS:
            raise ConfigError(
                f"{where}: use the model's own key `{OWN_KEYS[name]}` instead"
                if OWN_KEYS[name] != name
                else f"{where}: set it as the model's own key `{name}`, not in engine_args"
            )
        if name not in known_args:
            raise ConfigError(
                f"{where}: vLLM has no such engine argument; vLLM's arguments are: "
                + ", ".join(sorted(set(known_args) - set(FREIGHT_OWNED)))
            )


def check_devices(model: ModelSettings, device: Device) -> None:
    """A model's parallel layout fits the GPUs this process sees."""
    tp, dp = model.tensor_parallel_size, model.data_parallel_size
    where = f"models: '{model.name}'"
    if not device.is_cuda:
        if model.devices:
            raise ConfigError(f"{where}: `devices` names GPUs, and vLLM sees none here (CPU)")
        return
    visible = device.num_gpus
    if model.devices:
        wrong = [d for d in model.devices if d >= visible]
        if wrong:
            raise ConfigError(
                f"{where}: devices {wrong} do not exist; this machine shows {visible} GPU(s), "
                f"numbered 0..{visible - 1}"
            )
        return  # that len(devices) == tp x dp is checked with the settings (config.py)
    if tp * dp > visible:
        raise ConfigError(
            f"{where}: tensor_parallel_size {tp} x data_parallel_size {dp} needs {tp * dp} "
            f"GPUs; this machine shows {visible}"
        )
    if visible % tp:
        raise ConfigError(
            f"{where}: tensor_parallel_size {tp} does not divide the {visible} visible GPUs; "
            f"use one of {', '.join(str(n) for n in range(1, visible + 1) if visible % n == 0)}"
            ", or list the GPUs it uses in `devices`"
        )


def check_shares(plans: Iterable[tuple[str, EnginePlan]]) -> None:
    """The memory shares of engines that share a GPU add up to at most 1."""
    by_device: dict[int, list[tuple[str, float]]] = {}
    for name, engine_plan in plans:
        if engine_plan.memory_share is None:
            continue
        for index in engine_plan.devices:
            by_device.setdefault(index, []).append((name, engine_plan.memory_share))
    for index, shares in sorted(by_device.items()):
        total = sum(share for _, share in shares)
        if total > 1.0 + 1e-9:
            each = ", ".join(f"{name} {share:g}" for name, share in shares)
            raise ConfigError(
                f"the vLLM engines on cuda:{index} would take {total:g} of its memory ({each}); "
                "give each model a `gpu_memory_utilization` so that they add up to at most 1, "
                "or put them on different `devices`"
            )


def vllm_argument_names() -> frozenset[str]:
    """Every argument vLLM's EngineArgs takes (its dataclass fields)."""
    from vllm.engine.arg_utils import AsyncEngineArgs

    return frozenset(f.name for f in dataclasses.fields(AsyncEngineArgs))


def overridden_by_environment() -> str | None:
    """A warning when the environment sets the CPU cache size: vLLM's legacy variable
    wins over the size Freight passes."""
    value = os.environ.get("VLLM_CPU_KVCACHE_SPACE")
    if value:
        return (
            f"VLLM_CPU_KVCACHE_SPACE={value} is set: vLLM uses it for every engine's KV cache "
            "instead of [engine] kv_cache_gib and the models' kv_cache_bytes"
        )
    return None
