"""The `freight` command: serve, worker, run, and the client commands (files, batches, models).

Exit codes: 0 success; 1 the work failed (a batch failed validation, expired, was
cancelled, or a server call failed); 2 bad arguments or configuration; 3 the batch
finished but some requests have error lines.
"""

from __future__ import annotations

import sys

import typer

from freight.cli import client, estimate, keys, report, run, serve, webhooks

app = typer.Typer(
    help="Freight: batch inference on your own models, with the OpenAI and Anthropic APIs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(client.files_app, name="files")
app.add_typer(client.batches_app, name="batches")
app.command("models")(client.models)
app.add_typer(keys.keys_app, name="keys")
app.add_typer(webhooks.webhooks_app, name="webhooks")
app.command()(serve.serve)
app.command()(serve.worker)
app.command()(run.run)
app.command("report")(report.report_command)
app.command("estimate")(estimate.estimate_command)


def optional_value(argv: list[str], option: str, default: str) -> list[str]:
    """Let `option` stand alone: `--ray` at the end or before another option means
    `--ray=default` (typer options otherwise always take a value)."""
    out = []
    for i, arg in enumerate(argv):
        following = argv[i + 1] if i + 1 < len(argv) else None
        if arg == option and (following is None or following.startswith("-")):
            arg = f"{option}={default}"
        out.append(arg)
    return out


def main() -> None:
    try:
        app(args=optional_value(sys.argv[1:], "--ray", "local"))
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
