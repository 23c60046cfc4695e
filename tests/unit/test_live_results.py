"""The pure parts of results as they land: the results route's parameters, `freight
batches watch`'s position beside its file (killed anywhere, it continues exactly), and
`freight run --resume`'s choice of lines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from freight.errors import InvalidRequest
from freight.service import live_results, resume_file, watch


@pytest.mark.parametrize("value", ["-1", "x", "1.5", " 3", "9" * 19, "١٢", "0x10"])
def test_bad_after_is_refused_naming_the_parameter(value: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        live_results.parse_cursor(value)
    assert caught.value.param == "after"


@pytest.mark.parametrize("value", ["0", "-5", "1001", "abc", "", "1e3", "9" * 30])
def test_bad_limit_is_refused_naming_the_parameter_and_the_range(value: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        live_results.parse_limit(value)
    assert caught.value.param == "limit"
    assert "1 to 1000" in caught.value.message


def test_cursor_and_limit_defaults() -> None:
    assert live_results.parse_cursor(None) == 0
    assert live_results.parse_cursor("") == 0
    assert live_results.parse_cursor("42") == 42
    assert live_results.parse_limit(None) == live_results.DEFAULT_LIMIT
    assert live_results.parse_limit("1000") == 1000


def test_watch_continues_after_a_kill_that_left_half_a_line(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    position = watch.start(out, "batch_1")
    position = watch.append(out, position, b'{"custom_id":"a"}\n{"custom_id":"b"}\n', "7")
    with open(out, "ab") as fh:  # killed mid-append, before the sidecar moved
        fh.write(b'{"custom_id":"c"}\n{"cust')
    resumed = watch.start(out, "batch_1")
    assert resumed == position
    assert resumed.cursor == "7" and resumed.num_lines == 2
    assert out.read_bytes() == b'{"custom_id":"a"}\n{"custom_id":"b"}\n'


def test_watch_refuses_a_file_it_did_not_write_or_another_batch(tmp_path: Path) -> None:
    foreign = tmp_path / "foreign.jsonl"
    foreign.write_text('{"x": 1}\n')
    with pytest.raises(InvalidRequest, match="not written by"):
        watch.start(foreign, "batch_1")
    out = tmp_path / "out.jsonl"
    watch.start(out, "batch_1")
    with pytest.raises(InvalidRequest, match="batch_1, not batch_2"):
        watch.start(out, "batch_2")
    watch.sidecar_path(out).write_text("{not json")
    with pytest.raises(InvalidRequest, match="cannot read"):
        watch.start(out, "batch_1")


def test_watch_starts_fresh_into_an_empty_file(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    out.write_bytes(b"")
    assert watch.start(out, "b") == watch.Position("b", "", 0, 0)
    assert json.loads(watch.sidecar_path(out).read_text())["batch_id"] == "b"


def test_resume_skips_custom_ids_in_the_output_and_drops_a_cut_line(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text(
        "".join(json.dumps({"custom_id": c, "body": {}}) + "\n" for c in "abcd") + "not json\n"
    )
    out = tmp_path / "out.jsonl"
    out.write_text('{"custom_id": "b", "response": {}}\n{"custom_id": "d", "respo')
    done = resume_file.done_custom_ids(out)
    assert done == {"b"}
    assert out.read_text() == '{"custom_id": "b", "response": {}}\n'
    left = resume_file.remaining(source, done, tmp_path / "left.jsonl")
    assert (left.num_lines, left.num_skipped) == (4, 1)  # the bad line stays, to be reported
    kept = (tmp_path / "left.jsonl").read_text().splitlines()
    assert [json.loads(line)["custom_id"] for line in kept[:3]] == ["a", "c", "d"]


def test_resume_refuses_an_output_that_is_not_result_lines(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    out.write_text('{"text": "a table row"}\n')
    with pytest.raises(InvalidRequest, match="line 1"):
        resume_file.done_custom_ids(out)
