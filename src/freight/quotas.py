"""Per-project quotas ([quotas] in freight.toml): over one, the API answers 429.

Queued requests and stored bytes are read from the store when work or a file arrives,
so they hold across API nodes. Real-time requests and tokens per window are counted in
this process, in fixed windows of `[quotas] window_seconds` (60: "per minute"); with
several API nodes each node counts its own.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

from freight.config import QuotaSettings
from freight.errors import QuotaExceeded
from freight.protocol import batch_input
from freight.store import project_usage
from freight.store.blobs import BlobStorage
from freight.store.db import Database

COUNT_LINE_BYTES = 1024 * 1024  # counting only: longer lines are read in pieces


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

    def check_storage(self, db: Database, project: str, adding: int) -> None:
        """Raise QuotaExceeded if `adding` more bytes of files would exceed the quota."""
        if self.settings.for_project(project).max_stored_bytes is None:
            return
        with db.read() as conn:
            current = project_usage.stored_bytes(conn, project)
        self.check_stored(project, current, adding)

    def check_queue(
        self, db: Database, blobs: BlobStorage, project: str, adding: Callable[[], int]
    ) -> None:
        """Raise QuotaExceeded if `adding()` more requests would exceed the queue quota.

        `adding` is only called (it may read a whole input file) when a quota is set.
        """
        if self.settings.for_project(project).max_queued_requests is None:
            return
        with db.read() as conn:
            work = project_usage.open_work(conn, project)
        current = work.num_open
        for blob in work.unvalidated_blobs:  # batches created moments ago, not yet ingested
            current += count_blob_lines(blobs, blob)
        self.check_queued(project, current, adding())


def count_lines(fh: BinaryIO) -> int:
    """Non-blank lines in a batch input file: the requests it will queue."""
    return sum(1 for _ in batch_input.iter_lines(fh, COUNT_LINE_BYTES))


def count_blob_lines(blobs: BlobStorage, name: str) -> int:
    try:
        with blobs.open(name) as fh:
            return count_lines(fh)
    except FileNotFoundError:
        return 0
