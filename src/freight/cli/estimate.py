"""`freight estimate`: what a batch file or a table would take on this deployment, run nothing.

Reads the deployment's settings and store (`--home`, as `freight report` does): its
models' tokenizers, its history of output tokens per request, its measured throughput
and the work queued now. The same numbers as `POST /v1/batches/estimate`.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from freight.cli import table_options
from freight.cli.common import HomeOption, err, fail, load_settings
from freight.cli.run import read_stdin
from freight.errors import FreightError
from freight.usage import pricing

if TYPE_CHECKING:
    from freight.service.estimate import Estimate


def estimate_command(
    input_path: Annotated[
        Path,
        typer.Argument(
            help="A batch input file (JSONL), or a table with --prompt, as for `freight run`.",
            dir_okay=False,
        ),
    ],
    endpoint: Annotated[
        str | None, typer.Option(help="Endpoint every line must use (default: the first line's).")
    ] = None,
    prompt: table_options.Prompt = None,
    prompt_file: table_options.PromptFile = None,
    system: table_options.System = None,
    model: table_options.Model = None,
    max_tokens: table_options.MaxTokens = None,
    temperature: table_options.Temperature = None,
    schema: table_options.Schema = None,
    choices: table_options.Choices = None,
    id_column: table_options.IdColumn = None,
    input_format: table_options.Format = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    project: Annotated[
        str,
        typer.Option(help="The project the batch would belong to (for its result cache hits)."),
    ] = "default",
    home: HomeOption = None,
) -> None:
    """Estimate a batch without running it: requests, prompt tokens (each model's own
    tokenizer), output tokens (ceiling and expected), duration here, and cost.

    Exit 2 if the input is invalid, with the validation errors creating the batch would give.
    """
    from freight.engines.registry import Registry
    from freight.service import estimate, table_run
    from freight.store.db import open_database
    from freight.tables import formats

    is_table = (
        prompt is not None
        or prompt_file is not None
        or input_format is not None
        or str(input_path) == "-"
        or formats.is_table_path(input_path)
    )
    row_options = {
        "--system": system,
        "--model": model,
        "--max-tokens": max_tokens,
        "--temperature": temperature,
        "--schema": schema,
        "--choices": choices,
        "--id-column": id_column,
    }
    if not is_table:
        given = [name for name, value in row_options.items() if value is not None]
        if given:
            fail(f"{', '.join(given)} go with a table: give --prompt or --prompt-file")
        if not input_path.is_file():
            fail(f"{input_path} does not exist or is not a file")
    elif endpoint is not None:
        fail("--endpoint applies to batch files; a table's rows are chat requests")
    elif (prompt is None) == (prompt_file is None):
        fail("a table needs its prompt: give --prompt or --prompt-file (one of them)")
    settings = load_settings(home)
    try:
        registry = Registry(settings)
        db = open_database(settings.sqlalchemy_url, settings.home)
    except FreightError as exc:
        fail(exc)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            if not is_table:
                result = estimate.estimate_path(
                    settings, registry, db, input_path, endpoint, project=project
                )
            else:
                prompt = table_options.read_prompt(prompt, prompt_file)
                if str(input_path) == "-":
                    input_path = read_stdin(Path(tmp), input_format)
                prepared = table_run.prepare(
                    settings,
                    input_path,
                    Path(tmp) / "answers.csv",  # never written: an estimate runs nothing
                    prompt=prompt,
                    input_format=input_format,
                    system=system,
                    model=model,
                    max_tokens=max_tokens,
                    temperature=temperature,
                    id_column=id_column,
                    schema_path=schema,
                    choices=None if choices is None else choices.split(","),
                )
                result = table_run.estimate_table(settings, registry, db, prepared, project=project)
    except estimate.InvalidInput as exc:
        problems = Table("line", "code", "message", title="The input is invalid")
        for p in exc.problems:
            problems.add_row(str(p.line or ""), p.code or "", escape(p.message or ""))
        err.print(problems)
        fail(exc)
    except FreightError as exc:
        fail(exc)
    finally:
        db.dispose()
    if as_json:
        print(json.dumps(estimate.to_json_dict(result), indent=2))
    else:
        Console().print(to_table(result))


def _number(value: float | int | None, fmt: str = ",") -> str:
    return "unknown" if value is None else format(value, fmt)


def _seconds(value: float | None) -> str:
    if value is None:
        return "unknown"
    if value < 120:
        return f"{value:,.1f} s"
    return f"{value / 60:,.1f} min" if value < 7200 else f"{value / 3600:,.1f} h"


def to_table(e: Estimate) -> Table:
    """The estimate for people: one row per figure, with what it rests on."""
    out, duration, cost = e.output_tokens, e.duration, e.cost
    table = Table(title=f"Estimate: {e.model or 'no model'} at {e.endpoint}")
    table.add_column("", style="bold")
    table.add_column("value", justify="right")
    table.add_column("basis")
    table.add_row(
        "requests", f"{e.num_requests:,}", f"{e.num_invalid_requests:,} would be error lines"
    )
    prompt = e.prompt_tokens
    exact = "exact" if prompt.is_exact else "approximate"
    table.add_row("prompt tokens", f"{prompt.total:,}", escape(f"{exact}, {prompt.note}"))
    context = (
        f"; {out.num_requests_without_max_tokens:,} without max_tokens: context "
        f"{_number(out.context_length)} ({out.context_length_source}) minus the prompt"
        if out.num_requests_without_max_tokens
        else ""
    )
    table.add_row(
        "output tokens, ceiling", _number(out.ceiling), escape(f"sum of max_tokens x n{context}")
    )
    table.add_row("output tokens, expected", _number(out.expected), escape(out.note))
    table.add_row("cache hits", _number(e.cache_hits), escape(e.cache_note))
    table.add_row("duration", _seconds(duration.expected_seconds), escape(duration.basis))
    if duration.num_requests_queued_ahead:
        table.add_row(
            "  queued ahead",
            _seconds(duration.seconds_queued_ahead),
            f"{duration.num_requests_queued_ahead:,} requests, "
            f"{duration.tokens_queued_ahead:,} tokens",
        )
    discount = f"{float(cost.batch_discount * 100):g}% off"
    table.add_row("cost, batch", pricing.format_usd(cost.batch), escape(f"{discount}; {cost.note}"))
    table.add_row("cost, real-time equivalent", pricing.format_usd(cost.realtime), "list prices")
    table.add_row("saving", pricing.format_usd(cost.savings), "")
    table.add_row("cost, batch at the ceiling", pricing.format_usd(cost.batch_at_ceiling), "")
    return table
