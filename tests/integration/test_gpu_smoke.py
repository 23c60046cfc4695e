"""The GPU path end to end, where there is one: runs only with a CUDA GPU and vLLM's CUDA
build (`make install EXTRA=cuda`); skipped elsewhere, with the reason.

It starts the embedded default model through the engine pool with the test suite's
0.15 share of the GPU and 1 GiB KV cache (so it coexists with other engines there),
generates, and checks the device the pool reports and the arguments vLLM got.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from freight.engines import engine_args
from freight.engines.base import GenerationRequest, Message, Sampling
from freight.engines.pool import EnginePool
from freight.engines.registry import Registry
from tests.conftest import CHAT_MODEL, make_settings


def why_no_gpu() -> str | None:
    """None when a CUDA GPU and vLLM's CUDA build are both here; else what is missing."""
    try:
        import torch
    except ImportError:
        return "torch is not installed"
    if not torch.cuda.is_available():
        return "no CUDA GPU is visible to torch"
    try:
        from vllm.platforms import current_platform
    except ImportError:
        return "vLLM is not installed"
    if current_platform.device_type != "cuda":
        return (
            f"this vLLM build runs on {current_platform.device_type}, not CUDA "
            "(install with `make install EXTRA=cuda`)"
        )
    return None


NO_GPU = why_no_gpu()
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.slow,
    pytest.mark.skipif(NO_GPU is not None, reason=f"needs a GPU: {NO_GPU}"),
]


def test_default_model_serves_on_the_gpu_with_a_small_share(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "home", models=[])
    device = engine_args.detect()
    assert device.is_cuda and device.num_gpus >= 1
    pool = EnginePool(settings, Registry(settings))

    async def run() -> None:
        try:
            engine = await pool.get(CHAT_MODEL)
            assert pool.devices() == {CHAT_MODEL: "cuda:0"}
            assert engine.plan.args["kv_cache_memory_bytes"] == 1024**3
            assert engine.plan.args["gpu_memory_utilization"] == 0.15  # the suite's share
            assert "VLLM_USE_AOT_COMPILE" not in engine.plan.env  # the CPU workaround only
            request = GenerationRequest(
                request_id="gpu-1",
                model=CHAT_MODEL,
                sampling=Sampling(max_tokens=8, temperature=0.0),
                messages=(Message("user", "Say hello."),),
            )
            generation = await engine.generate(request)
            assert generation.choices[0].num_tokens > 0
        finally:
            await pool.shutdown()

    asyncio.run(run())
