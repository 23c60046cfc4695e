"""Where a sentence-transformers model runs (engines/embeddings.py, `device_for`).

sentence-transformers and torch are replaced by stand-ins that record what the engine
asks for, so no model is loaded.
"""

from __future__ import annotations

import asyncio
import sys
import types
from pathlib import Path
from typing import Any, ClassVar

import pytest

from freight.config import EmbeddingsSettings, ModelSettings
from freight.engines import embeddings
from freight.engines.pool import EnginePool
from freight.engines.registry import Registry
from tests.conftest import make_settings


def test_embeddings_run_on_the_cpu_unless_configured() -> None:
    assert embeddings.device_for(EmbeddingsSettings(), None) == "cpu"
    entry = ModelSettings(name="e", engine="embeddings")
    assert embeddings.device_for(EmbeddingsSettings(), entry) == "cpu"


def test_the_embeddings_section_places_every_model() -> None:
    section = EmbeddingsSettings(device="cuda:1")
    assert embeddings.device_for(section, None) == "cuda:1"
    assert embeddings.device_for(section, ModelSettings(name="e", engine="embeddings")) == "cuda:1"


def test_a_models_own_device_wins() -> None:
    entry = ModelSettings(name="e", engine="embeddings", devices=[2])
    assert embeddings.device_for(EmbeddingsSettings(device="cuda:1"), entry) == "cuda:2"


def test_an_embeddings_model_names_exactly_one_gpu() -> None:
    with pytest.raises(ValueError, match=r"devices names the one GPU it runs on, e\.g\. \[0\]"):
        ModelSettings(name="e", engine="embeddings", devices=[0, 1])
    with pytest.raises(ValueError, match="devices apply to vLLM models only"):
        ModelSettings(name="x", engine="echo", devices=[0])


def test_an_unknown_device_name_is_refused() -> None:
    with pytest.raises(ValueError, match="device"):
        EmbeddingsSettings(device="gpu")


class FakeSentenceTransformer:
    """Records its constructor's arguments; answers what the engine reads after loading."""

    made: ClassVar[list[dict[str, Any]]] = []

    def __init__(self, path: str, **kwargs: Any) -> None:
        FakeSentenceTransformer.made.append(kwargs)
        self.device = kwargs["device"]
        self.tokenizer = types.SimpleNamespace(pad=lambda *a, **k: {})

    def eval(self) -> None:
        pass

    def get_embedding_dimension(self) -> int:
        return 384

    def get_max_seq_length(self) -> int:
        return 256


def test_the_configured_device_reaches_sentence_transformers_and_the_pool_reports_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_torch = types.SimpleNamespace(float32="float32", set_num_threads=lambda n: None)
    fake_st = types.SimpleNamespace(SentenceTransformer=FakeSentenceTransformer)
    monkeypatch.setitem(sys.modules, "torch", fake_torch)
    monkeypatch.setitem(sys.modules, "sentence_transformers", fake_st)
    monkeypatch.setattr(FakeSentenceTransformer, "made", [])
    models = [
        ModelSettings(name="placed", engine="embeddings", path=tmp_path, devices=[1]),
        ModelSettings(name="unplaced", engine="embeddings", path=tmp_path),
    ]
    s = make_settings(tmp_path / "home", models=models)
    pool = EnginePool(s, Registry(s))

    async def run() -> dict[str, str]:
        await pool.get_embedder("placed")
        await pool.get_embedder("unplaced")
        try:
            return pool.devices()  # /health's engine_devices and `freight models`
        finally:
            await pool.shutdown()

    devices = asyncio.run(run())
    assert [made["device"] for made in FakeSentenceTransformer.made] == ["cuda:1", "cpu"]
    assert devices == {"placed": "cuda:1", "unplaced": "cpu"}
