"""Two vLLM models on one CPU machine, each with its own engine settings, both serve.

The settings-to-arguments translation is unit-tested (tests/unit/test_engine_args.py);
this runs it for real, on the session's two-engine server (tests/conftest.py): a
fractional KV cache size (which vLLM's own environment variable cannot express), a
context length and an `engine_args` entry per model, and a batch width left to vLLM's
per-device default, read back from the engines vLLM built. The server starts both at
once through the pool, which starts them one at a time.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import NARROW_MODEL, TOOLS_MODEL, GiB, LiveServer

pytestmark = pytest.mark.slow


def test_two_models_with_their_own_settings_both_serve_on_cpu(
    two_engine_server: LiveServer,
) -> None:
    pool = two_engine_server.svc.engines
    narrow: Any = pool.engine(NARROW_MODEL)
    tools: Any = pool.engine(TOOLS_MODEL)
    assert (narrow.max_model_len, narrow.max_num_seqs) == (512, 4)
    assert (tools.max_model_len, tools.max_num_seqs) == (1024, 256)  # vLLM: 256 on CPU
    assert {NARROW_MODEL: "cpu", TOOLS_MODEL: "cpu"}.items() <= pool.devices().items()
    # [engine] kv_cache_gib = 1.5 for one; the model's own kv_cache_bytes for the other
    assert narrow.plan.args["kv_cache_memory_bytes"] == int(1.5 * GiB)
    assert tools.plan.args["kv_cache_memory_bytes"] == GiB

    client = two_engine_server.openai()
    for name in (NARROW_MODEL, TOOLS_MODEL):
        completion = client.chat.completions.create(
            model=name,
            messages=[{"role": "user", "content": "Say hello."}],
            max_tokens=8,
            temperature=0,
        )
        assert completion.model == name
        assert completion.usage is not None and completion.usage.completion_tokens > 0
