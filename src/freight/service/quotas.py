"""Per-project quotas ([quotas] in freight.toml): over one, the API answers 429.

Real-time requests and tokens per window are counted in this process, in fixed windows
of `[quotas] window_seconds` (60: "per minute"); with several API nodes each node
counts its own.

Queued requests and stored bytes are counted in the store, so they hold across API
processes, and each is checked and recorded in one write transaction, so concurrent
creates cannot all pass one check and together go over:

- `max_queued_requests`: `admit_batch` takes the project's queue lock (store/db.py
  `lock`: an advisory lock on PostgreSQL; SQLite's write transaction is already the
  only writer), counts the open requests, and inserts the batch row in the same
  transaction. The row is the reservation: a create that fails before the commit
  leaves nothing counted. Counting an unvalidated input file reads it; a file's lines
  never change, so counts are cached and read before the lock is taken.
- `max_stored_bytes`: bytes are held before they are written. `reserve_storage`
  inserts a RESERVED files row (store/files.py) for the upload's declared size (its
  Content-Length, capped by the room left and the size limit), under the project's
  storage lock; while the body streams in, `StorageHold.cover` grows the hold (again
  checked under the lock) if more arrives than was held. The finished upload turns
  the row into the file's row (`complete`) with its real size; a failed one deletes
  it (`release`). A Message Batch create holds its body the same way, and the batch
  row replaces the hold in the transaction that creates the batch. After a crash the
  row stays, so the bytes keep counting until store/orphans.py collects row and blob.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO, TypeVar

import sqlalchemy as sa

from freight.config import QuotaSettings
from freight.errors import QuotaExceeded, StorageUnavailable
from freight.protocol import batch_input
from freight.store import files, project_usage
from freight.store.blob_store import BlobStorage
from freight.store.db import Database, lock

COUNT_LINE_BYTES = 1024 * 1024  # counting only: longer lines are read in pieces
LINE_COUNT_CACHE = 4096  # input files whose request counts are remembered
GROW_BYTES = 8 * 1024 * 1024  # the most a storage hold grows beyond what has arrived
T = TypeVar("T")


@dataclass
class _Window:
    start: float
    used: int = 0


class RateWindows:
    """Usage per (project, quota) in fixed windows. Pure: the caller passes the time."""

    def __init__(self, window_seconds: float) -> None:
        self.window_seconds = window_seconds
        self._windows: dict[tuple[str, str], _Window] = {}

    def _current(self, key: tuple[str, str], now: float) -> _Window:
        window = self._windows.get(key)
        if window is None or now >= window.start + self.window_seconds:
            window = self._windows[key] = _Window(now)
        return window

    def seconds_left(self, project: str, quota: str, now: float) -> float:
        return self._current((project, quota), now).start + self.window_seconds - now

    def used(self, project: str, quota: str, now: float) -> int:
        return self._current((project, quota), now).used

    def add(self, project: str, quota: str, amount: int, now: float) -> None:
        self._current((project, quota), now).used += amount


def _retry_after(seconds: float) -> int:
    return max(1, math.ceil(seconds))


class Quotas:
    """The checks the API runs before accepting work for a project."""

    def __init__(self, settings: QuotaSettings, clock: Callable[[], float] = time.monotonic):
        self.settings = settings
        self.clock = clock
        self.rates = RateWindows(settings.window_seconds)
        self._line_counts: dict[str, int] = {}
        self._line_counts_lock = threading.Lock()

    def _window_words(self) -> str:
        seconds = self.settings.window_seconds
        return "minute" if seconds == 60 else f"{seconds:g} s"

    def _check_rate(self, project: str, quota: str, limit: int | None, what: str) -> None:
        if limit is None:
            return
        now = self.clock()
        if self.rates.used(project, quota, now) >= limit:
            retry = _retry_after(self.rates.seconds_left(project, quota, now))
            raise QuotaExceeded(
                f"Project '{project}' is over its quota of {limit} real-time {what} per "
                f"{self._window_words()} ([quotas] {quota}); retry in {retry} s.",
                retry_after=retry,
                code=quota,
            )

    def admit_realtime(self, project: str) -> None:
        """Count one real-time request, or raise QuotaExceeded (requests or tokens spent)."""
        limits = self.settings.for_project(project)
        self._check_rate(project, "requests_per_minute", limits.requests_per_minute, "requests")
        self._check_rate(project, "tokens_per_minute", limits.tokens_per_minute, "tokens")
        self.rates.add(project, "requests_per_minute", 1, self.clock())

    def record_tokens(self, project: str, num_tokens: int) -> None:
        """Charge a finished real-time request's input + output tokens."""
        self.rates.add(project, "tokens_per_minute", num_tokens, self.clock())

    def _check_holding(
        self, project: str, quota: str, limit: int | None, current: int, adding: int, what: str
    ) -> None:
        if limit is None or current + adding <= limit:
            return
        retry = _retry_after(self.settings.window_seconds)
        raise QuotaExceeded(
            f"Project '{project}' is over its quota of {limit} {what} ([quotas] {quota}): it "
            f"holds {current} and this adds {adding}. Retry once some finish or are deleted.",
            retry_after=retry,
            code=quota,
        )

    def check_queued(self, project: str, current: int, adding: int) -> None:
        limit = self.settings.for_project(project).max_queued_requests
        self._check_holding(
            project, "max_queued_requests", limit, current, adding, "queued requests"
        )

    def check_stored(self, project: str, current: int, adding: int) -> None:
        limit = self.settings.for_project(project).max_stored_bytes
        self._check_holding(project, "max_stored_bytes", limit, current, adding, "stored bytes")

    # --- max_queued_requests -----------------------------------------------------------

    def admit_batch(
        self,
        db: Database,
        blobs: BlobStorage,
        project: str,
        num_new: Callable[[], int],
        insert: Callable[[sa.Connection], T],
    ) -> T:
        """Run `insert` (which creates the batch) if `num_new()` more requests fit the
        project's queue quota, in the transaction that counts; else raise QuotaExceeded.

        `num_new` is only called when a quota is set (it may read a whole input file).
        """
        if self.settings.for_project(project).max_queued_requests is None:
            with db.write() as conn:
                return insert(conn)
        adding = num_new()
        with db.read() as conn:  # count unvalidated files outside the write lock
            self._num_open(conn, blobs, project)
        with db.write() as conn:
            lock(conn, f"quota:max_queued_requests:{project}")
            self.check_queued(project, self._num_open(conn, blobs, project), adding)
            return insert(conn)

    def _num_open(self, conn: sa.Connection, blobs: BlobStorage, project: str) -> int:
        work = project_usage.open_work(conn, project)
        # Batches created moments ago and not yet ingested: their files' lines.
        return work.num_open + sum(self.line_count(blobs, b) for b in work.unvalidated_blobs)

    def line_count(self, blobs: BlobStorage, blob: str) -> int:
        """Requests in a stored batch input file (0 if it is gone), cached by blob name:
        a blob is written once and never changes."""
        count = self._line_counts.get(blob)
        if count is None:
            count = count_blob_lines(blobs, blob)
            with self._line_counts_lock:  # API requests run in threads
                if len(self._line_counts) >= LINE_COUNT_CACHE:
                    self._line_counts.pop(next(iter(self._line_counts)))  # the oldest
                self._line_counts[blob] = count
        return count

    # --- max_stored_bytes --------------------------------------------------------------

    def reserve_storage(
        self, db: Database, project: str, blob: str, *, declared: int | None, max_bytes: int
    ) -> StorageHold:
        """Hold storage for `blob` before writing it: its declared size, capped by the
        room left and `max_bytes`. QuotaExceeded if the project has no room left."""
        limit = self.settings.for_project(project).max_stored_bytes
        wanted = min(declared or 0, max_bytes)
        with db.write() as conn:
            if limit is not None:
                lock(conn, f"quota:max_stored_bytes:{project}")
                current = project_usage.stored_bytes(conn, project)
                if current + min(wanted, 1) > limit:  # no room for a single byte
                    self.check_stored(project, current, wanted)
                wanted = min(wanted, limit - current)
            file_id = files.reserve(conn, project=project, blob=blob, num_bytes=wanted)
        return StorageHold(self, db, project, file_id, blob, wanted, limit)


@dataclass
class StorageHold:
    """Storage held for one body while it arrives (a RESERVED files row)."""

    quotas: Quotas
    db: Database
    project: str
    file_id: str
    blob: str
    num_bytes: int  # held now
    limit: int | None  # the project's max_stored_bytes when the hold was made

    def cover(self, num_bytes: int) -> None:
        """Hold at least `num_bytes`, or raise QuotaExceeded (they do not fit).

        Grows by up to GROW_BYTES beyond what has arrived (so a body without a declared
        size costs a transaction per GROW_BYTES, not per chunk), and exactly to
        `num_bytes` when that is all the room left.
        """
        if num_bytes <= self.num_bytes or self.limit is None:
            return
        with self.db.write() as conn:
            lock(conn, f"quota:max_stored_bytes:{self.project}")
            others = project_usage.stored_bytes(conn, self.project) - self.num_bytes
            self.quotas.check_stored(self.project, others, num_bytes)
            wanted = max(num_bytes, min(2 * self.num_bytes, num_bytes + GROW_BYTES))
            wanted = min(wanted, self.limit - others)
            if not files.resize_reservation(conn, self.file_id, wanted):
                raise _hold_lost(self)
        self.num_bytes = wanted

    def complete(self, conn: sa.Connection, record: files.FileRecord) -> None:
        """Make the hold `record`'s row (with its real size), inside `conn`'s transaction."""
        if not files.complete_reservation(conn, record):
            raise _hold_lost(self)

    def release(self, conn: sa.Connection | None = None) -> None:
        """Give the held bytes back (inside `conn`'s transaction if given)."""
        if conn is not None:
            files.release(conn, self.file_id)
            return
        with self.db.write() as own:
            files.release(own, self.file_id)


def _hold_lost(hold: StorageHold) -> StorageUnavailable:
    return StorageUnavailable(
        f"The upload's storage hold {hold.file_id} was collected as abandoned (it took "
        "longer than [quotas] orphan_grace_seconds); send it again."
    )


def count_lines(fh: BinaryIO) -> int:
    """Non-blank lines in a batch input file: the requests it will queue."""
    return sum(1 for _ in batch_input.iter_lines(fh, COUNT_LINE_BYTES))


def count_blob_lines(blobs: BlobStorage, name: str) -> int:
    try:
        with blobs.open(name) as fh:
            return count_lines(fh)
    except FileNotFoundError:
        return 0
