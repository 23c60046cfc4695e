"""The GPUs a Ray engine actor reserves (cluster/executor.py, `gpus_per_actor`).

vLLM's platform object is replaced by the stand-ins of test_engine_args.py, so the
CUDA policy is tested on a machine without a GPU (and without Ray).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from freight.cluster.executor import gpus_per_actor
from freight.config import (
    DEFAULT_CHAT_MODEL,
    EmbeddingsSettings,
    ModelSettings,
    RaySettings,
    Settings,
)
from freight.engines import engine_args
from freight.errors import ConfigError
from tests.unit.test_engine_args import FakeCpu, FakeCuda

CUDA = engine_args.detect(FakeCuda(8))
CPU = engine_args.detect(FakeCpu())


def settings(tmp_path: Path, models: list[dict[str, Any]] | None = None, **ray: Any) -> Settings:
    return Settings(
        home=tmp_path,
        models=[ModelSettings(**{"path": tmp_path, **m}) for m in models or []],
        ray=RaySettings(**ray),
    )


def test_gpus_per_actor_is_left_to_the_platform_by_default() -> None:
    assert RaySettings().num_gpus_per_actor is None


def test_actors_reserve_no_gpu_on_cpu(tmp_path: Path) -> None:
    assert gpus_per_actor(settings(tmp_path), DEFAULT_CHAT_MODEL, CPU) == 0
    # an explicit 0 is today's behaviour on CPU, not an error
    assert gpus_per_actor(settings(tmp_path, num_gpus_per_actor=0), DEFAULT_CHAT_MODEL, CPU) == 0


def test_actors_reserve_a_whole_gpu_on_cuda(tmp_path: Path) -> None:
    s = settings(tmp_path, [{"name": "small"}])
    assert gpus_per_actor(s, "small", CUDA) == 1
    assert gpus_per_actor(s, DEFAULT_CHAT_MODEL, CUDA) == 1  # the embedded default too


def test_an_actor_reserves_the_gpus_of_its_models_parallel_layout(tmp_path: Path) -> None:
    s = settings(
        tmp_path,
        [
            {"name": "llama-70b", "tensor_parallel_size": 4},
            {"name": "llama-8b", "tensor_parallel_size": 2, "data_parallel_size": 2},
        ],
    )
    assert gpus_per_actor(s, "llama-70b", CUDA) == 4  # tensor parallelism inside the actor
    assert gpus_per_actor(s, "llama-8b", CUDA) == 4


def test_a_batch_of_several_models_reserves_for_the_widest(tmp_path: Path) -> None:
    s = settings(tmp_path, [{"name": "a"}, {"name": "b", "tensor_parallel_size": 2}])
    assert gpus_per_actor(s, None, CUDA) == 2


def test_zero_gpus_per_actor_on_cuda_is_refused_naming_the_setting(tmp_path: Path) -> None:
    s = settings(tmp_path, [{"name": "small"}], num_gpus_per_actor=0)
    with pytest.raises(ConfigError) as caught:
        gpus_per_actor(s, "small", CUDA)
    message = str(caught.value)
    assert message.startswith("[ray] num_gpus_per_actor = 0: vLLM runs on CUDA here")
    assert "would all open cuda:0" in message and "1 for 'small'" in message


def test_fewer_gpus_than_a_split_model_needs_are_refused(tmp_path: Path) -> None:
    s = settings(tmp_path, [{"name": "big", "tensor_parallel_size": 4}], num_gpus_per_actor=2)
    with pytest.raises(ConfigError, match=r"'big' runs on 4 GPUs .* at least 4"):
        gpus_per_actor(s, "big", CUDA)


def test_an_explicit_share_of_one_gpu_is_kept(tmp_path: Path) -> None:
    # two actors per GPU: their models' gpu_memory_utilization must then fit beside each other
    s = settings(tmp_path, [{"name": "small"}], num_gpus_per_actor=0.5)
    assert gpus_per_actor(s, "small", CUDA) == 0.5


def test_models_that_use_no_gpu_reserve_none(tmp_path: Path) -> None:
    s = settings(
        tmp_path, [{"name": "echo", "engine": "echo"}, {"name": "e", "engine": "embeddings"}]
    )
    assert gpus_per_actor(s, "echo", CUDA) == 0
    assert gpus_per_actor(s, "e", CUDA) == 0  # embeddings run on the CPU unless placed
    zero = settings(tmp_path, [{"name": "echo", "engine": "echo"}], num_gpus_per_actor=0)
    assert gpus_per_actor(zero, "echo", CUDA) == 0  # nothing would open cuda:0


def test_an_embeddings_model_placed_on_a_gpu_reserves_one(tmp_path: Path) -> None:
    s = settings(tmp_path, [{"name": "e", "engine": "embeddings", "devices": [0]}])
    assert gpus_per_actor(s, "e", CUDA) == 1
    on_gpu = Settings(home=tmp_path, embeddings=EmbeddingsSettings(device="cuda"))
    assert gpus_per_actor(on_gpu, "all-minilm-l6-v2", CUDA) == 1
