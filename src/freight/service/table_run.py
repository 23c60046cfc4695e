"""`freight run` on a table: rows run as offline batches of a chunk each, answers join back.

Each chunk of rows (`ROWS_PER_RUN`) becomes a batch file (tables/job.py builds its
lines) and runs through `offline.run_batch_file`, the same validation, worker and
result lines as `freight run` on a batch file, on engines this run starts once for all
chunks. Its result lines join back to its rows by custom_id, and the chunk is appended
to the output before the next one is read. So a table of any length runs in the memory
of one chunk, answers are on disk as each chunk ends, and `--resume` continues after
the last row an interrupted run wrote.

Everything a user can get wrong (the files, the templates, the schema, the options, an
`--id-column` value two rows share) is checked by `prepare`, before any engine starts.
`--embed COLUMN` runs the same way, with /v1/embeddings lines and a vector column.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
from rich.console import Console

from freight.config import DEFAULT_EMBEDDING_MODEL, Settings
from freight.engines.pool import EnginePool
from freight.engines.registry import Registry
from freight.protocol.batch_input import TooLong
from freight.service import estimate, offline
from freight.store import batches
from freight.store.db import Database
from freight.store.files import DEFAULT_PROJECT
from freight.store.statuses import BatchStatus
from freight.tables import TableError, answers, formats, job, prompts
from freight.upstream import passthrough

# Rows per offline batch: large enough that the engine stays full between chunks (a
# chunk's tail runs fewer requests at once), small enough that one chunk's rows,
# lines and results sit in memory comfortably, and an interrupted run loses little.
ROWS_PER_RUN = 10_000


@dataclasses.dataclass(frozen=True)
class TableRun:
    """A table run whose inputs and options have all been checked."""

    input_path: Path
    input_format: str
    output: Path
    output_format: str
    requests: prompts.RowRequests
    answers: answers.AnswerColumns
    schema: pa.Schema  # the output table's
    id_column: str | None = None
    usage: bool = False
    num_done: int = 0  # rows an earlier run already wrote to the output (--resume)


def prepare(
    settings: Settings,
    input_path: Path,
    output: Path,
    *,
    prompt: str | None = None,
    embed: str | None = None,
    input_format: str | None = None,
    system: str | None = None,
    model: str | None = None,
    max_tokens: int | None = None,
    temperature: float | None = None,
    id_column: str | None = None,
    output_column: str | None = None,
    schema_path: Path | None = None,
    answer_schema: Any | None = None,
    schema_where: str = "schema=",
    choices: list[str] | None = None,
    usage: bool = False,
    resume: bool = False,
) -> TableRun:
    """Check everything about a table run that can be checked without running it.

    A run either answers a `prompt` or embeds the column `embed` (default model: the
    embeddings default). Raises TableError naming the problem: an unreadable table, an
    unknown format, a template with a syntax error or naming a column the table lacks,
    an invalid schema, fewer than two choices, an unknown model or one that does not
    serve the run's kind of request, an output column the table already has, an
    `--id-column` value that two rows share. `answer_schema`: the JSON Schema itself
    instead of `schema_path`'s (freight.map), called `schema_where` in messages.
    """
    fmt, input_schema = job.read_schema(input_path, input_format)
    out_fmt = job.output_format(input_path, output)
    _check_task(
        prompt, embed, system, max_tokens, temperature, schema_path or answer_schema, choices
    )
    answer_columns: answers.AnswerColumns
    if embed is not None:
        answer_columns = answers.EmbeddingColumn(output_column or answers.EMBEDDING_COLUMN)
    else:
        answer_columns = job.answer_columns(
            schema=answer_schema,
            schema_path=schema_path,
            choices=choices,
            output_column=output_column,
            where=schema_where,
        )
    model = model or (DEFAULT_EMBEDDING_MODEL if embed is not None else settings.default_model)
    registry = Registry(settings)
    if not registry.has(model):
        raise TableError(f"unknown model '{model}'; the models are: {', '.join(registry.names())}")
    job.check_id_column(id_column, input_schema.names)
    requests: prompts.RowRequests
    if embed is not None:
        requests = prompts.EmbeddingRequestBuilder.checked(model, embed, input_schema)
    elif prompt is None:  # refused by _check_task already; said again for the type
        raise TableError("a table needs its prompt (--prompt, --prompt-file)")
    else:
        requests = job.request_builder(
            input_schema.names,
            answer_columns,
            model=model,
            prompt=prompt,
            system=system,
            max_tokens=max_tokens,
            temperature=temperature,
        )
    _check_model_serves(registry, model, requests.url, "a prompt" if embed is None else "--embed")
    schema = answers.output_schema(input_schema, answer_columns, usage=usage)
    if id_column is not None:
        _check_unique_ids(input_path, fmt, id_column)
    num_done = 0
    if resume and output.exists():
        num_done = formats.rows_written(output, out_fmt, schema.names)
    return TableRun(
        input_path=input_path,
        input_format=fmt,
        output=output,
        output_format=out_fmt,
        requests=requests,
        answers=answer_columns,
        schema=schema,
        id_column=id_column,
        usage=usage,
        num_done=num_done,
    )


def _check_task(
    prompt: str | None,
    embed: str | None,
    system: str | None,
    max_tokens: int | None,
    temperature: float | None,
    schema_path: Path | None,
    choices: list[str] | None,
) -> None:
    """A run answers a prompt or embeds a column: never both, never neither."""
    if embed is None:
        if prompt is None:
            raise TableError(
                "a table needs its prompt (--prompt, --prompt-file), or a column to embed "
                "(--embed COLUMN)"
            )
        return
    generation = {
        "--prompt/--prompt-file": prompt,
        "--system": system,
        "--max-tokens": max_tokens,
        "--temperature": temperature,
        "--schema": schema_path,
        "--choices": choices,
    }
    given = [name for name, value in generation.items() if value is not None]
    if given:
        raise TableError(
            "--embed writes a column's embeddings and takes no options for a generated "
            f"answer; drop {', '.join(given)}"
        )


def _check_model_serves(registry: Registry, model: str, url: str, what: str) -> None:
    """An embeddings model cannot answer a prompt, nor a chat model embed a column."""
    if passthrough.serving_problem(registry, model, url, in_batch=True) is None:
        return
    able = [
        name
        for name in registry.names()
        if passthrough.serving_problem(registry, name, url, in_batch=True) is None
    ]
    raise TableError(
        f"the model '{model}' does not serve {url}, which {what} needs; --model may name "
        f"one that does: {', '.join(able) or 'none is configured'}"
    )


def _check_unique_ids(path: Path, fmt: str, column: str) -> None:
    """Two rows with one id could not be told apart in the output of a batch (its
    custom_ids are unique): a repeat anywhere in the table stops the run before it
    starts, found by reading the id column alone."""
    try:
        repeat = prompts.repeated_id(formats.column_values(path, fmt, column))
    except pa.ArrowNotImplementedError:
        raise TableError(
            f"--id-column '{column}' holds values that are not ids; an id is text or a number"
        ) from None
    if repeat is not None:
        raise TableError(
            f"--id-column '{column}': rows {repeat.first_row} and {repeat.row} both have "
            f"the id '{repeat.value}'; each row needs an id of its own (without "
            "--id-column, rows are numbered)"
        )


@dataclasses.dataclass
class Totals:
    """What the chunks of a run add up to, for its closing line and exit code."""

    num_rows: int = 0
    num_failed: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    is_complete: bool = True  # every chunk's batch completed (none expired or was cancelled)


async def run_table_async(
    settings: Settings,
    run: TableRun,
    *,
    console: Console,
    engines: EnginePool | None = None,
    rows_per_run: int = ROWS_PER_RUN,
) -> int:
    """Run every row not yet in the output, appending answers chunk by chunk; the exit
    code (see freight.cli.main). `engines`: already-started engines to run on."""
    pool = engines or EnginePool(settings, Registry(settings))
    reader = formats.TableReader(run.input_path, run.input_format)
    writer = formats.TableWriter(run.output, run.output_format, run.schema, append=run.num_done > 0)
    if run.num_done:
        console.print(f"resuming: {run.num_done} rows are already in {run.output}")
    totals = Totals()
    row_number = run.num_done + 1
    try:
        for chunk in chunks(reader.batches(), rows_per_run, skip=run.num_done):
            answered, batch = await run_chunk(settings, run, chunk, row_number, pool, console)
            if batch is not None and batch.status == BatchStatus.FAILED:
                console.print(offline.validation_errors(batch))
                return 1
            writer.write(answered)
            row_number += chunk.num_rows
            totals.num_rows += chunk.num_rows
            # A row succeeded exactly when its error is null.
            totals.num_failed += chunk.num_rows - answered.column(answers.ERROR_COLUMN).null_count
            if batch is not None:
                totals.input_tokens += batch.input_tokens
                totals.output_tokens += batch.output_tokens
                totals.is_complete &= batch.status == BatchStatus.COMPLETED
    finally:
        writer.close()
        reader.close()
        if engines is None:
            await pool.shutdown()
    console.print(
        f"{BatchStatus.COMPLETED if totals.is_complete else 'incomplete'}: "
        f"{totals.num_rows - totals.num_failed} rows answered, {totals.num_failed} failed; "
        f"{totals.input_tokens} input and {totals.output_tokens} output tokens -> {run.output}"
    )
    if not totals.is_complete:
        return 1
    return 3 if totals.num_failed else 0


def chunks(
    record_batches: Iterable[pa.RecordBatch], size: int, *, skip: int = 0
) -> Iterator[pa.Table]:
    """The rows after the first `skip`, regrouped into tables of `size` rows (the last
    may be shorter), in order."""
    pending: list[pa.RecordBatch] = []
    num_pending = 0
    for batch in record_batches:
        if skip >= batch.num_rows:
            skip -= batch.num_rows
            continue
        batch, skip = batch.slice(skip), 0
        while batch.num_rows:
            take = min(size - num_pending, batch.num_rows)
            pending.append(batch.slice(0, take))
            num_pending += take
            batch = batch.slice(take)
            if num_pending == size:
                yield pa.Table.from_batches(pending)
                pending, num_pending = [], 0
    if pending:
        yield pa.Table.from_batches(pending)


async def run_chunk(
    settings: Settings,
    run: TableRun,
    chunk: pa.Table,
    first_row: int,
    engines: EnginePool,
    console: Console,
) -> tuple[pa.Table, batches.BatchRecord | None]:
    """Run one chunk's rows; the chunk with the answer columns added, and its batch (None
    when no row of it could be asked)."""
    asked = job.ask(
        chunk.to_pylist(),
        first_row,
        requests=run.requests,
        id_column=run.id_column,
        max_custom_id_chars=settings.limits.max_custom_id_chars,
    )
    found: dict[str, answers.Outcome] = {}
    runs = settings.home / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    batch = None
    if asked.lines:
        with tempfile.TemporaryDirectory(dir=runs) as tmp:
            lines = Path(tmp) / "rows.jsonl"
            with open(lines, "w") as fh:
                fh.writelines(json.dumps(line, ensure_ascii=False) + "\n" for line in asked.lines)
            results, errors = Path(tmp) / "results.jsonl", Path(tmp) / "errors.jsonl"
            batch = await offline.run_batch_file(
                settings, lines, results, errors, run.requests.url, console=console, engines=engines
            )
            if batch.status == BatchStatus.FAILED:
                return chunk, batch
            for path in (results, errors):
                with open(path, "rb") as result_fh:
                    found.update(job.outcomes(result_fh, run.answers, wanted=asked.ids))
    return job.join(chunk, asked, found, run.answers, usage=run.usage), batch


def estimate_table(
    settings: Settings,
    registry: Registry,
    db: Database,
    run: TableRun,
    *,
    engines: EnginePool | None = None,
    project: str = DEFAULT_PROJECT,
) -> estimate.Estimate:
    """`freight estimate` on a table: its rows' lines as `freight run` would send them,
    chunk by chunk (each validated as its batch would be; a problem's line is the row
    number). Rows that cannot be asked (a template failing on them) count as invalid."""
    num_row_errors = 0
    max_line_bytes = settings.limits.max_line_bytes
    reader = formats.TableReader(run.input_path, run.input_format)

    def sources() -> Iterator[list[tuple[int, bytes | TooLong]]]:
        nonlocal num_row_errors
        row_number = run.num_done + 1
        for chunk in chunks(reader.batches(), ROWS_PER_RUN, skip=run.num_done):
            asked = job.ask(
                chunk.to_pylist(),
                row_number,
                requests=run.requests,
                id_column=run.id_column,
                max_custom_id_chars=settings.limits.max_custom_id_chars,
            )
            num_row_errors += len(asked.failed)
            lines: list[tuple[int, bytes | TooLong]] = []
            for line in asked.lines:
                i = asked.ids[line["custom_id"]]
                raw = json.dumps(line, ensure_ascii=False).encode()
                lines.append(
                    (row_number + i, TooLong(len(raw)) if len(raw) > max_line_bytes else raw)
                )
            row_number += chunk.num_rows
            if lines:
                yield lines

    try:
        result = estimate.estimate(
            settings, registry, db, sources(), prompts.ENDPOINT, engines=engines, project=project
        )
    finally:
        reader.close()
    return dataclasses.replace(
        result, num_invalid_requests=result.num_invalid_requests + num_row_errors
    )
