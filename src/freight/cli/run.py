"""`freight run`: a batch file, or a table and a prompt, through the engine offline, no server."""

from __future__ import annotations

import asyncio
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from freight.cli import table_options
from freight.cli.common import HomeOption, err, fail, load_settings, setup_logging
from freight.config import DEFAULT_EMBEDDING_MODEL, Settings
from freight.errors import FreightError


def run(
    input_path: Annotated[
        Path,
        typer.Argument(
            help="A batch input file (JSONL), or a table with --prompt (.csv, .tsv, .parquet, "
            ".jsonl/.ndjson records; '-' reads stdin in --format).",
            dir_okay=False,
        ),
    ],
    output: Annotated[
        Path,
        typer.Option(
            "-o", "--output", help="Where result lines go; for a table, the answered table."
        ),
    ],
    errors: Annotated[
        Path | None,
        typer.Option("--errors", help="Error lines go here (default: into OUTPUT too)."),
    ] = None,
    endpoint: Annotated[
        str | None, typer.Option(help="Endpoint every line must use (default: the first line's).")
    ] = None,
    prompt: table_options.Prompt = None,
    prompt_file: table_options.PromptFile = None,
    system: table_options.System = None,
    embed: Annotated[
        str | None,
        typer.Option(
            metavar="COLUMN",
            help="Instead of a prompt: embed this text column with an embeddings model, into "
            "a list-of-float column `embedding` (JSON text in CSV/TSV).",
            rich_help_panel=table_options.PANEL,
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            help="The model: of every line of a batch file (instead of each line's own), or "
            "of a table's prompts (default: default_model; with --embed, "
            f"{DEFAULT_EMBEDDING_MODEL}). A model's name or alias."
        ),
    ] = None,
    max_tokens: table_options.MaxTokens = None,
    temperature: table_options.Temperature = None,
    schema: table_options.Schema = None,
    choices: table_options.Choices = None,
    output_column: table_options.OutputColumn = None,
    id_column: table_options.IdColumn = None,
    usage: table_options.Usage = False,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Keep what an earlier run wrote to OUTPUT and run the rest: a table's rows "
            "(.csv, .tsv, .jsonl); a batch file's custom_ids whose lines OUTPUT holds (the "
            "others' lines are appended).",
        ),
    ] = False,
    input_format: table_options.Format = None,
    home: HomeOption = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show engine logs.")] = False,
    ray: Annotated[
        bool,
        typer.Option(
            "--ray",
            help="Run on a Ray cluster: a local one, unless --ray-address names another. "
            "Engine actors: \\[ray] num_actors (freight.toml).",
        ),
    ] = False,
    ray_address: Annotated[
        str | None,
        typer.Option(
            "--ray-address",
            metavar="ADDRESS",
            help="The Ray cluster's head (host:port, ray://..., 'auto': the one this node "
            "belongs to); implies --ray.",
        ),
    ] = None,
) -> None:
    """Run a batch file offline, without a server: same validation and line format as the API.

    Or run a prompt over every row of a table and write the table back with the answers:
    freight run reviews.csv --prompt 'Sentiment of: {{ text }}' -o labeled.csv

    Or embed a column: freight run reviews.csv --embed text -o vectors.parquet
    """
    from freight.tables import formats  # pyarrow: imported by the commands that read tables

    row_options = {
        "--system": system,
        "--max-tokens": max_tokens,
        "--temperature": temperature,
        "--schema": schema,
        "--choices": choices,
        "--output-column": output_column,
        "--id-column": id_column,
        "--usage": usage or None,
    }
    is_table = (
        prompt is not None
        or prompt_file is not None
        or embed is not None
        or input_format is not None
        or str(input_path) == "-"
        or formats.is_table_path(input_path)
    )
    if not is_table:
        given = [name for name, value in row_options.items() if value is not None]
        if given:
            fail(
                f"{', '.join(given)} run a prompt over a table: give --prompt or "
                "--prompt-file (or --embed COLUMN)"
            )
        if not input_path.is_file():
            fail(f"{input_path} does not exist or is not a file")
        address = ray_address or ("local" if ray else None)
        run_batch_file(
            input_path, output, errors, endpoint, home, verbose, address, model, resume=resume
        )
        return
    batch_only = {
        "--errors": errors,
        "--endpoint": endpoint,
        "--ray": ray or None,
        "--ray-address": ray_address,
    }
    given = [name for name, value in batch_only.items() if value is not None]
    if given:
        fail(
            f"{', '.join(given)} apply to batch files; a table's errors go into its "
            "error column, and tables run on this machine"
        )
    if prompt is not None and prompt_file is not None:
        fail("--prompt and --prompt-file both give the prompt: give one of them")
    if prompt is None and prompt_file is None and embed is None:
        fail(
            "a table needs its prompt: give --prompt or --prompt-file (or --embed COLUMN "
            "to embed a column)"
        )
    if prompt_file is not None:
        try:
            prompt = prompt_file.read_text()
        except OSError as exc:
            fail(f"cannot read --prompt-file {prompt_file}: {exc.strerror}")
    settings = load_settings(home)
    setup_logging(verbose)
    with tempfile.TemporaryDirectory() as tmp:
        if str(input_path) == "-":
            input_path = read_stdin(Path(tmp), input_format)
        code = run_table(
            settings,
            input_path,
            output,
            prompt=prompt,
            embed=embed,
            input_format=input_format,
            system=system,
            model=model,
            max_tokens=max_tokens,
            temperature=temperature,
            schema=schema,
            choices=None if choices is None else choices.split(","),
            output_column=output_column,
            id_column=id_column,
            usage=usage,
            resume=resume,
        )
    raise typer.Exit(code)


def run_batch_file(
    input_path: Path,
    output: Path,
    errors: Path | None,
    endpoint: str | None,
    home: Path | None,
    verbose: bool,
    ray_address: str | None,
    model: str | None = None,
    *,
    resume: bool = False,
) -> None:
    """Run a batch file; `model`, if given, replaces every line's model; `resume`: only
    the custom_ids whose lines `output` lacks, appending theirs (service/resume_file.py)."""
    from freight.service import offline, resume_file

    settings = load_settings(home)
    setup_logging(verbose)
    append = resume and output.exists()
    with tempfile.TemporaryDirectory() as tmp:
        try:
            if append:
                done = resume_file.done_custom_ids(output)
                (Path(tmp) / "resume").mkdir()
                target = Path(tmp) / "resume" / input_path.name
                left = resume_file.remaining(input_path, done, target)
                err.print(
                    f"--resume: {left.num_skipped} lines already in {output}, "
                    f"{left.num_lines} to run",
                    markup=False,
                    soft_wrap=True,
                )
                if left.num_lines == 0:
                    raise typer.Exit(0)
                input_path = left.path
            if model is not None:
                input_path = offline.with_model(input_path, model, Path(tmp) / input_path.name)
            code = offline.run_file(
                settings,
                input_path,
                output,
                errors,
                endpoint,
                console=err,
                ray_address=ray_address,
                append=append,
            )
        except FreightError as exc:
            fail(exc)
    raise typer.Exit(code)


def read_stdin(folder: Path, input_format: str | None) -> Path:
    """Standard input copied to a file: a table is read twice (its columns are checked
    before its rows run), and stdin can be read once."""
    if input_format is None:
        fail("a table on standard input ('-') needs --format: csv, tsv, parquet or jsonl")
    path = folder / f"stdin.{input_format}"
    with open(path, "wb") as fh:
        shutil.copyfileobj(sys.stdin.buffer, fh)
    return path


def run_table(
    settings: Settings,
    input_path: Path,
    output: Path,
    *,
    prompt: str | None,
    embed: str | None,
    input_format: str | None,
    system: str | None,
    model: str | None,
    max_tokens: int | None,
    temperature: float | None,
    schema: Path | None,
    choices: list[str] | None,
    output_column: str | None,
    id_column: str | None,
    usage: bool,
    resume: bool,
) -> int:
    """Check the table run (exit 2 on bad input, before any engine starts), then run it."""
    from freight.service import table_run

    try:
        prepared = table_run.prepare(
            settings,
            input_path,
            output,
            prompt=prompt,
            embed=embed,
            input_format=input_format,
            system=system,
            model=model,
            max_tokens=max_tokens,
            temperature=temperature,
            id_column=id_column,
            output_column=output_column,
            schema_path=schema,
            choices=choices,
            usage=usage,
            resume=resume,
        )
    except FreightError as exc:
        fail(exc)
    try:
        return asyncio.run(table_run.run_table_async(settings, prepared, console=err))
    except FreightError as exc:
        fail(exc)
