"""The options that say how a table's rows are asked, shared by the commands that take a
table through a server (`freight batches create/wait --table`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from freight.cli.common import fail
from freight.config import DEFAULT_CHAT_MODEL

PANEL = "Tables (CSV, TSV, Parquet, JSONL records)"

Prompt = Annotated[
    str | None,
    typer.Option(
        help="The prompt for each row: a Jinja2 template of its columns ('{{ text }}').",
        rich_help_panel=PANEL,
    ),
]
PromptFile = Annotated[
    Path | None,
    typer.Option(help="Read the prompt template from this file.", rich_help_panel=PANEL),
]
System = Annotated[
    str | None,
    typer.Option(help="A system message (a template too).", rich_help_panel=PANEL),
]
Model = Annotated[
    str | None,
    typer.Option(help=f"The model (default: {DEFAULT_CHAT_MODEL}).", rich_help_panel=PANEL),
]
MaxTokens = Annotated[
    int | None,
    typer.Option(min=1, help="Longest answer, in tokens.", rich_help_panel=PANEL),
]
Temperature = Annotated[float | None, typer.Option(min=0.0, rich_help_panel=PANEL)]
Schema = Annotated[
    Path | None,
    typer.Option(
        help="A JSON Schema of an object: structured answers, one column per property.",
        rich_help_panel=PANEL,
    ),
]
Choices = Annotated[
    str | None,
    typer.Option(help="The answer is one of these comma-separated values.", rich_help_panel=PANEL),
]
OutputColumn = Annotated[
    str | None,
    typer.Option(help="The answer column's name (default: answer).", rich_help_panel=PANEL),
]
IdColumn = Annotated[
    str | None,
    typer.Option(
        help="The column that identifies a row (default: its row number).",
        rich_help_panel=PANEL,
    ),
]
Usage = Annotated[
    bool,
    typer.Option(
        "--usage", help="Add prompt_tokens and completion_tokens columns.", rich_help_panel=PANEL
    ),
]
Format = Annotated[
    str | None,
    typer.Option(
        "--format",
        help="The table's format when its extension does not say: csv, tsv, parquet, jsonl.",
        rich_help_panel=PANEL,
    ),
]


def read_prompt(prompt: str | None, prompt_file: Path | None) -> str:
    """The prompt template of --prompt or --prompt-file (exactly one of them)."""
    if prompt_file is None:
        if prompt is None:
            fail("a table needs its prompt: give --prompt or --prompt-file")
        return prompt
    if prompt is not None:
        fail("--prompt and --prompt-file both give the prompt; give one")
    try:
        return prompt_file.read_text()
    except OSError as exc:
        fail(f"cannot read --prompt-file {prompt_file}: {exc.strerror}")
