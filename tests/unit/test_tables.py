"""Tables in, tables out (freight.tables): formats, row templates, answer columns, joining."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest

from freight.service.table_run import chunks
from freight.tables import TableError, answers, formats, prompts

REVIEW_SCHEMA = json.loads(
    (Path(__file__).resolve().parents[2] / "examples" / "review-schema.json").read_text()
)


def write_csv(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def read_all(path: Path, fmt: str) -> pa.Table:
    reader = formats.TableReader(path, fmt)
    try:
        return pa.Table.from_batches(list(reader.batches()), reader.schema)
    finally:
        reader.close()


# --- formats ---------------------------------------------------------------------------


def test_format_comes_from_the_extension_or_the_format_option() -> None:
    assert formats.format_of(Path("a.CSV")) == "csv"
    assert formats.format_of(Path("a.ndjson")) == "jsonl"
    assert formats.format_of(Path("-"), "parquet") == "parquet"
    with pytest.raises(TableError, match=r"'\.xlsx'.*\.csv, \.tsv, \.parquet"):
        formats.format_of(Path("a.xlsx"))
    with pytest.raises(TableError, match="unknown table format 'xls'"):
        formats.format_of(Path("-"), "xls")


def test_parquet_is_read_in_record_batches_in_order(tmp_path: Path) -> None:
    table = pa.table({"n": list(range(20_000))})
    pq.write_table(table, tmp_path / "t.parquet", row_group_size=3_000)
    reader = formats.TableReader(tmp_path / "t.parquet", "parquet")
    sizes = [b.num_rows for b in reader.batches()]
    reader.close()
    assert len(sizes) > 1 and max(sizes) <= formats.PARQUET_BATCH_ROWS
    assert read_all(tmp_path / "t.parquet", "parquet")["n"].to_pylist() == list(range(20_000))


def test_an_unreadable_table_is_a_table_error(tmp_path: Path) -> None:
    (tmp_path / "bad.parquet").write_text("not parquet")
    with pytest.raises(TableError, match=r"cannot read .*bad\.parquet as parquet"):
        formats.TableReader(tmp_path / "bad.parquet", "parquet")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(TableError, match="cannot read"):
        formats.TableReader(tmp_path / "empty.csv", "csv")


def test_one_column_is_read_alone_in_row_order(tmp_path: Path) -> None:
    table = pa.table({"id": list(range(20_000)), "text": ["x"] * 20_000})
    pq.write_table(table, tmp_path / "t.parquet", row_group_size=3_000)
    parts = list(formats.column_values(tmp_path / "t.parquet", "parquet", "id"))
    assert len(parts) > 1
    assert pa.chunked_array(parts).to_pylist() == list(range(20_000))
    source = write_csv(tmp_path / "t.csv", "id,text\n1,a\n,b\n3,c\n")
    ids = pa.chunked_array(list(formats.column_values(source, "csv", "id")))
    assert ids.to_pylist() == [1, None, 3]
    source = write_csv(tmp_path / "t.jsonl", '{"id": "a", "n": 1}\n{"id": "b", "n": 2}\n')
    assert pa.chunked_array(list(formats.column_values(source, "jsonl", "id"))).to_pylist() == [
        "a",
        "b",
    ]


def test_csv_with_quoted_newlines_and_tsv_are_read(tmp_path: Path) -> None:
    csv_path = write_csv(tmp_path / "a.csv", 'id,text\n1,"two\nlines"\n2,plain\n')
    assert read_all(csv_path, "csv").to_pylist() == [
        {"id": 1, "text": "two\nlines"},
        {"id": 2, "text": "plain"},
    ]
    tsv_path = write_csv(tmp_path / "a.tsv", "id\ttext\n1\ta, b\n")
    assert read_all(tsv_path, "tsv").to_pylist() == [{"id": 1, "text": "a, b"}]


def test_csv_to_jsonl_to_parquet_keeps_types_and_row_order(tmp_path: Path) -> None:
    source = write_csv(
        tmp_path / "in.csv", "id,name,score,ok\n3,c,1.5,true\n1,a,,false\n2,b,2.25,true\n"
    )
    first = read_all(source, "csv")
    for fmt, path in (("jsonl", tmp_path / "t.jsonl"), ("parquet", tmp_path / "t.parquet")):
        writer = formats.TableWriter(path, fmt, first.schema)
        writer.write(first)
        writer.close()
        again = read_all(path, fmt)
        assert again.schema.types == first.schema.types, fmt
        assert again.to_pylist() == first.to_pylist(), fmt
        first = again
    assert first["id"].to_pylist() == [3, 1, 2]
    assert first["score"].to_pylist() == [1.5, None, 2.25]


def test_nested_columns_are_json_text_in_csv(tmp_path: Path) -> None:
    table = pa.table({"id": [1], "tags": [["a", "b"]]})
    writer = formats.TableWriter(tmp_path / "o.csv", "csv", table.schema)
    writer.write(table)
    writer.close()
    assert read_all(tmp_path / "o.csv", "csv")["tags"].to_pylist() == ['["a", "b"]']


def test_resume_counts_whole_rows_and_drops_a_cut_one(tmp_path: Path) -> None:
    path = tmp_path / "o.csv"
    table = pa.table({"id": [1, 2, 3], "answer": ["x", "y\nwith a newline", None]})
    writer = formats.TableWriter(path, "csv", table.schema)
    writer.write(table)
    writer.close()
    with open(path, "ab") as fh:
        fh.write(b'4,"half a ro')  # the run was killed in the middle of this row
    assert formats.rows_written(path, "csv", ["id", "answer"]) == 3
    writer = formats.TableWriter(path, "csv", table.schema, append=True)
    writer.write(pa.table({"id": [4], "answer": ["z"]}, schema=table.schema))
    writer.close()
    assert read_all(path, "csv")["id"].to_pylist() == [1, 2, 3, 4]  # one header


def test_resume_refuses_parquet_and_an_output_with_other_columns(tmp_path: Path) -> None:
    with pytest.raises(TableError, match=r"--resume continues a \.csv, \.tsv or \.jsonl"):
        formats.rows_written(tmp_path / "o.parquet", "parquet", ["id"])
    path = tmp_path / "o.jsonl"
    path.write_text('{"id": 1, "label": "x"}\n{"id": 2, "label": "y"}\n')
    assert formats.rows_written(path, "jsonl", ["id", "label"]) == 2
    with pytest.raises(TableError, match="has the columns id, label, but this run writes"):
        formats.rows_written(path, "jsonl", ["id", "answer", "error"])


# --- templates ---------------------------------------------------------------------------


def test_template_renders_a_rows_columns_and_row() -> None:
    template = prompts.RowTemplate(
        "{{ product }}: {{ row['review text'] }}", ["product", "review text"]
    )
    assert template.render({"product": "Lamp", "review text": "bright"}) == "Lamp: bright"


def test_template_naming_a_missing_column_fails_listing_the_columns() -> None:
    with pytest.raises(TableError) as raised:
        prompts.RowTemplate("Classify: {{ txet }}", ["id", "text"])
    assert raised.value.message == (
        "--prompt uses the column 'txet' that the table does not have; its columns are: id, text"
    )


def test_template_syntax_error_names_the_option() -> None:
    with pytest.raises(TableError, match=r"--system: template syntax error on its line 1"):
        prompts.RowTemplate("{{ text ", ["text"], option="--system")


def test_null_cell_fails_only_its_row() -> None:
    template = prompts.RowTemplate("Review: {{ text }}", ["id", "text"])
    with pytest.raises(prompts.RowError, match=r"the column 'text' is empty \(null\)"):
        template.render({"id": 1, "text": None})
    assert template.render({"id": 2, "text": "ok"}) == "Review: ok"


def test_template_that_checks_for_a_null_cell_may_skip_it() -> None:
    template = prompts.RowTemplate("{{ text if text is defined else 'nothing' }}", ["text"])
    assert template.render({"text": None}) == "nothing"


def test_the_sandbox_keeps_a_template_from_reaching_python_internals() -> None:
    template = prompts.RowTemplate("{{ text.__class__.__mro__[1].__subclasses__() }}", ["text"])
    with pytest.raises(prompts.RowError):
        template.render({"text": "x"})


def test_request_line_carries_the_options() -> None:
    builder = prompts.RequestBuilder(
        model="m",
        prompt=prompts.RowTemplate("{{ q }}", ["q"]),
        system=prompts.RowTemplate("Be brief.", ["q"], option="--system"),
        max_tokens=5,
        temperature=0.0,
        response_format=answers.AnswerColumns.choices(["yes", "no"]).response_format,
    )
    line = builder.line("7", {"q": "Is it?"})
    assert line["custom_id"] == "7" and line["url"] == "/v1/chat/completions"
    assert line["body"]["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Is it?"},
    ]
    assert line["body"]["max_tokens"] == 5 and line["body"]["temperature"] == 0.0
    schema = line["body"]["response_format"]["json_schema"]["schema"]
    assert schema["properties"]["answer"]["enum"] == ["yes", "no"]


def test_custom_id_is_the_row_number_or_the_id_column() -> None:
    assert prompts.custom_id({"id": "x"}, 4, None, 64) == "4"
    assert prompts.custom_id({"id": 17}, 4, "id", 64) == "17"
    with pytest.raises(prompts.RowError, match="the id column 'id' is empty"):
        prompts.custom_id({"id": None}, 4, "id", 64)
    with pytest.raises(prompts.RowError, match="at most 3"):
        prompts.custom_id({"id": "long"}, 4, "id", 3)


def test_the_first_repeated_id_is_found_across_batches_with_both_rows() -> None:
    ids = ["a", "b", None, "", "c", "d", "", None, "b", "a"]
    batches = [pa.array(ids[i : i + 3], pa.string()) for i in range(0, len(ids), 3)]
    # Rows 9 and 10 repeat rows 2 and 1; row 9 comes first. Null and empty ids (rows 3,
    # 4, 7, 8) are each their own row's error, not repeats.
    assert prompts.repeated_id(batches) == prompts.RepeatedId("b", 2, 9)
    assert prompts.repeated_id([pa.array([7, 3]), pa.array([5, 7])]) == prompts.RepeatedId(7, 1, 4)
    categorical = pa.array(["x", "y", "x"]).dictionary_encode()  # pandas' category dtype
    assert prompts.repeated_id([categorical]) == prompts.RepeatedId("x", 1, 3)


def test_unique_ids_have_no_repeat() -> None:
    assert prompts.repeated_id([pa.array(["x", "y", None]), pa.array(["z", None, ""])]) is None
    assert prompts.repeated_id([pa.array([1])]) is None
    assert prompts.repeated_id([]) is None


def test_an_embedding_line_is_the_columns_text_and_an_empty_cell_fails_its_row() -> None:
    schema = pa.schema([("id", pa.int64()), ("text", pa.string())])
    builder = prompts.EmbeddingRequestBuilder.checked("minilm", "text", schema)
    assert builder.line("7", {"id": 7, "text": "Fast shipping."}) == {
        "custom_id": "7",
        "method": "POST",
        "url": "/v1/embeddings",
        "body": {"model": "minilm", "input": "Fast shipping."},
    }
    with pytest.raises(prompts.RowError) as null:
        builder.line("8", {"id": 8, "text": None})
    assert str(null.value) == "the column 'text' is empty (null) in this row"
    with pytest.raises(prompts.RowError, match="is empty in this row: no text to embed"):
        builder.line("9", {"id": 9, "text": ""})


def test_embed_names_a_text_column_of_the_table() -> None:
    schema = pa.schema(
        [
            ("id", pa.int64()),
            ("text", pa.string()),
            ("kind", pa.dictionary(pa.int32(), pa.string())),
        ]
    )
    with pytest.raises(TableError) as missing:
        prompts.EmbeddingRequestBuilder.checked("m", "txt", schema)
    assert missing.value.message == (
        "--embed 'txt' is not a column of the table; its columns are: id, text, kind"
    )
    with pytest.raises(TableError, match="--embed 'id' holds int64 values; an embedding is made"):
        prompts.EmbeddingRequestBuilder.checked("m", "id", schema)
    assert prompts.EmbeddingRequestBuilder.checked("m", "kind", schema).column == "kind"


# --- answers ---------------------------------------------------------------------------


def ok_line(content: str, finish_reason: str = "stop") -> dict[str, Any]:
    return {
        "custom_id": "1",
        "response": {
            "status_code": 200,
            "body": {
                "choices": [{"message": {"content": content}, "finish_reason": finish_reason}],
                "usage": {"prompt_tokens": 11, "completion_tokens": 3},
            },
        },
        "error": None,
    }


@pytest.mark.parametrize("values", [["positive"], ["a", ""], ["a", "a"]])
def test_choices_need_two_distinct_values(values: list[str]) -> None:
    with pytest.raises(TableError, match="--choices"):
        answers.AnswerColumns.choices(values)


def test_an_invalid_schema_is_refused_naming_the_problem() -> None:
    with pytest.raises(TableError, match=r"--schema s.json: not a valid JSON Schema \(at type"):
        answers.AnswerColumns.from_schema({"type": "objekt"}, where="--schema s.json")
    with pytest.raises(TableError, match="must describe an object with properties"):
        answers.AnswerColumns.from_schema({"type": "string"})
    with pytest.raises(TableError, match="is a JSON object, not a list"):
        answers.AnswerColumns.from_schema([])


def test_schema_properties_become_typed_columns_nested_ones_json_text() -> None:
    schema = {
        "type": "object",
        "properties": {
            "label": {"type": "string"},
            "stars": {"type": "integer"},
            "score": {"type": ["number", "null"]},
            "tags": {"type": "array", "items": {"type": "string"}},
        },
        "required": ["label"],
    }
    columns = answers.AnswerColumns.from_schema(schema)
    assert columns.names == ["label", "stars", "score", "tags"]
    assert [f.type for f in columns.fields] == [pa.string(), pa.int64(), pa.float64(), pa.string()]
    reply = '{"label": "good", "stars": 4, "score": 1, "tags": ["a", "b"]}'
    outcome = columns.outcome(ok_line(reply))
    assert outcome.error is None
    assert outcome.values == {"label": "good", "stars": 4, "score": 1.0, "tags": '["a", "b"]'}
    assert (outcome.prompt_tokens, outcome.completion_tokens) == (11, 3)


def test_an_answer_outside_the_schema_is_the_rows_error() -> None:
    columns = answers.AnswerColumns.from_schema(REVIEW_SCHEMA)
    wrong = '{"sentiment": "happy", "topic": "value", "summary": "ok"}'
    outcome = columns.outcome(ok_line(wrong))
    assert outcome.values is None
    assert "does not match the schema (at sentiment: 'happy' is not one of" in (outcome.error or "")
    cut = columns.outcome(ok_line('{"sentiment": "pos', "length"))
    assert cut.error is not None and "not JSON (it reached --max-tokens)" in cut.error


def test_an_error_line_is_the_rows_error() -> None:
    line = {
        "custom_id": "1",
        "response": {"status_code": 400, "body": {"error": {"code": "too_long", "message": "big"}}},
        "error": None,
    }
    assert answers.AnswerColumns.text().outcome(line).error == "too_long: big"
    gone = {"custom_id": "1", "response": None, "error": {"code": "batch_expired", "message": "x"}}
    assert answers.AnswerColumns.text().outcome(gone).error == "batch_expired: x"


def test_an_embedding_becomes_a_float_list_column_json_text_in_csv(tmp_path: Path) -> None:
    column = answers.EmbeddingColumn()
    line = {
        "custom_id": "1",
        "response": {
            "status_code": 200,
            "body": {
                "object": "list",
                "data": [{"object": "embedding", "index": 0, "embedding": [0.25, -1.5]}],
                "model": "m",
                "usage": {"prompt_tokens": 4, "total_tokens": 4},
            },
        },
        "error": None,
    }
    embedded = column.outcome(line)
    assert embedded == answers.Outcome(values={"embedding": [0.25, -1.5]}, prompt_tokens=4)
    assert column.outcome(ok_line("not an embedding")).error == "the response has no embedding"
    failed = answers.Outcome(error="the column 'text' is empty (null) in this row")
    vectors, error = answers.columns([embedded, failed], column, usage=False)
    assert vectors.type == pa.list_(pa.float32())
    assert vectors.to_pylist() == [[0.25, -1.5], None]
    assert error.to_pylist() == [None, failed.error]

    schema = answers.output_schema(pa.schema([("text", pa.string())]), column, usage=False)
    assert schema.names == ["text", "embedding", "error"]
    table = pa.table([pa.array(["a", None]), vectors, error], schema=schema)
    writer = formats.TableWriter(tmp_path / "o.csv", "csv", schema)
    writer.write(table)
    writer.close()
    assert read_all(tmp_path / "o.csv", "csv")["embedding"].to_pylist() == ["[0.25, -1.5]", None]


def test_output_columns_follow_the_input_and_may_not_clash() -> None:
    table = pa.schema([("id", pa.int64()), ("text", pa.string())])
    out = answers.output_schema(table, answers.AnswerColumns.text("label"), usage=True)
    assert out.names == ["id", "text", "label", "error", "prompt_tokens", "completion_tokens"]
    with pytest.raises(TableError, match="the table already has 'text'"):
        answers.output_schema(table, answers.AnswerColumns.text("text"), usage=False)


def test_outcomes_become_one_value_per_row() -> None:
    columns = answers.AnswerColumns.choices(["yes", "no"])
    outcomes = [
        columns.outcome(ok_line('{"answer": "yes"}')),
        answers.Outcome(error="the column 'q' is empty (null) in this row"),
        columns.outcome(ok_line('{"answer": "maybe"}')),
    ]
    answer, error = answers.columns(outcomes, columns, usage=False)
    assert answer.to_pylist() == ["yes", None, None]
    assert error.to_pylist()[0] is None and all(error.to_pylist()[1:])


# --- chunks ------------------------------------------------------------------------------


def test_chunks_regroup_record_batches_in_order_after_a_skip() -> None:
    batches = [pa.record_batch({"n": list(range(i, i + 5))}) for i in range(0, 20, 5)]
    got = list(chunks(batches, 6, skip=3))
    assert [c.num_rows for c in got] == [6, 6, 5]
    assert [n for c in got for n in c["n"].to_pylist()] == list(range(3, 20))
    assert list(chunks(batches, 6, skip=20)) == []


def test_csv_header_is_written_even_for_an_empty_table(tmp_path: Path) -> None:
    schema = pa.schema([("id", pa.int64()), ("answer", pa.string())])
    writer = formats.TableWriter(tmp_path / "o.csv", "csv", schema)
    writer.close()
    assert pa_csv.read_csv(tmp_path / "o.csv").column_names == ["id", "answer"]
