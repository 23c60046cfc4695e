"""A table job's two ends: rows become batch request lines, and result lines join back to rows.

Every path that runs a table goes through here: `freight run` on a table
(service/table_run.py) chunk by chunk, `freight batches create --table` and `wait
--table` (service/table_batches.py), and `freight.map` (service/table_map.py). So the
three give a row the same custom_id, the same request and the same answer columns.

A row's custom_id is its 1-based row number in the table, or its `--id-column` value. A
row whose id is empty, too long or already taken, or whose template fails on it, is not
asked: its reason is its `error`. Ids are computed from the rows alone, so `wait
--table` computes the same ids from the table read again, in another process, and joins
the batch's results to the right rows.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Container, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from freight.tables import TableError, answers, formats, prompts

NO_RESULT = "the batch wrote no result for this row"


def read_schema(path: Path, given_format: str | None = None) -> tuple[str, pa.Schema]:
    """The format and the schema of the table at `path`; TableError if it cannot be read."""
    if not path.is_file():
        raise TableError(f"{path} does not exist or is not a file")
    fmt = formats.format_of(path, given_format)
    reader = formats.TableReader(path, fmt)
    reader.close()
    return fmt, reader.schema


def output_format(input_path: Path, output: Path) -> str:
    """The format of the answered table at `output`; TableError if it is the input table."""
    fmt = formats.format_of(output)
    if output.exists() and input_path.exists() and output.resolve() == input_path.resolve():
        raise TableError(f"-o {output} is the input table; write the answers elsewhere")
    return fmt


def load_schema(path: Path) -> Any:
    """The JSON in the file `--schema` names."""
    try:
        return json.loads(path.read_text())
    except OSError as exc:
        raise TableError(f"cannot read {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise TableError(f"{path} is not JSON: {exc}") from None


def answer_columns(
    *,
    schema: Any | None = None,
    schema_path: Path | None = None,
    choices: Sequence[str] | None = None,
    output_column: str | None = None,
    where: str = "--schema",
) -> answers.AnswerColumns:
    """What the answers become: a JSON Schema's properties (`schema`, or the file
    `schema_path`), one of `choices`, or text. `where` names `schema` in messages."""
    has_schema = schema is not None or schema_path is not None
    if has_schema and choices is not None:
        raise TableError("--schema and --choices both say what the answer is; give one")
    if has_schema and output_column is not None:
        raise TableError(
            "--output-column names the one answer column of --prompt or --choices; with "
            "--schema, the columns are the schema's properties"
        )
    column = output_column or answers.DEFAULT_COLUMN
    if schema_path is not None:
        schema, where = load_schema(schema_path), f"--schema {schema_path}"
    if schema is not None:
        return answers.AnswerColumns.from_schema(schema, where=where)
    if choices is not None:
        return answers.AnswerColumns.choices(choices, column)
    return answers.AnswerColumns.text(column)


def check_id_column(id_column: str | None, columns: Sequence[str]) -> None:
    """TableError unless `id_column` is None or one of `columns`."""
    if id_column is not None and id_column not in columns:
        raise TableError(
            f"--id-column '{id_column}' is not a column of the table; its columns are: "
            f"{', '.join(columns)}"
        )


def request_builder(
    columns: Sequence[str],
    answer_columns: answers.AnswerColumns,
    *,
    model: str,
    prompt: str,
    system: str | None = None,
    max_tokens: int | None = None,
    temperature: float | None = None,
) -> prompts.RequestBuilder:
    """The templates checked against `columns`, and the options every row's request has."""
    return prompts.RequestBuilder(
        model=model,
        prompt=prompts.RowTemplate(prompt, columns, option="--prompt"),
        system=None if system is None else prompts.RowTemplate(system, columns, option="--system"),
        max_tokens=max_tokens,
        temperature=temperature,
        response_format=answer_columns.response_format,
    )


@dataclasses.dataclass
class AskedRows:
    """Consecutive rows of a table as a batch asks them.

    `ids`: the custom_id of each row that has one, to its index among these rows;
    `lines`: the request lines of the rows asked, in row order; `failed`: the rows not
    asked, by index, with the reason.
    """

    ids: dict[str, int] = dataclasses.field(default_factory=dict)
    lines: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    failed: dict[int, answers.Outcome] = dataclasses.field(default_factory=dict)


def ask(
    rows: Sequence[Mapping[str, Any]],
    first_row: int,
    *,
    requests: prompts.RowRequests | None,
    id_column: str | None,
    max_custom_id_chars: int,
    seen: dict[str, int] | None = None,
) -> AskedRows:
    """Each row's custom_id and request line; `first_row` is the first row's number.

    `requests=None`: the ids alone, as `wait --table` recomputes them. `seen` (custom_id
    to row number) carries the ids of earlier rows, so an id repeated anywhere in the
    table fails its row; without it, only a repeat among `rows` does.
    """
    asked = AskedRows()
    seen = {} if seen is None else seen
    for i, row in enumerate(rows):
        try:
            custom_id = prompts.custom_id(row, first_row + i, id_column, max_custom_id_chars)
            if custom_id in seen:
                raise prompts.RowError(f"row {seen[custom_id]} already has the id '{custom_id}'")
            # The id is the row's even if its template fails below: `wait` knows the ids,
            # not the templates, and must find the same repeats.
            seen[custom_id] = first_row + i
            if requests is not None:
                asked.lines.append(requests.line(custom_id, row))
        except prompts.RowError as exc:
            asked.failed[i] = answers.Outcome(error=str(exc))
            continue
        asked.ids[custom_id] = i
    return asked


def outcomes(
    result_lines: Iterable[bytes | str],
    answer_columns: answers.AnswerColumns,
    wanted: Container[str] | None = None,
) -> dict[str, answers.Outcome]:
    """A batch's result lines (output and error files) as each row's outcome, by custom_id;
    only the `wanted` ids when given."""
    found: dict[str, answers.Outcome] = {}
    for raw in result_lines:
        if not raw.strip():
            continue
        result = json.loads(raw)
        custom_id = result.get("custom_id")
        if isinstance(custom_id, str) and (wanted is None or custom_id in wanted):
            found[custom_id] = answer_columns.outcome(result)
    return found


def join(
    chunk: pa.Table,
    asked: AskedRows,
    found: Mapping[str, answers.Outcome],
    answer_columns: answers.AnswerColumns,
    *,
    usage: bool,
    no_result: str = NO_RESULT,
) -> pa.Table:
    """`chunk` (the rows `asked` was built from) with the answer columns, `error` and, with
    `usage`, the token columns added; a row asked but absent from `found` has `no_result`
    as its error."""
    missing = answers.Outcome(error=no_result)
    row_outcomes = [asked.failed.get(i, missing) for i in range(chunk.num_rows)]
    for custom_id, i in asked.ids.items():
        row_outcomes[i] = found.get(custom_id, missing)
    schema = answers.output_schema(chunk.schema, answer_columns, usage=usage)
    for array in answers.columns(row_outcomes, answer_columns, usage=usage):
        chunk = chunk.append_column(schema.field(chunk.num_columns), array)
    return chunk
