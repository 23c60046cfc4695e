"""The streaming read of a Ray run: a batch's leased requests, in ranges of lines.

Each read task opens the store itself and reads only its own range, so Ray Data pulls
ranges as its actors have room (backpressure) and no process ever holds the whole
batch. The store must be reachable where the read tasks run: a PostgreSQL store is
reachable from every node; a SQLite store only from the driver's machine, so on SQLite
the read tasks are pinned to the driver's node (their rows then travel to the actors on
any node through Ray's object store).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
from ray.data import DataContext
from ray.data.block import BlockMetadata
from ray.data.datasource import Datasource, ReadTask

from freight.store import batch_requests
from freight.store.db import Database


class LeasedRequests(Datasource):
    """The requests of lines first..last of one batch that `owner` holds, as Arrow blocks."""

    def __init__(
        self,
        database_url: str,
        batch_id: str,
        owner: str,
        first_line: int,
        last_line: int,
        rows_per_read: int,
    ) -> None:
        self.database_url = database_url
        self.batch_id = batch_id
        self.owner = owner
        self.ranges = [
            (start, min(start + rows_per_read - 1, last_line))
            for start in range(first_line, last_line + 1, rows_per_read)
        ]

    def estimate_inmemory_data_size(self) -> int | None:
        return None

    def get_read_tasks(
        self,
        parallelism: int,
        per_task_row_limit: int | None = None,
        data_context: DataContext | None = None,
    ) -> list[ReadTask]:
        # One task per range, whatever `parallelism` says: a range is the unit of streaming.
        return [
            ReadTask(
                _reader(self.database_url, self.batch_id, self.owner, first, last),
                BlockMetadata(
                    num_rows=last - first + 1, size_bytes=None, exec_stats=None, input_files=None
                ),
            )
            for first, last in self.ranges
        ]


def _reader(
    database_url: str, batch_id: str, owner: str, first: int, last: int
) -> Any:  # Callable[[], Iterator[pa.Table]], a closure Ray ships to the read task
    def read() -> Iterator[pa.Table]:
        db = Database(database_url)
        try:
            with db.read() as conn:
                rows = batch_requests.leased_lines(conn, batch_id, owner, first, last)
        finally:
            db.dispose()
        yield pa.Table.from_pylist([dataclasses.asdict(r) for r in rows], schema=SCHEMA)

    return read


# The columns of batch_requests.ClaimedRequest.
SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("batch_id", pa.string()),
        ("line", pa.int64()),
        ("custom_id", pa.string()),
        ("url", pa.string()),
        ("body", pa.string()),
        ("attempts", pa.int64()),
        ("dedup_key", pa.string()),
        ("cache_key", pa.string()),
    ]
)
