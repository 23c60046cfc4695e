"""`make demo`: start Freight, run a bulk classification batch through the official SDK.

Starts `freight serve` on a free loopback port, uploads examples/classify-reviews.jsonl
(60 product reviews), creates a batch, shows progress, prints a few results and a
summary (requests, tokens, wall time, tokens/s), and stops the server. Then the same job
from a table: `freight run` labels the first 20 rows of examples/reviews.csv with
`--choices` and writes the table back with an `answer` column.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pyarrow.csv as pa_csv
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

HERE = Path(__file__).resolve().parent
INPUT = HERE / "classify-reviews.jsonl"
TABLE = HERE / "reviews.csv"
TABLE_ROWS = 20
console = Console()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_ready(base: str, server: subprocess.Popen[bytes], model: str) -> None:
    with console.status(
        "Starting Freight and the vLLM engine (the first start converts the "
        "model and compiles; later starts take ~30 s)..."
    ):
        while True:
            if server.poll() is not None:
                sys.exit(f"freight serve exited with {server.returncode}; see .freight/demo.log")
            try:
                health = httpx.get(f"{base}/health", timeout=2).json()
                if model in health["engines"]:
                    return
                if model in health.get("engine_failures", {}):
                    sys.exit(f"engine failed: {health['engine_failures'][model]}")
            except httpx.TransportError:
                pass
            time.sleep(0.5)


def main() -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    home = Path(os.environ.get("FREIGHT_HOME", ".freight"))
    home.mkdir(parents=True, exist_ok=True)
    with open(home / "demo.log", "w") as log:
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "freight.cli.main",
                "serve",
                "--port",
                str(port),
                "--home",
                str(home),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            lines = [json.loads(x) for x in INPUT.read_text().splitlines()]
            model = lines[0]["body"]["model"]
            wait_until_ready(base, server, model)
            run_batch(openai.OpenAI(base_url=f"{base}/v1", api_key="demo"), lines)
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=120)
    run_table(home)


def run_batch(client: openai.OpenAI, lines: list[dict]) -> None:
    started = time.monotonic()
    uploaded = client.files.create(file=INPUT, purpose="batch")
    batch = client.batches.create(
        input_file_id=uploaded.id,
        endpoint="/v1/chat/completions",
        completion_window="24h",
        metadata={"job": "demo"},
    )
    console.print(f"Uploaded {uploaded.filename} as {uploaded.id}; created {batch.id}")
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("validating", total=len(lines))
        while batch.status not in ("completed", "failed", "expired", "cancelled"):
            time.sleep(0.2)
            batch = client.batches.retrieve(batch.id)
            counts = batch.request_counts
            progress.update(
                task,
                description=batch.status,
                completed=counts.completed + counts.failed if counts else 0,
            )
    wall = time.monotonic() - started
    if batch.status != "completed" or not batch.output_file_id:
        sys.exit(f"batch ended {batch.status}: {batch.errors}")
    results = [json.loads(x) for x in client.files.content(batch.output_file_id).text.splitlines()]
    reviews = {x["custom_id"]: x["body"]["messages"][-1]["content"] for x in lines}
    table = Table("custom_id", "review", "label")
    for result in results[:8]:
        label = result["response"]["body"]["choices"][0]["message"]["content"]
        review = reviews[result["custom_id"]].removeprefix("Review: ").split("\n")[0]
        table.add_row(result["custom_id"], review[:70], label.strip())
    console.print(table)
    usage = batch.usage
    tokens_in = usage.input_tokens if usage else 0
    tokens_out = usage.output_tokens if usage else 0
    console.print(
        f"[bold]{batch.request_counts.total} requests[/bold] "
        f"({batch.request_counts.completed} ok, {batch.request_counts.failed} failed) · "
        f"{tokens_in} input + {tokens_out} output tokens · {wall:.1f} s wall · "
        f"{(tokens_in + tokens_out) / wall:,.0f} tokens/s ({tokens_out / wall:,.0f} generated/s)"
    )


def run_table(home: Path) -> None:
    """A table in, the table back with answers: `freight run` offline, no server."""
    rows = TABLE.read_text().splitlines(keepends=True)[: TABLE_ROWS + 1]  # header and rows
    table = home / "demo-reviews.csv"
    table.write_text("".join(rows))
    labeled = home / "demo-labeled.csv"
    command = [
        "freight run examples/reviews.csv (first 20 rows)",
        "--prompt 'Is this review positive, negative or neutral? {{ review }}'",
        "--choices positive,negative,neutral -o labeled.csv",
    ]
    console.print(f"\n[bold]A table:[/bold] {' '.join(command)}")
    with console.status("Running the table (the engine starts again, ~30 s)..."):
        done = subprocess.run(
            [
                *(sys.executable, "-m", "freight.cli.main", "run", str(table)),
                *("--prompt", "Is this review positive, negative or neutral?\n\n{{ review }}"),
                *("--choices", "positive,negative,neutral", "--max-tokens", "20"),
                *("--temperature", "0", "-o", str(labeled), "--home", str(home)),
            ],
            capture_output=True,
            text=True,
        )
    if done.returncode not in (0, 3):
        sys.exit(f"freight run exited with {done.returncode}:\n{done.stderr}")
    result = Table("id", "product", "review", "answer", "error")
    for row in pa_csv.read_csv(labeled).to_pylist()[:8]:
        review = row["review"]
        result.add_row(str(row["id"]), row["product"], review[:50], row["answer"], row["error"])
    console.print(result)
    console.print(done.stderr.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
