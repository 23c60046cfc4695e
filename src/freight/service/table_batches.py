"""A table through a server's batch API: request lines built here, answers joined back here.

`freight batches create --table` and `freight.map(base_url=...)` build the request file
with tables/job.py (the lines `freight run` would run), upload it and create a batch;
`freight batches wait --table` and `freight.map` download the batch's output and error
files and join them to the table's rows by custom_id into the answered table.

`wait` knows the answers as `create` did, from the batch itself: its metadata
`freight_table` holds the id column and the answer column's name, and its request lines
hold the JSON Schema of structured answers (`response_format`). So `wait` needs only
the same table, read again: the ids are computed from the rows alone (tables/job.py).
The table is read and written in chunks; the results are held by custom_id meanwhile
(one answer per row asked), since a batch writes them in the order they finish.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
from pathlib import Path
from typing import Any

from freight.config import DEFAULT_CHAT_MODEL, LimitSettings
from freight.service import table_run
from freight.service.batch_client import BatchClient
from freight.store.statuses import BatchStatus
from freight.tables import TableError, answers, formats, job, prompts

METADATA_KEY = "freight_table"
# A row whose request `create` could not build is not in the batch; `wait` no longer
# knows why (create printed it), only that the batch has no result for it.
NOT_SENT = "no request was sent for this row (freight batches create printed why)"
MAX_LISTED_FAILURES = 10


@dataclasses.dataclass(frozen=True)
class TableBatch:
    """A table and the options of its batch, all checked: ready to build and upload."""

    input_path: Path
    input_format: str
    requests: prompts.RequestBuilder
    answers: answers.AnswerColumns
    id_column: str | None
    metadata: dict[str, str]  # what `wait` reads back: METADATA_KEY → the answer spec


def prepare(
    input_path: Path,
    *,
    prompt: str,
    input_format: str | None = None,
    system: str | None = None,
    model: str | None = None,
    max_tokens: int | None = None,
    temperature: float | None = None,
    id_column: str | None = None,
    output_column: str | None = None,
    schema: Any | None = None,
    schema_path: Path | None = None,
    schema_where: str = "--schema",
    choices: list[str] | None = None,
) -> TableBatch:
    """Check a table batch's inputs and options as `freight run` checks a table run's,
    before anything is uploaded; TableError names the problem. `schema`: the JSON Schema
    object (`schema_where` names it in messages), or `schema_path` its file."""
    fmt, input_schema = job.read_schema(input_path, input_format)
    answer_columns = job.answer_columns(
        schema=schema,
        schema_path=schema_path,
        choices=choices,
        output_column=output_column,
        where=schema_where,
    )
    job.check_id_column(id_column, input_schema.names)
    answers.output_schema(input_schema, answer_columns, usage=False)  # a clash, found now
    requests = job.request_builder(
        input_schema.names,
        answer_columns,
        model=model or DEFAULT_CHAT_MODEL,
        prompt=prompt,
        system=system,
        max_tokens=max_tokens,
        temperature=temperature,
    )
    column = None if answer_columns.schema is not None else answer_columns.names[0]
    spec = json.dumps({"id_column": id_column, "answer_column": column}, separators=(",", ":"))
    if len(spec) > LimitSettings().max_metadata_value_chars:
        raise TableError(
            f"the id and answer column names are too long to record in the batch's "
            f"metadata ({len(spec)} characters of JSON; at most "
            f"{LimitSettings().max_metadata_value_chars}); use shorter names"
        )
    return TableBatch(
        input_path=input_path,
        input_format=fmt,
        requests=requests,
        answers=answer_columns,
        id_column=id_column,
        metadata={METADATA_KEY: spec},
    )


@dataclasses.dataclass
class Submitted:
    """A created batch, and the rows left out of it because no request could be built."""

    batch: dict[str, Any]
    num_rows: int
    num_not_sent: int
    not_sent: list[tuple[int, str]]  # the first MAX_LISTED_FAILURES: row number, why

    def describe_not_sent(self) -> list[str]:
        """One line per row left out (the first few), and how many more."""
        lines = [f"row {row}: {error}" for row, error in self.not_sent]
        if self.num_not_sent > len(self.not_sent):
            lines.append(f"... and {self.num_not_sent - len(self.not_sent)} more rows")
        return lines


def create(
    client: BatchClient,
    table: TableBatch,
    *,
    window: str = "24h",
    metadata: dict[str, str] | None = None,
    priority: int | None = None,
) -> Submitted:
    """Build the table's request file, upload it with purpose batch and create its batch
    (at `priority`, Freight's extension, when given).

    A table none of whose rows can be asked is a TableError, before any upload.
    """
    limits = LimitSettings()
    seen: dict[str, int] = {}
    submitted = Submitted(batch={}, num_rows=0, num_not_sent=0, not_sent=[])
    reader = formats.TableReader(table.input_path, table.input_format)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{table.input_path.stem}-requests.jsonl"
        try:
            with open(path, "w") as fh:
                for chunk in table_run.chunks(reader.batches(), table_run.ROWS_PER_RUN):
                    first_row = submitted.num_rows + 1
                    asked = job.ask(
                        chunk.to_pylist(),
                        first_row,
                        requests=table.requests,
                        id_column=table.id_column,
                        max_custom_id_chars=limits.max_custom_id_chars,
                        seen=seen,
                    )
                    fh.writelines(json.dumps(x, ensure_ascii=False) + "\n" for x in asked.lines)
                    submitted.num_rows += chunk.num_rows
                    submitted.num_not_sent += len(asked.failed)
                    for i, outcome in sorted(asked.failed.items()):
                        if len(submitted.not_sent) < MAX_LISTED_FAILURES:
                            submitted.not_sent.append((first_row + i, outcome.error or ""))
        finally:
            reader.close()
        if submitted.num_not_sent == submitted.num_rows:
            reasons = "; ".join(submitted.describe_not_sent()[:3]) or "it has no rows"
            raise TableError(f"no row of {table.input_path} can be asked: {reasons}")
        uploaded = client.upload(path)
    submitted.batch = client.create_batch(
        uploaded["id"],
        prompts.ENDPOINT,
        window=window,
        metadata={**(metadata or {}), **table.metadata},
        priority=priority,
    )
    return submitted


def answer_spec(client: BatchClient, batch: dict[str, Any]) -> tuple[answers.AnswerColumns, Any]:
    """The answer columns and the id column a batch made by `create` was built with."""
    recorded = (batch.get("metadata") or {}).get(METADATA_KEY)
    if recorded is None:
        raise TableError(
            f"batch {batch['id']} was not created from a table (freight batches create "
            f"--table): its metadata has no '{METADATA_KEY}'"
        )
    try:
        spec = json.loads(recorded)
        id_column, column = spec["id_column"], spec["answer_column"]
    except (ValueError, KeyError, TypeError):
        raise TableError(
            f"batch {batch['id']}: its '{METADATA_KEY}' metadata is not what create --table "
            f"writes: {recorded!r}"
        ) from None
    try:
        body = json.loads(client.first_line(batch["input_file_id"]))["body"]
        response_format = body.get("response_format")
        schema = None
        if isinstance(response_format, dict) and response_format.get("type") == "json_schema":
            schema = response_format["json_schema"]["schema"]
    except (ValueError, KeyError, TypeError, AttributeError):
        raise TableError(
            f"batch {batch['id']}: its input file {batch['input_file_id']} does not start "
            "with a chat request line"
        ) from None
    if schema is not None:
        where = f"the schema of batch {batch['id']}"
        return answers.AnswerColumns.from_schema(schema, where=where), id_column
    return answers.AnswerColumns.text(column or answers.DEFAULT_COLUMN), id_column


@dataclasses.dataclass
class Collected:
    """What joining a batch's results to its table wrote."""

    num_rows: int = 0
    num_failed: int = 0  # rows whose `error` is set


def collect(
    client: BatchClient,
    batch: dict[str, Any],
    input_path: Path,
    output: Path,
    *,
    input_format: str | None = None,
    usage: bool = False,
) -> Collected:
    """Join an ended batch's output and error lines to the rows of the table it was made
    from, and write the answered table to `output` (its format from its extension)."""
    if batch["status"] == BatchStatus.FAILED:
        problems = "; ".join(
            f"line {e.get('line')}: {e.get('message')}" for e in (batch.get("errors") or [])
        )
        raise TableError(f"batch {batch['id']} failed: {problems or 'no reason given'}")
    answer_columns, id_column = answer_spec(client, batch)
    fmt, input_schema = job.read_schema(input_path, input_format)
    out_fmt = job.output_format(input_path, output)
    job.check_id_column(id_column, input_schema.names)
    schema = answers.output_schema(input_schema, answer_columns, usage=usage)
    limits = LimitSettings()
    found: dict[str, answers.Outcome] = {}
    collected = Collected()
    with tempfile.TemporaryDirectory() as tmp:
        for key in ("output_file_id", "error_file_id"):
            if batch.get(key):
                path = Path(tmp) / key
                client.download(batch[key], path)
                with open(path, "rb") as fh:
                    found.update(job.outcomes(fh, answer_columns))
    reader = formats.TableReader(input_path, fmt)
    writer = formats.TableWriter(output, out_fmt, schema)
    seen: dict[str, int] = {}
    try:
        for chunk in table_run.chunks(reader.batches(), table_run.ROWS_PER_RUN):
            asked = job.ask(
                chunk.to_pylist(),
                collected.num_rows + 1,
                requests=None,
                id_column=id_column,
                max_custom_id_chars=limits.max_custom_id_chars,
                seen=seen,
            )
            answered = job.join(
                chunk, asked, found, answer_columns, usage=usage, no_result=NOT_SENT
            )
            writer.write(answered)
            collected.num_rows += chunk.num_rows
            collected.num_failed += (
                chunk.num_rows - answered.column(answers.ERROR_COLUMN).null_count
            )
    finally:
        writer.close()
        reader.close()
    return collected
