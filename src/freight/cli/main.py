"""The `freight` command: serve, worker, run, and the client commands (files, batches, models).

Exit codes, the same for every command (docs/cli-errors.md):

0  success
1  the work failed: a batch failed validation, expired or was cancelled; the server
   could not be reached, or failed (5xx) or refused for now (429)
2  the request as given was wrong: bad arguments, configuration or input, an unknown
   id, a --home that holds no store, a request the server refused (other 4xx)
3  the batch finished, but some requests have error lines
130  interrupted (Ctrl-C)
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from freight import __version__
from freight.cli import batch_control, client, estimate, keys, report, run, serve, webhooks

app = typer.Typer(
    help="Freight: batch inference on your own models, with the OpenAI and Anthropic APIs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(client.files_app, name="files")
# `batches` has batch_control's commands too (watch, retry): importing it adds them.
app.add_typer(batch_control.batches_app, name="batches")
app.command("models")(client.models)
app.add_typer(keys.keys_app, name="keys")
app.add_typer(webhooks.webhooks_app, name="webhooks")
app.command()(serve.serve)
app.command()(serve.worker)
app.command()(run.run)
app.command("report")(report.report_command)
app.command("estimate")(estimate.estimate_command)


def _print_version(wanted: bool) -> None:
    if wanted:
        print(f"freight {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option(
            "--version", is_eager=True, callback=_print_version, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """The options of `freight` itself, before any command (the help is the app's)."""


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
