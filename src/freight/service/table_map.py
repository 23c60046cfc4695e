"""`freight.map`: a prompt over the rows of an in-memory table, in a notebook or a script.

The table (a pyarrow Table, a pandas or polars DataFrame, or a list of dicts) is written
to a Parquet file and runs through the same code as a table on disk: without a
`base_url`, `freight run`'s (service/table_run.py) on engines started in this process;
with one, `freight batches create/wait --table`'s (service/table_batches.py) through
that server's batch API. The answered table comes back as the kind of table given.
pandas and polars are not dependencies: a DataFrame is recognised by its class's module,
and its library imported only then.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import io
import sys
import tempfile
from collections.abc import Coroutine, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pyarrow as pa
import pyarrow.parquet as pq
from rich.console import Console

from freight.config import Settings
from freight.errors import FreightError
from freight.tables import TableError

if TYPE_CHECKING:
    from freight.engines.pool import EnginePool

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class Options:
    """What `map` asks of each row: `freight run`'s table options."""

    prompt: str
    schema: dict[str, Any] | None = None
    choices: Sequence[str] | None = None
    model: str | None = None
    system: str | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    id_column: str | None = None
    output_column: str | None = None
    usage: bool = False


def map_table(
    table: Any,
    prompt: str,
    *,
    schema: dict[str, Any] | None = None,
    choices: Sequence[str] | None = None,
    model: str | None = None,
    system: str | None = None,
    max_tokens: int | None = None,
    temperature: float | None = None,
    id_column: str | None = None,
    output_column: str | None = None,
    usage: bool = False,
    base_url: str | None = None,
    api_key: str | None = None,
    settings: Settings | None = None,
    poll_seconds: float = 1.0,
    progress: bool = True,
) -> Any:
    """Run `prompt` over every row of `table`; the same kind of table with answers added.

    `table`: a pyarrow Table, a pandas or polars DataFrame, or a list of dicts (one per
    row). `prompt` (and `system`) are Jinja2 templates of a row's columns, as in
    `freight run TABLE --prompt`. The result has every input column in row order, then
    the answer columns (`output_column`, default `answer`; with `choices`, one of them;
    with `schema`, a JSON Schema of an object, one column per property), `error` (None
    when the row was answered) and, with `usage`, `prompt_tokens` and
    `completion_tokens`.

    Without `base_url` the rows run in this process, on engines it starts (and stops)
    like `freight run`, with `settings` (default: loaded as the CLI loads them, from
    $FREIGHT_HOME and freight.toml). With `base_url` (a Freight server's /v1 URL) they
    run as a batch on that server: uploaded, polled every `poll_seconds`, downloaded.

    Raises freight.tables.TableError (a FreightError) for bad input, before any row runs.
    """
    options = Options(
        prompt=prompt,
        schema=schema,
        choices=None if choices is None else list(choices),
        model=model,
        system=system,
        max_tokens=max_tokens,
        temperature=temperature,
        id_column=id_column,
        output_column=output_column,
        usage=usage,
    )
    arrow, restore = to_arrow(table)
    # Recorded: a run that stops explains itself in its error with what it printed.
    console = (
        Console(stderr=True, record=True) if progress else Console(file=io.StringIO(), record=True)
    )
    with tempfile.TemporaryDirectory(prefix="freight-map-") as tmp:
        source, answered = Path(tmp) / "rows.parquet", Path(tmp) / "answered.parquet"
        pq.write_table(arrow, source)
        if base_url is None:
            if settings is None:
                from freight import config

                settings = config.load()
            _run_sync(run_local(settings, source, answered, options, console=console))
        else:
            run_remote(
                base_url,
                api_key,
                source,
                answered,
                options,
                console=console,
                poll_seconds=poll_seconds,
            )
        return restore(pq.read_table(answered))


async def run_local(
    settings: Settings,
    source: Path,
    output: Path,
    options: Options,
    *,
    console: Console,
    engines: EnginePool | None = None,
) -> None:
    """Run the table at `source` as `freight run` does, into `output`; `engines`: already
    started ones to run on (else this run starts its own and stops them)."""
    from freight.service import table_run

    run = table_run.prepare(
        settings,
        source,
        output,
        prompt=options.prompt,
        system=options.system,
        model=options.model,
        max_tokens=options.max_tokens,
        temperature=options.temperature,
        id_column=options.id_column,
        output_column=options.output_column,
        answer_schema=options.schema,
        schema_where="schema=",
        choices=None if options.choices is None else list(options.choices),
        usage=options.usage,
    )
    code = await table_run.run_table_async(settings, run, console=console, engines=engines)
    if code == 1:
        # A chunk failed validation or did not complete; the console recorded why.
        raise FreightError(f"the rows did not all run:\n{console.export_text().strip()}")


def run_remote(
    base_url: str,
    api_key: str | None,
    source: Path,
    output: Path,
    options: Options,
    *,
    console: Console,
    poll_seconds: float,
) -> None:
    """Run the table at `source` as a batch on the server at `base_url`, into `output`."""
    from freight.service import table_batches
    from freight.service.batch_client import BatchClient

    prepared = table_batches.prepare(
        source,
        prompt=options.prompt,
        system=options.system,
        model=options.model,
        max_tokens=options.max_tokens,
        temperature=options.temperature,
        id_column=options.id_column,
        output_column=options.output_column,
        schema=options.schema,
        schema_where="schema=",
        choices=None if options.choices is None else list(options.choices),
    )
    client = BatchClient(base_url, api_key)
    submitted = table_batches.create(client, prepared)
    batch = client.wait(submitted.batch["id"], poll_seconds=poll_seconds, console=console)
    table_batches.collect(client, batch, source, output, usage=options.usage)


def to_arrow(table: Any) -> tuple[pa.Table, Any]:
    """`table` as a pyarrow Table, and the function that turns an answered pyarrow Table
    back into `table`'s kind."""
    if isinstance(table, pa.Table):
        return table, lambda answered: answered
    kind = type(table)
    library = kind.__module__.split(".")[0]
    if library == "pandas" and kind.__name__ == "DataFrame":
        index = table.index

        def to_pandas(answered: pa.Table) -> Any:
            frame = answered.to_pandas()
            frame.index = index
            return frame

        return pa.Table.from_pandas(table, preserve_index=False), to_pandas
    if library == "polars" and kind.__name__ == "DataFrame":
        # polars is not a dependency: its module is the one the DataFrame came from.
        return table.to_arrow(), sys.modules[kind.__module__.split(".")[0]].from_arrow
    if isinstance(table, Sequence) and all(isinstance(row, Mapping) for row in table):
        return _from_rows(table), lambda answered: answered.to_pylist()
    raise TableError(
        f"cannot map over a {kind.__module__}.{kind.__name__}: give a pyarrow Table, a "
        "pandas or polars DataFrame, or a list of dicts"
    )


def _from_rows(rows: Sequence[Mapping[str, Any]]) -> pa.Table:
    """Rows as a table: a column for every key any row has, in the order they first
    appear, null where a row lacks it."""
    names = dict.fromkeys(key for row in rows for key in row)
    columns: dict[str, pa.Array] = {}
    for name in names:
        try:
            columns[str(name)] = pa.array([row.get(name) for row in rows])
        except (pa.ArrowException, TypeError, ValueError) as exc:
            raise TableError(f"the rows' values of '{name}' are not one type: {exc}") from None
    return pa.table(columns)


def _run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` to its end from synchronous code, also where an event loop is already
    running in this thread (a Jupyter notebook's): then in a thread of its own."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()
