"""Collecting abandoned blobs: writes that a crash or a lost client left with no row.

Every blob Freight keeps has a row that names it: a file (or an upload's storage hold,
store/files.py) by `files.blob`, a Message Batch's body and results by the batch id in
the blob's name (store/blob_store.py). A write that never reached its row leaves:

- a stale hold: a RESERVED files row older than the grace period. Its bytes counted
  toward the project's `max_stored_bytes` until now; the row and its blob go together.
- a blob no row names (a crash between the write and the row, or during a delete), or
  a temporary file of a write that stopped (local disk only; S3 has no partial objects).

The grace period (`[quotas] orphan_grace_seconds`) keeps writes in progress safe: a
hold is made before its blob is written, and a blob's row follows its write at once,
so only a write that stopped for longer than the grace period is collected.

Each pass does bounded work: at most `num_holds` holds and `num_blobs` listed blobs,
continuing the listing where the previous pass stopped. Only names Freight gives its
blobs are considered, so a shared folder or bucket keeps everything else.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from dataclasses import dataclass

import sqlalchemy as sa

from freight.store import files, schema
from freight.store.blob_store import TMP_SUFFIX, BlobInfo, BlobStorage
from freight.store.db import Database

log = logging.getLogger(__name__)

NUM_HOLDS = 500
NUM_BLOBS = 1000
# Uploads (blob-...), result files (file-...), Message Batch bodies and results, and a
# local write in progress (.<name>.<random>.tmp). Ids are lowercase base32.
_ID = r"[a-z2-7]{32}"
_FILE_BLOB = re.compile(rf"^(?:blob-|file-){_ID}$")
_BATCH_BLOB = re.compile(rf"^(msgbatch_{_ID})\.(?:requests\.json|results\.jsonl)$")
_TMP_BLOB = re.compile(
    rf"^\.(?:blob-|file-|msgbatch_){_ID}.*\.[0-9a-f]{{32}}{re.escape(TMP_SUFFIX)}$"
)


@dataclass(frozen=True)
class SweepResult:
    """What one pass did, and where the next one continues (None: from the start)."""

    num_holds_collected: int
    num_blobs_examined: int
    num_blobs_collected: int
    next_after: str | None


def sweep(
    db: Database,
    blobs: BlobStorage,
    *,
    grace_seconds: float,
    after: str | None = None,
    num_holds: int = NUM_HOLDS,
    num_blobs: int = NUM_BLOBS,
    now: float | None = None,
) -> SweepResult:
    """One pass: collect stale holds, then look at `num_blobs` blobs after `after`."""
    cutoff = (time.time() if now is None else now) - grace_seconds
    num_holds_collected = _collect_holds(db, blobs, int(cutoff), num_holds)
    listed = blobs.list(after, num_blobs)
    stale = [b.name for b in listed if b.modified_at < cutoff and _is_freight_blob(b)]
    unused = sorted(set(stale) - _in_use(db, stale))
    for name in unused:
        blobs.delete(name)
    if unused:
        log.info("collected %d abandoned blobs (%s, ...)", len(unused), unused[0])
    next_after = listed[-1].name if len(listed) == num_blobs else None
    return SweepResult(num_holds_collected, len(listed), len(unused), next_after)


def _collect_holds(db: Database, blobs: BlobStorage, before: int, limit: int) -> int:
    with db.read() as conn:
        stale = files.stale_reservations(conn, before, limit)
    num_collected = 0
    for hold in stale:
        # The row first, and only if it is still a hold: an upload that completes at this
        # moment keeps its blob (and a crash right here leaves a blob the listing finds).
        with db.write() as conn:
            if not files.release(conn, hold.id):
                continue
        if not _in_use(db, [hold.blob]):
            blobs.delete(hold.blob)
        num_collected += 1
        log.info(
            "collected an abandoned upload of project %s (%d bytes held, blob %s)",
            hold.project,
            hold.bytes,
            hold.blob,
        )
    return num_collected


def _is_freight_blob(blob: BlobInfo) -> bool:
    return any(p.match(blob.name) for p in (_FILE_BLOB, _BATCH_BLOB, _TMP_BLOB))


def _in_use(db: Database, names: list[str]) -> set[str]:
    """The names that a file row, a hold or a batch row keeps."""
    if not names:
        return set()
    by_batch: dict[str, list[str]] = {}
    for name in names:
        if match := _BATCH_BLOB.match(name):
            by_batch.setdefault(match.group(1), []).append(name)
    with db.read() as conn:
        used = files.blobs_in_use(conn, names)
        existing = sa.select(schema.batches.c.id).where(schema.batches.c.id.in_(by_batch))
        for batch_id in conn.execute(existing).scalars():
            used.update(by_batch[batch_id])
    return used


class OrphanSweeper:
    """Runs `sweep` at startup and then every `every_seconds`, resuming its listing."""

    def __init__(
        self, db: Database, blobs: BlobStorage, *, grace_seconds: float, every_seconds: float
    ) -> None:
        self.db = db
        self.blobs = blobs
        self.grace_seconds = grace_seconds
        self.every_seconds = every_seconds
        self.after: str | None = None

    def run_once(self) -> SweepResult:
        result = sweep(self.db, self.blobs, grace_seconds=self.grace_seconds, after=self.after)
        self.after = result.next_after
        return result

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await asyncio.to_thread(self.run_once)
            except Exception:  # storage faults pass; the next pass tries again
                log.exception("the sweep for abandoned blobs failed; it runs again later")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.every_seconds)
