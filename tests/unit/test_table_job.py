"""tables/job.py: rows become request lines and result lines join back to their rows, the
same for `freight run`, `freight batches create/wait --table` and `freight.map`; the
answer spec a batch records for `wait`; the kinds of table `freight.map` takes."""

from __future__ import annotations

import json
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from freight.service import table_batches, table_map
from freight.tables import TableError, answers, job, prompts

ROWS = [
    {"id": "a", "text": "first"},
    {"id": "b", "text": None},  # its template fails: not asked
    {"id": "c", "text": "third"},
    {"id": "a", "text": "fourth"},  # its id is taken: not asked
]


def builder(columns: answers.AnswerColumns | None = None) -> prompts.RequestBuilder:
    return job.request_builder(
        ["id", "text"],
        columns or answers.AnswerColumns.text(),
        model="m",
        prompt="Say {{ text }}",
        max_tokens=7,
    )


def result_line(custom_id: str, content: str, tokens: int = 5) -> str:
    body = {
        "choices": [{"message": {"content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": tokens, "completion_tokens": 2},
    }
    line = {"custom_id": custom_id, "response": {"status_code": 200, "body": body}, "error": None}
    return json.dumps(line)


def error_line(custom_id: str) -> str:
    line = {
        "custom_id": custom_id,
        "response": None,
        "error": {"code": "batch_expired", "message": "late"},
    }
    return json.dumps(line)


def test_rows_become_lines_with_their_row_numbers_as_ids_from_the_first_row() -> None:
    asked = job.ask(ROWS, 11, requests=builder(), id_column=None, max_custom_id_chars=64)
    assert [line["custom_id"] for line in asked.lines] == ["11", "13", "14"]
    assert asked.lines[0]["body"] == {
        "model": "m",
        "messages": [{"role": "user", "content": "Say first"}],
        "max_tokens": 7,
    }
    assert asked.ids == {"11": 0, "13": 2, "14": 3}
    assert asked.failed[1].error == "the column 'text' is empty (null) in this row"


def test_a_repeated_id_fails_its_row_also_across_calls_sharing_seen() -> None:
    seen: dict[str, int] = {}
    first = job.ask(
        ROWS[:2], 1, requests=builder(), id_column="id", max_custom_id_chars=64, seen=seen
    )
    second = job.ask(
        ROWS[2:], 3, requests=builder(), id_column="id", max_custom_id_chars=64, seen=seen
    )
    assert first.ids == {"a": 0}
    assert second.ids == {"c": 0}
    assert second.failed[1].error == "row 1 already has the id 'a'"
    # Without `seen`, each call knows only its own rows.
    alone = job.ask(ROWS[2:], 3, requests=builder(), id_column="id", max_custom_id_chars=64)
    assert alone.ids == {"c": 0, "a": 1}


def test_ids_alone_are_those_of_the_lines_plus_the_rows_whose_template_failed() -> None:
    """`wait --table` recomputes ids without the templates: every id it finds is either a
    line's or a row that was not asked because its template failed."""
    built = job.ask(ROWS, 1, requests=builder(), id_column="id", max_custom_id_chars=64)
    ids_only = job.ask(ROWS, 1, requests=None, id_column="id", max_custom_id_chars=64)
    assert ids_only.lines == []
    assert [line["custom_id"] for line in built.lines] == ["a", "c"]
    assert ids_only.ids == {"a": 0, "b": 1, "c": 2}
    assert ids_only.failed[3].error == built.failed[3].error == "row 1 already has the id 'a'"


def test_results_join_back_to_their_rows_whatever_their_order() -> None:
    table = pa.Table.from_pylist(ROWS)
    asked = job.ask(ROWS, 1, requests=builder(), id_column=None, max_custom_id_chars=64)
    results = [error_line("4"), "\n", result_line("1", "one", tokens=9), result_line("99", "x")]
    found = job.outcomes(results, answers.AnswerColumns.text())
    assert set(found) == {"1", "4", "99"}
    only = job.outcomes(results, answers.AnswerColumns.text(), wanted=asked.ids)
    assert set(only) == {"1", "4"}

    joined = job.join(table, asked, only, answers.AnswerColumns.text(), usage=True)

    assert joined.column_names == [
        "id",
        "text",
        "answer",
        "error",
        "prompt_tokens",
        "completion_tokens",
    ]
    assert joined.select(["id", "text"]).equals(table)
    assert joined["answer"].to_pylist() == ["one", None, None, None]
    assert joined["error"].to_pylist() == [
        None,
        "the column 'text' is empty (null) in this row",
        job.NO_RESULT,  # row 3 was asked, and no line came back
        "batch_expired: late",
    ]
    assert joined["prompt_tokens"].to_pylist() == [9, None, None, None]


def test_structured_answers_fill_their_columns_and_a_bad_one_is_its_rows_error() -> None:
    columns = job.answer_columns(choices=["yes", "no"], output_column="verdict")
    rows = [{"id": "a", "text": "x"}, {"id": "b", "text": "y"}]
    asked = job.ask(rows, 1, requests=builder(columns), id_column="id", max_custom_id_chars=64)
    assert asked.lines[0]["body"]["response_format"] == columns.response_format
    found = job.outcomes(
        [result_line("b", '{"verdict": "maybe"}'), result_line("a", '{"verdict": "yes"}')],
        columns,
    )
    joined = job.join(pa.Table.from_pylist(rows), asked, found, columns, usage=False)
    assert joined["verdict"].to_pylist() == ["yes", None]
    assert "'maybe' is not one of ['yes', 'no']" in joined["error"].to_pylist()[1]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"schema": {"type": "object"}, "choices": ["a", "b"]}, "give one"),
        ({"schema": {"type": "object"}, "output_column": "x"}, "--output-column names"),
        ({"choices": ["a"]}, "--choices needs at least two"),
    ],
)
def test_answer_options_that_contradict_are_refused(options: dict[str, Any], message: str) -> None:
    with pytest.raises(TableError, match=message):
        job.answer_columns(**options)


# --- what a batch records for `wait --table` --------------------------------------------


class RecordedBatch:
    """A server's batch as `answer_spec` reads it: its metadata and its input's first line."""

    def __init__(self, first_line: dict[str, Any]) -> None:
        self._first = json.dumps(first_line).encode()

    def first_line(self, file_id: str) -> bytes:
        assert file_id == "file-in"
        return self._first


@pytest.mark.parametrize(
    "options",
    [
        {"choices": ["positive", "negative"], "output_column": "label"},
        {"output_column": "reply", "id_column": "id"},
        {"schema": {"type": "object", "properties": {"n": {"type": "integer"}, "t": {}}}},
    ],
)
def test_wait_knows_the_answer_columns_and_the_id_column_from_the_batch(
    tmp_path: Path, options: dict[str, Any]
) -> None:
    source = tmp_path / "t.csv"
    source.write_text("id,text\n1,hello\n")
    prepared = table_batches.prepare(source, prompt="{{ text }}", **options)
    line = job.ask(
        [{"id": 1, "text": "hello"}],
        1,
        requests=prepared.requests,
        id_column=prepared.id_column,
        max_custom_id_chars=64,
    ).lines[0]
    batch = {"id": "batch_1", "input_file_id": "file-in", "metadata": prepared.metadata}

    columns, id_column = table_batches.answer_spec(RecordedBatch(line), batch)  # type: ignore[arg-type]

    assert columns.fields == prepared.answers.fields
    assert columns.schema == prepared.answers.schema
    assert id_column == options.get("id_column")
    assert len(prepared.metadata[table_batches.METADATA_KEY]) <= 512


def test_wait_refuses_a_batch_not_created_from_a_table() -> None:
    batch = {"id": "batch_1", "input_file_id": "file-in", "metadata": {"team": "qa"}}
    with pytest.raises(TableError, match="batch batch_1 was not created from a table"):
        table_batches.answer_spec(RecordedBatch({}), batch)  # type: ignore[arg-type]


def test_create_checks_the_options_before_anything_is_uploaded(tmp_path: Path) -> None:
    source = tmp_path / "t.csv"
    source.write_text("id,text\n1,hello\n")
    with pytest.raises(TableError, match="the column 'txet' that the table does not have"):
        table_batches.prepare(source, prompt="{{ txet }}")
    with pytest.raises(TableError, match="the table already has 'text'"):
        table_batches.prepare(source, prompt="{{ id }}", output_column="text")
    with pytest.raises(TableError, match="--id-column 'key' is not a column"):
        table_batches.prepare(source, prompt="{{ id }}", id_column="key")


# --- the kinds of table freight.map takes ------------------------------------------------


def answered(table: pa.Table) -> pa.Table:
    return table.append_column("answer", pa.array(["x"] * table.num_rows, pa.string()))


def test_a_list_of_dicts_comes_back_as_a_list_of_dicts() -> None:
    arrow, restore = table_map.to_arrow([{"n": 1, "t": "a"}, {"n": 2, "t": None}])
    assert arrow.schema.field("n").type == pa.int64()
    assert restore(answered(arrow)) == [
        {"n": 1, "t": "a", "answer": "x"},
        {"n": 2, "t": None, "answer": "x"},
    ]


def test_a_pandas_frame_comes_back_a_pandas_frame_with_its_index() -> None:
    pd = pytest.importorskip("pandas")  # not a dependency of Freight; Ray Data brings it
    frame = pd.DataFrame({"n": [1, 2, 3]}, index=[10, 20, 30])
    arrow, restore = table_map.to_arrow(frame)
    assert arrow.column_names == ["n"]  # the index is not a column to template
    back = restore(answered(arrow))
    assert isinstance(back, pd.DataFrame)
    assert list(back.index) == [10, 20, 30] and list(back["answer"]) == ["x", "x", "x"]


def test_a_polars_frame_is_recognised_by_its_module_without_importing_polars(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """polars is not installed here: a stand-in module of that name has the two calls
    map makes (DataFrame.to_arrow, polars.from_arrow)."""
    polars = types.ModuleType("polars")

    class DataFrame:
        __module__ = "polars.dataframe.frame"

        def __init__(self, table: pa.Table) -> None:
            self.table = table

        def to_arrow(self) -> pa.Table:
            return self.table

    polars.from_arrow = DataFrame  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "polars", polars)
    arrow, restore = table_map.to_arrow(DataFrame(pa.table({"n": [1]})))
    back = restore(answered(arrow))
    assert isinstance(back, DataFrame) and back.table.column_names == ["n", "answer"]


def test_anything_else_is_refused_naming_what_is_accepted() -> None:
    with pytest.raises(TableError, match=r"cannot map over a builtins\.str: give a pyarrow Table"):
        table_map.to_arrow("rows")
    with pytest.raises(TableError, match=r"cannot map over a builtins\.list"):
        table_map.to_arrow([1, 2])


def test_import_freight_stays_cheap_until_map_is_used() -> None:
    code = (
        "import sys, freight; print('pyarrow' in sys.modules, 'pandas' in sys.modules); "
        "freight.map; print('pyarrow' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "False", "True"]
