"""BENCHMARKS.md is its own render from benchmarks/results/*.json, and the renderer labels
what a reader must know: legacy files, busy machines, quick runs, targets' verdicts."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
from benchmarks import report

FIXTURES = Path(__file__).resolve().parent.parent / "data" / "benchmarks"


def load_fixtures(kind: str) -> dict[str, dict[str, Any]]:
    return report.load(FIXTURES / kind)


def by_benchmark(docs: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Harness fixtures keyed as the page keys them (smoke-peers.json -> peers)."""
    return {doc["benchmark"]: doc for doc in docs.values()}


def clean(doc: dict[str, Any]) -> dict[str, Any]:
    """The same results, as if from an idle machine and a full run."""
    doc = copy.deepcopy(doc)
    doc["environment"]["busy"] = False
    doc["environment"]["quick"] = False
    return doc


def test_benchmarks_md_is_its_render_from_the_results_files() -> None:
    page = report.PAGE.read_text()
    rendered = report.render(page, report.load(report.RESULTS))
    assert rendered == page, (
        "BENCHMARKS.md differs from its render: run python -m benchmarks.report"
    )


def test_every_results_file_has_a_table_on_the_page() -> None:
    keys = {m["key"].split("/")[0] for m in report.BLOCK.finditer(report.PAGE.read_text())}
    unrendered = {p.stem for p in report.RESULTS.glob("*.json")} - keys
    assert not unrendered, f"results files without a table on BENCHMARKS.md: {unrendered}"


def test_prose_cites_no_figure_outside_the_rendered_tables() -> None:
    """A decimal figure in the prose would be one no table backs: the prose may only
    point at the tables (code spans and indented commands are not prose)."""
    text = report.BLOCK.sub("", report.PAGE.read_text())
    text = re.sub(r"`[^`]*`", "", text)
    prose = [line for line in text.splitlines() if not line.startswith("    ")]
    figures = [line for line in prose if re.search(r"\d+\.\d+", line)]
    assert figures == []


def test_a_block_is_rewritten_from_the_results_not_kept() -> None:
    page = "intro\n<!-- table:upstream -->\nhand-edited numbers\n<!-- /table:upstream -->\nend\n"
    rendered = report.render(page, load_fixtures("legacy"))
    assert "hand-edited" not in rendered
    assert "| through Freight, batch | 1 | 17.7 |" in rendered
    assert rendered.startswith("intro\n") and rendered.endswith("end\n")


@pytest.mark.parametrize(
    "key",
    [
        "overhead",
        "peers/steady",
        "peers-repeat/steady",
        "peers-ablate/steady",
        "control_plane",
        "hybrid",
        "hybrid-small-windows",
        "hybrid-sparse",
        "step_cost",
        "embeddings",
        "embeddings-bf16",
        "scale",
        "upstream",
    ],
)
def test_files_from_before_the_harness_render_labelled_legacy(key: str) -> None:
    block = report.render_block(key, load_fixtures("legacy"))
    assert block.startswith(report.LEGACY)
    assert "\n| " in block  # and still as a table


def test_a_view_a_file_does_not_hold_says_not_yet_measured() -> None:
    block = report.render_block("peers/wall", load_fixtures("legacy"))
    assert block.startswith("_Not yet measured")
    assert "--view wall" in block


def test_a_missing_file_names_the_command_that_writes_it() -> None:
    block = report.render_block("peers-wall-10000/wall", {})
    assert "--name peers-wall-10000" in block


@pytest.mark.parametrize(
    "key",
    [
        "smoke-peers/steady",
        "smoke-peers/wall",
        "smoke-peers/profile",
        "smoke-overhead",
        "smoke-hybrid",
        "smoke-control",
        "smoke-embeddings",
        "smoke-scale",
        "smoke-upstream",
    ],
)
def test_a_busy_quick_run_is_labelled_so_in_its_table(key: str) -> None:
    block = report.render_block(key, load_fixtures("harness"))
    assert block.startswith("**BUSY: load average")
    assert "**QUICK: smoke run" in block
    assert "commit 26ad110f78 (dirty)" in block
    assert "vLLM 0.32.0" in block


def test_the_provenance_line_flags_code_that_changed_during_the_run() -> None:
    doc = clean(load_fixtures("harness")["smoke-peers"])
    assert "changed during the run" not in report.provenance("peers", doc)
    doc["environment"]["git"]["changed_during_run"] = {"commit": "b" * 40, "dirty": False}
    assert "(**code changed during the run**)" in report.provenance("peers", doc)


def test_the_provenance_line_names_engine_flags_repeats_and_load() -> None:
    docs = load_fixtures("harness")
    line = report.provenance("peers", clean(docs["smoke-peers"]))
    assert "BUSY" not in line and "QUICK" not in line
    assert (
        "engine: bfloat16, eager, max_num_seqs 256, max_num_batched_tokens 4096, "
        "KV cache 2.0 GiB, prefix caching on, priority scheduling" in line
    )
    assert "1 repeat ·" in line
    assert "load average 3.91 before, 9.23 after" in line
    assert line.endswith("--name smoke-peers --settle-s 0`")


def test_the_provenance_line_of_a_wall_run_names_its_large_files_repeats() -> None:
    doc = clean(load_fixtures("harness")["smoke-peers"])
    assert "wall" in doc
    doc["environment"]["repeats"] = 3
    doc["settings"] = {**doc.get("settings", {}), "large_repeats": 1}
    assert all(int(n) <= 1000 for n in doc["wall"]["sizes"])
    assert "3 repeats ·" in report.provenance("peers", doc)
    doc["wall"]["sizes"]["10000"] = doc["wall"]["sizes"][next(iter(doc["wall"]["sizes"]))]
    assert "3 repeats (files over 1,000 lines: 1) ·" in report.provenance("peers", doc)
    doc["settings"]["large_repeats"] = 3
    assert "3 repeats ·" in report.provenance("peers", doc)


def test_tables_show_median_and_min_max_and_the_median_of_per_repeat_ratios() -> None:
    doc = clean(load_fixtures("harness")["smoke-peers"])
    summary = doc["steady"]["workloads"]["mixed"]["summary"]
    summary["freight"]["delivered_tokens_per_s"] = {
        "median": 50.0,
        "min": 40.0,
        "max": 60.0,
        "n": 3,
    }
    summary["freight"]["ratios"]["x_run-batch"] = {"median": 0.93, "min": 0.9, "max": 1.1, "n": 3}
    block = report.render_block("peers/steady", {"peers": doc})
    row = next(
        line for line in block.splitlines() if line.startswith("| mixed (4) | `freight run`")
    )
    assert f"| 50.0 (40.0{report.DASH}60.0) |" in row
    assert f"| 0.93 (0.90{report.DASH}1.10) |" in row


def test_computed_and_delivered_tokens_are_separate_columns() -> None:
    block = report.render_block("peers/steady", {"peers": load_fixtures("harness")["smoke-peers"]})
    row = next(
        line for line in block.splitlines() if line.startswith("| duplicates (4) | `freight run`")
    )
    cells = [c.strip() for c in row.strip("|").split("|")]
    delivered, computed = float(cells[4]), float(cells[5])
    assert computed < delivered  # a copy's line was delivered, not computed


def test_systems_are_listed_in_a_fixed_order_whatever_order_they_ran_in() -> None:
    block = report.render_block("peers/steady", {"peers": load_fixtures("harness")["smoke-peers"]})
    mixed = [line.split("|")[2].strip() for line in block.splitlines() if "| mixed (4) |" in line]
    assert mixed == ["vLLM run-batch", "`freight run`", "Freight API (SDK)", "one at a time"]


def test_targets_give_no_verdict_from_a_busy_or_quick_run() -> None:
    block = report.targets(by_benchmark(load_fixtures("harness")))
    verdicts = [line.rsplit("|", 2)[1].strip() for line in block.splitlines()[2:]]
    assert "**met**" not in verdicts and "**missed**" not in verdicts
    assert any(v == "not yet re-measured (quick run only)" for v in verdicts)


def test_targets_give_met_or_missed_from_a_clean_run() -> None:
    docs = {k: clean(v) for k, v in by_benchmark(load_fixtures("harness")).items()}
    lines = report.targets(docs).splitlines()
    mixed = next(line for line in lines if line.startswith("| mixed:"))
    assert mixed.endswith("| **missed** |")  # the smoke run read 0.67 x
    ingest = next(line for line in lines if "validated and ingested" in line)
    assert ingest.endswith("| **met** |")
    bf16 = next(line for line in lines if line.startswith("| bfloat16:"))
    assert "not yet measured" in bf16  # no such file among the fixtures


def test_targets_read_legacy_files_as_not_yet_re_measured() -> None:
    lines = report.targets(load_fixtures("legacy")).splitlines()
    embeddings = next(line for line in lines if line.startswith("| float32"))
    assert "| 6.7 x (legacy file) | not yet re-measured (legacy run: missed) |" in embeddings


def test_agreement_counts_differing_lines_per_file_and_dtype() -> None:
    block = report.agreement(load_fixtures("harness"))
    assert "| smoke-peers | wall | 4 | bfloat16 | `freight run` (process) | 4 | 0 |" in block
    assert (
        "| smoke-overhead | vs vLLM offline | mixed | bfloat16 | `freight run` | 4 | 3 |" in block
    )


def test_hybrid_flags_a_phase_with_too_few_samples() -> None:
    block = report.render_block("smoke-hybrid", load_fixtures("harness"))
    assert "10 (**< 60 in a repeat**)" in block


def test_hybrid_shows_the_flex_phase_beside_the_policies_and_its_target_ignores_it() -> None:
    fixtures = copy.deepcopy(load_fixtures("harness"))
    one = {"median": 0.5, "min": 0.5, "max": 0.5, "n": 1}
    fixtures["smoke-hybrid"]["summary"]["flex_tier"] = {
        "p50_s": one,
        "p95_s": one,
        "count": 7,
        "num_refused": 2,
        "delivered_tokens_per_s": {"median": 90.0, "min": 90.0, "max": 90.0, "n": 1},
        "throughput_ratio": one,
    }
    block = report.render_block("smoke-hybrid", fixtures)
    assert "| flex tier (service_tier flex) |" in block and "7 (2 refused)" in block
    shown, _ = report.hybrid_target(fixtures["smoke-hybrid"])
    assert "flex" not in shown


def test_store_size_per_million_requests_is_labelled_an_extrapolation() -> None:
    block = report.render_block("smoke-control", load_fixtures("harness"))
    assert "**extrapolated** linearly" in block


def test_check_exits_1_when_the_page_would_change(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("<!-- table:upstream -->\nstale\n<!-- /table:upstream -->\n")
    args = ["--results-dir", str(FIXTURES / "legacy"), "--page", str(page)]
    assert report.main([*args, "--check"]) == 1
    assert report.main(args) == 0
    assert report.main([*args, "--check"]) == 0
    assert "stale" not in page.read_text()


def test_fixtures_are_what_the_harness_writes() -> None:
    for path in (FIXTURES / "harness").glob("*.json"):
        doc = json.loads(path.read_text())
        assert doc["environment"]["schema"] == 2
        assert doc["name"] == path.stem  # named by --name, never renamed


def test_every_table_names_the_device_its_figures_come_from() -> None:
    doc = clean(load_fixtures("harness")["smoke-peers"])
    assert "device: CPU ·" in report.provenance("peers", doc)  # vLLM's CPU build
    doc["environment"]["machine"]["device"] = "2 x NVIDIA H100 80GB HBM3"
    assert "device: GPU (2 x NVIDIA H100 80GB HBM3) ·" in report.provenance("peers", doc)
    doc["environment"]["machine"]["device"] = "cpu"
    assert "device: CPU ·" in report.provenance("peers", doc)
    legacy = next(iter(load_fixtures("legacy").values()))
    assert "device: CPU" in report.provenance("peers", legacy)


def tables_doc(rows: int = 1_000_000, **resume: int) -> dict[str, Any]:
    """A tables results file as the benchmark writes one, from an idle machine."""
    doc = clean(load_fixtures("harness")["smoke-control"])
    doc.update(benchmark="tables", name="tables", rows=rows)
    doc["memory"] = {
        "wall_s": 500.0,
        "rows_per_s": 2000.0,
        "peak_rss_mb": 231.4,
        "rss_mb_at_percent_of_rows": {str(p): 150.0 + p / 10 for p in range(10, 100, 10)},
        "window_samples": 1800,
        "window_rss_mb_min": 151.0,
        "window_rss_mb_max": 159.0,
        "flat_ratio": 1.053,
    }
    doc["resume"] = {
        "killed_at_rows": 500_000,
        "rows_kept": 500_000,
        "rows_run_after_resume": 500_000,
        "rows_run_twice": 0,
        "rows_compared": 1_000_000,
        "rows_differ": 0,
        **resume,
    }
    return doc


def test_the_tables_table_shows_memory_against_rows_and_the_resume_counts() -> None:
    block = report.render_block("tables", {"tables": tables_doc()})
    assert "| peak RSS of its process tree | 231 MB | <= 500 MB |" in block
    assert "| 151 / 152 / 153 / 154 / 155 / 156 / 157 / 158 / 159 MB |" in block
    assert f"| 1.05 x (151{report.DASH}159 MB, 1800 samples) | <= 1.25 x |" in block
    assert "| 500,000 + 500,000 = 1,000,000 (0 run twice) | none run twice |" in block
    assert "| 1,000,000 rows, 0 differ | none differ |" in block


def test_tables_targets_are_met_only_at_a_million_rows_with_nothing_run_twice() -> None:
    def verdicts(doc: dict[str, Any]) -> list[str]:
        lines = report.targets({"tables": doc}).splitlines()
        return [line for line in lines if "`tables.json`" in line]

    met = verdicts(tables_doc())
    assert len(met) == 3 and all(line.endswith("| **met** |") for line in met)
    redone = verdicts(tables_doc(rows_run_twice=10_000))
    assert "10,000 rows run twice, 0 differ" in redone[2] and redone[2].endswith("**missed** |")
    small = verdicts(tables_doc(rows=100_000))
    assert all("for 100,000 rows (not 1,000,000)" in line for line in small)
    assert all(line.endswith("| **missed** |") for line in small)


def cache_doc(requests: int = 2000, **second: Any) -> dict[str, Any]:
    """A cache results file as benchmarks/cache.py writes one, from an idle machine."""
    doc = clean(load_fixtures("harness")["smoke-control"])
    doc.update(benchmark="cache", name="cache", requests=requests, changed_rows=100)
    doc["first"] = {
        "seconds": 60.0,
        "output_tokens": 9000,
        "requests_completed": requests,
        "estimate": {
            "expected_seconds_for_this_batch": 45.0,
            "expected_output_tokens": 10000,
            "output_tokens_basis": "history",
            "tokens_per_second": 200.0,
            "duration_factor": 1.333,
            "output_tokens_factor": 1.111,
            "cache_hits": 0,
        },
    }
    doc["second"] = {
        "seconds": 4.5,
        "ratio_to_first": 0.075,
        "target_ratio": 0.1,
        "meets_target": True,
        "requests_completed": requests,
        "estimate_cache_hits": requests - 100,
        "expected_cache_hits": requests - 100,
        "estimate_exact": True,
        "served_from_cache_metric": requests - 100,
        "unchanged_lines": requests - 100,
        "unchanged_lines_equal_to_first": requests - 100,
        "changed_lines_equal_to_fresh": 100,
        "all_lines_equal": True,
        **second,
    }
    doc["fresh"] = {"seconds": 4.0, "requests": 100}
    return doc


def test_the_cache_table_shows_both_runs_the_hits_and_the_estimates_error() -> None:
    block = report.render_block("cache", {"cache": cache_doc()})
    assert "| 4.5 s (0.075 x the first) | <= 0.1 x |" in block
    assert "| 1,900 / 1,900 | equal |" in block
    assert "| 1,900 of 1,900 | all |" in block
    assert "| 45.0 s / 60.0 s (1.33 x) |" in block
    assert "| 10,000 / 9,000 (1.11 x, from history) |" in block


def test_cache_targets_are_met_only_at_2000_requests_with_every_line_equal() -> None:
    def verdicts(doc: dict[str, Any]) -> list[str]:
        lines = report.targets({"cache": doc}).splitlines()
        return [line for line in lines if "`cache.json`" in line]

    met = verdicts(cache_doc())
    assert len(met) == 3 and all(line.endswith("| **met** |") for line in met)
    slow = verdicts(cache_doc(ratio_to_first=0.2))
    assert slow[0].endswith("| **missed** |") and slow[1].endswith("| **met** |")
    wrong = verdicts(cache_doc(estimate_cache_hits=1899, estimate_exact=False))
    assert "1,899 / 1,900" in wrong[2] and wrong[2].endswith("| **missed** |")
    small = verdicts(cache_doc(requests=100))
    assert all("for 100 requests (not 2,000)" in line for line in small)
    assert all(line.endswith("| **missed** |") for line in small)
