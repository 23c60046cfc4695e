"""Two vLLM models on one CPU machine, each with its own engine settings, both serve.

The settings-to-arguments translation is unit-tested (tests/unit/test_engine_args.py);
this runs it for real: a fractional KV cache size (which vLLM's own environment variable
cannot express), a context length and an `engine_args` entry per model, and a batch
width left to vLLM's per-device default, read back from the engines vLLM built. The two
engines start concurrently through the pool, which starts them one at a time.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from freight.config import ModelSettings
from freight.engines.base import GenerationRequest, Message, Sampling
from freight.engines.pool import EnginePool
from freight.engines.registry import Registry
from tests.conftest import CHAT_MODEL, TEST_ENGINE, make_settings

pytestmark = pytest.mark.slow

GiB = 1024**3


def test_two_models_with_their_own_settings_both_serve_on_cpu(tmp_path: Path) -> None:
    default = Registry(make_settings(tmp_path / "default"))
    weights = default.weights_dir(default.get(CHAT_MODEL))  # the converted embedded model
    models = [
        ModelSettings(
            name="short", path=weights, max_model_len=512, engine_args={"max_num_seqs": 4}
        ),
        ModelSettings(name="long", path=weights, max_model_len=1024, kv_cache_bytes=GiB),
    ]
    settings = make_settings(
        tmp_path / "home",
        models=models,
        engine=TEST_ENGINE.model_copy(update={"kv_cache_gib": 1.5}),
    )
    pool = EnginePool(settings, Registry(settings))

    async def run() -> None:
        try:
            short, long = await asyncio.gather(pool.get("short"), pool.get("long"))
            assert (short.max_model_len, short.max_num_seqs) == (512, 4)
            assert (long.max_model_len, long.max_num_seqs) == (1024, 256)  # vLLM: 256 on CPU
            assert pool.devices() == {"long": "cpu", "short": "cpu"}
            # [engine] kv_cache_gib = 1.5 for one; the model's own kv_cache_bytes for the other
            assert short.plan.args["kv_cache_memory_bytes"] == int(1.5 * GiB)
            assert long.plan.args["kv_cache_memory_bytes"] == GiB
            for name, engine in (("short", short), ("long", long)):
                request = GenerationRequest(
                    request_id=f"{name}-1",
                    model=name,
                    sampling=Sampling(max_tokens=8, temperature=0.0),
                    messages=(Message("user", "Say hello."),),
                )
                generation = await engine.generate(request)
                assert generation.choices[0].num_tokens > 0
        finally:
            await pool.shutdown()

    asyncio.run(run())
