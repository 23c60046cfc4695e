"""`freight batches watch ID -o OUT`: follow a batch's result lines into a file as they land.

Lines come from GET /v1/batches/{id}/results (a Freight extension) and are appended to
OUT in the order they landed. After each append, OUT is flushed to disk and then a
sidecar, `OUT.cursor`, is replaced atomically (write, fsync, rename) with the batch id,
the cursor after those lines and OUT's size with them. A watch killed at any moment
and started again with the same -o first cuts OUT back to the size the sidecar records
(a partial last line, or lines whose cursor was not yet saved, go) and continues from
that cursor: every line ends up in OUT exactly once, and OUT is byte for byte what an
uninterrupted watch writes.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from freight.errors import InvalidRequest
from freight.service import batch_client
from freight.store.statuses import BatchStatus

PAGE_LINES = 1000  # GET /results' largest page
_MAX_SIDECAR_BYTES = 4096


@dataclass(frozen=True)
class Position:
    """Where a watch of `batch_id` into a file stands: the cursor after the lines the
    file holds, their number, and the file's size with them."""

    batch_id: str
    cursor: str
    num_lines: int
    num_bytes: int


def sidecar_path(output: Path) -> Path:
    return output.with_name(output.name + ".cursor")


def start(output: Path, batch_id: str) -> Position:
    """Where a watch of `batch_id` into `output` starts: from nothing, or where the last
    one stopped (the file cut back to what its sidecar records). InvalidRequest if
    `output` holds something else."""
    sidecar = sidecar_path(output)
    if not sidecar.exists():
        if output.exists() and output.stat().st_size > 0:
            raise InvalidRequest(
                f"{output} is not empty and has no {sidecar.name} beside it: it was not "
                "written by `freight batches watch`; give another -o (or remove it)",
                param="output",
            )
        output.write_bytes(b"")
        position = Position(batch_id, "", 0, 0)
        _write_sidecar(sidecar, position)  # from now on, a restart knows the file is its own
        return position
    position = read_sidecar(sidecar)
    if position.batch_id != batch_id:
        raise InvalidRequest(
            f"{output} holds the results of batch {position.batch_id}, not {batch_id}; "
            "give another -o",
            param="output",
        )
    size = output.stat().st_size if output.exists() else 0
    if size < position.num_bytes:
        raise InvalidRequest(
            f"{output} is shorter ({size} bytes) than {sidecar.name} records "
            f"({position.num_bytes}): it was changed since; give another -o",
            param="output",
        )
    with open(output, "r+b") as fh:
        fh.truncate(position.num_bytes)  # what the killed watch wrote past its cursor
    return position


def read_sidecar(sidecar: Path) -> Position:
    try:
        with open(sidecar, "rb") as fh:
            data: Any = json.loads(fh.read(_MAX_SIDECAR_BYTES + 1))
        return Position(
            batch_id=str(data["batch_id"]),
            cursor=str(data["cursor"]),
            num_lines=int(data["num_lines"]),
            num_bytes=int(data["num_bytes"]),
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InvalidRequest(
            f"cannot read {sidecar} ({type(exc).__name__}): remove it and its output, or "
            "give another -o",
            param="output",
        ) from None


def _write_sidecar(sidecar: Path, position: Position) -> None:
    tmp = sidecar.with_name(sidecar.name + ".tmp")
    with open(tmp, "w") as fh:
        json.dump(position.__dict__, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, sidecar)


def append(output: Path, position: Position, lines: bytes, cursor: str) -> Position:
    """Append `lines` (whole lines) to `output`, then record the new position."""
    with open(output, "ab") as fh:
        fh.write(lines)
        fh.flush()
        os.fsync(fh.fileno())
    moved = Position(
        position.batch_id,
        cursor,
        position.num_lines + lines.count(b"\n"),
        position.num_bytes + len(lines),
    )
    _write_sidecar(sidecar_path(output), moved)
    return moved


def follow(
    client: batch_client.BatchClient,
    batch_id: str,
    output: Path,
    *,
    poll_seconds: float = 1.0,
    console: Console | None = None,
) -> tuple[dict[str, Any], Position]:
    """Append the batch's lines to `output` until it has ended and every line is there;
    the ended batch and where the file stands."""
    batch = client.batch(batch_id)  # a 404 before anything is written
    position = start(output, batch_id)
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, disable=console is None) as progress:
        task = progress.add_task(batch["status"], total=None, completed=position.num_lines)
        last_poll = 0.0
        while True:
            page = client.results_page(batch_id, after=position.cursor or None, limit=PAGE_LINES)
            if page.body:
                position = append(output, position, page.body, page.next_cursor)
            if time.monotonic() - last_poll >= poll_seconds or page.is_complete:
                batch = client.batch(batch_id)
                last_poll = time.monotonic()
            progress.update(
                task,
                description=page.batch_status or batch["status"],
                total=batch["request_counts"]["total"] or None,
                completed=position.num_lines,
            )
            if page.is_complete:
                return batch, position
            if page.body.count(b"\n") < PAGE_LINES:
                time.sleep(poll_seconds)


def exit_code(batch: dict[str, Any]) -> int:
    """As `freight batches wait`: 0 completed, 3 completed with error lines, else 1."""
    if batch["status"] != BatchStatus.COMPLETED:
        return 1
    return 3 if batch["request_counts"]["failed"] else 0
