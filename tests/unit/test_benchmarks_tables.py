"""The tables benchmark's measuring: rows written from an output's size, memory against
progress, what a resumed run said, and its output against a clean run's."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from benchmarks import tables


def test_the_generated_table_is_the_same_for_the_same_seed(tmp_path: Path) -> None:
    first = pq.read_table(tables.write_table(tmp_path / "a.parquet", 250, seed=3))
    again = pq.read_table(tables.write_table(tmp_path / "b.parquet", 250, seed=3))
    other = pq.read_table(tables.write_table(tmp_path / "c.parquet", 250, seed=4))
    assert first.equals(again) and not first.equals(other)
    assert first["id"].to_pylist() == list(range(1, 251))
    assert all(8 <= len(review.split()) <= 40 for review in first["review"].to_pylist())


def test_rows_written_follow_the_row_groups_as_the_file_grows(tmp_path: Path) -> None:
    path = tmp_path / "out.parquet"
    schema = pa.schema([("n", pa.int64()), ("text", pa.string())])
    with pq.ParquetWriter(path, schema) as writer:
        for start in range(0, 30, 10):  # three chunks, as `freight run` writes them
            writer.write_table(
                pa.table({"n": range(start, start + 10), "text": ["x" * 50] * 10}, schema=schema)
            )
    ends = tables.row_group_ends(path)
    assert [rows for _, rows in ends] == [10, 20, 30]
    offsets = [end for end, _ in ends]
    assert offsets == sorted(offsets) and offsets[-1] < path.stat().st_size  # then the footer
    assert tables.rows_at(4, ends) == 0  # the magic bytes only
    assert tables.rows_at(offsets[0] - 1, ends) == 0
    assert tables.rows_at(offsets[0], ends) == 10
    assert tables.rows_at(offsets[2] - 1, ends) == 20
    assert tables.rows_at(path.stat().st_size, ends) == 30


def test_memory_is_read_against_rows_written() -> None:
    samples = [
        (0.0, 80.0, 0),
        (1.0, 120.0, 0),  # the id column read before the rows run
        (2.0, 100.0, 10),
        (3.0, 110.0, 40),
        (4.0, 105.0, 90),
        (5.0, 130.0, 100),
        (5.1, 0.0, 100),  # the process had exited
    ]
    profile = tables.memory_profile(samples, 100)
    assert profile["peak_rss_mb"] == 130.0
    at = profile["rss_mb_at_percent_of_rows"]
    assert (at["10"], at["20"], at["50"], at["90"]) == (100.0, 110.0, 105.0, 105.0)
    assert (profile["window_rss_mb_min"], profile["window_rss_mb_max"]) == (100.0, 110.0)
    assert (profile["flat_ratio"], profile["window_samples"]) == (1.1, 3)
    assert tables.memory_profile([(0.0, 50.0, 0)], 100)["flat_ratio"] is None


def test_the_resumed_runs_counts_come_from_its_closing_line() -> None:
    printed = (
        "resuming: 500000 rows are already in\n/tmp/out.jsonl\n...\n"
        "\x1b[1mcompleted\x1b[0m: 499990 rows answered, 10 failed; 1 input and 2 output tokens"
    )
    assert tables.resumed_counts(printed) == (500_000, 500_000)
    assert tables.resumed_counts("completed: 3 rows answered, 0 failed; ...") == (0, 3)
    with pytest.raises(RuntimeError, match="no closing line"):
        tables.resumed_counts("Traceback ...")


def test_a_resumed_output_is_compared_with_the_clean_run_row_by_row(tmp_path: Path) -> None:
    rows = [{"id": i, "answer": f"a{i}", "error": None} for i in range(5)]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "clean.parquet")
    resumed = tmp_path / "resumed.jsonl"
    resumed.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert tables.compare_rows(tmp_path / "clean.parquet", resumed) == (5, 0)
    changed = [*rows[:2], {**rows[2], "answer": "again"}, *rows[3:], rows[4]]  # one differs
    resumed.write_text("".join(json.dumps(r) + "\n" for r in changed))  # and one extra
    assert tables.compare_rows(tmp_path / "clean.parquet", resumed) == (5, 2)
    resumed.write_text("".join(json.dumps(r) + "\n" for r in rows[:3]))
    assert tables.compare_rows(tmp_path / "clean.parquet", resumed) == (5, 2)  # two missing
    assert tables.whole_lines(resumed) == 3
