"""Storage faults that pass: a full disk, a locked or unreachable database.

None of these is the request's or the batch's fault, and each usually passes (space is
freed, the lock holder commits, the database comes back). So the worker never turns one
into an error line or a failed batch: it keeps what it holds (results stay in memory,
leases stay renewed or expire for another worker), says clearly in the log what is
wrong, and tries again after a growing pause; the API answers 503 with the same words.
Files are always written to a temporary name and renamed into place (store/blob_store.py),
so a failed write leaves no half a file.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass, field

import sqlalchemy as sa

from freight.errors import StorageUnavailable

STORAGE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    sa.exc.OperationalError,
    StorageUnavailable,
)
MAX_PAUSE_SECONDS = 30.0


def is_storage_fault(exc: BaseException) -> bool:
    return isinstance(exc, STORAGE_ERRORS)


def describe(exc: BaseException) -> str:
    """What went wrong, in words an operator acts on."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"the disk is full ({exc.strerror or 'no space left on device'})"
    text = str(exc.orig if isinstance(exc, sa.exc.DBAPIError) else exc).strip()
    lowered = text.lower()
    if "database is locked" in lowered or "database table is locked" in lowered:
        return "the database is locked by another process"
    if "disk is full" in lowered or "disk i/o error" in lowered:
        return f"the database cannot write ({text})"
    if isinstance(exc, sa.exc.OperationalError):
        return f"the database is unavailable ({text.splitlines()[0] if text else exc!r})"
    if isinstance(exc, StorageUnavailable):
        return exc.message
    return f"storage failed ({type(exc).__name__}: {text})"


@dataclass
class Backoff:
    """A growing pause between tries of one failing thing (doubling, capped)."""

    first_seconds: float = 0.5
    max_seconds: float = MAX_PAUSE_SECONDS
    num_failures: int = 0
    retry_at: float = field(default=0.0)

    def failed(self, now: float) -> float:
        """Record a failure at `now`; returns the pause before the next try."""
        pause: float = min(self.max_seconds, self.first_seconds * 2.0**self.num_failures)
        self.num_failures += 1
        self.retry_at = now + pause
        return pause

    def can_try(self, now: float) -> bool:
        return now >= self.retry_at
