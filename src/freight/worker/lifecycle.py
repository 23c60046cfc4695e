"""Each API's batch-level steps: how a batch's requests are queued, how its results are
written, and how it ends when a step cannot finish.

The dispatcher (worker/dispatcher.py) admits, runs and records requests; whatever is
done to a batch as a whole goes through the lifecycle of its API, `lifecycle_for(batch)`:

- OpenAI batches (`OpenAIBatches`) read their uploaded input file, end with an output and
  an error file, fail outright when their ingest gives up, and keep no requests when
  cancelled before their ingest (as OpenAI's).
- Anthropic Message Batches (`MessageBatches`) read the create body stored beside them
  and end with one results blob. Their create accepted every custom_id, so each one
  gets a result whatever happens: one `errored` request per custom_id when the ingest
  gives up, one `cancelled` when the batch is cancelled first. The create body is
  deleted once the batch's requests are queued, or once it ends without them.

Every method does blocking store and blob work: the worker runs it in a thread
(worker/batch_steps.py).
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Callable
from dataclasses import dataclass

from freight.config import LimitSettings
from freight.protocol import batch_input, cache_keys
from freight.store import batches, blob_store, faults
from freight.store.blob_store import BlobStorage
from freight.store.db import Database
from freight.store.statuses import BatchStatus
from freight.worker import finalize, ingest, scheduler, unqueued

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IngestRules:
    """What an ingest checks each request against, and where each request runs."""

    limits: LimitSettings
    policy: scheduler.OrderPolicy
    has_model: Callable[[str], bool]
    # why an existing model cannot serve a URL (an embeddings model asked to chat), if so
    check_model: Callable[[str, str], str | None]
    # the model's upstream Batch API, if it has one (upstream/passthrough.py)
    route: Callable[[str | None], str | None] = ingest.no_upstream
    # the model's own name for an alias (engines/registry.py)
    canonical_model: Callable[[str], str] = batch_input.same_name
    # each batch's result cache keys, None when the cache is off for it (protocol/cache_keys.py)
    keys_for: Callable[[batches.BatchRecord], cache_keys.KeyOf | None] = lambda batch: None


class Lifecycle(abc.ABC):
    """One API's batch-level steps. The end of every batch is shared: `finalize`, and
    `give_up_end` when finalising (or a cancel, or an expiry) failed every attempt."""

    api: str

    def is_ingested(self, batch: batches.BatchRecord) -> bool:
        """Whether the batch's requests were queued: the ingest's last transaction (or its
        give-up's) moves the batch `in_progress`, so a batch that never was has none that
        ran, and a cancel before ingest replaces whatever rows it has."""
        return batch.in_progress_at is not None

    @abc.abstractmethod
    def ingest(
        self, db: Database, blobs: BlobStorage, batch: batches.BatchRecord, rules: IngestRules
    ) -> batches.BatchRecord:
        """Queue a `validating` batch's requests and move it `in_progress` (or `failed`)."""

    @abc.abstractmethod
    def give_up_ingest(
        self, db: Database, blobs: BlobStorage, batch: batches.BatchRecord, message: str
    ) -> batches.BatchRecord:
        """End a batch whose ingest failed every attempt; `message` says why."""

    @abc.abstractmethod
    def cancel_uningested(
        self, db: Database, blobs: BlobStorage, batch: batches.BatchRecord
    ) -> batches.BatchRecord:
        """Give a batch cancelled before its ingest the rows it ends with; then finalise."""

    @abc.abstractmethod
    def write_results(
        self,
        db: Database,
        blobs: BlobStorage,
        batch: batches.BatchRecord,
        end_status: BatchStatus,
        salvage: str | None,
    ) -> batches.BatchRecord:
        """Write the results in the API's shape and move the batch to `end_status`."""

    def results_blob(self, batch_id: str) -> str | None:
        """The blob the API serves an ended batch's results from, if it has one."""
        return None

    @abc.abstractmethod
    def delete_create_body(self, blobs: BlobStorage, batch_id: str) -> None:
        """Delete what the create stored beside the batch, once the batch has ended."""

    def finalize(
        self,
        db: Database,
        blobs: BlobStorage,
        batch_id: str,
        end_status: BatchStatus,
        *,
        salvage: str | None = None,
    ) -> batches.BatchRecord:
        """Write the results and move the batch to `end_status` (worker/finalize.py).

        `salvage`: why earlier attempts failed, when this is the last one; then a result
        that cannot be written becomes an error line.
        """
        batch = finalize.start(db, batch_id, end_status)
        if batch.is_terminal:
            return batch
        return self.write_results(db, blobs, batch, end_status, salvage)

    def give_up_end(
        self, db: Database, blobs: BlobStorage, batch_id: str, end_status: BatchStatus, reason: str
    ) -> batches.BatchRecord:
        """End a batch whose finalising (or cancel, or expiry) failed every attempt.

        Open requests end as `end_status` says; then every result that can be written
        is, and if even that fails the batch ends without results (worker/finalize.py).
        """
        finalize.close_open(db, batch_id, end_status)
        try:
            return self.finalize(db, blobs, batch_id, end_status, salvage=reason)
        except Exception as exc:
            if faults.is_storage_fault(exc):
                raise
            log.exception("batch %s: salvaging its results failed", batch_id)
            why = (
                f"{reason}; writing what could be written failed too ({type(exc).__name__}: {exc})"
            )
            return finalize.end_without_results(
                db, blobs, batch_id, end_status, why, empty_blob=self.results_blob(batch_id)
            )


class OpenAIBatches(Lifecycle):
    """OpenAI batches: an input file in; an output and an error file out."""

    api = "openai"

    def ingest(
        self, db: Database, blobs: BlobStorage, batch: batches.BatchRecord, rules: IngestRules
    ) -> batches.BatchRecord:
        return ingest.ingest_openai_batch(
            db,
            blobs,
            batch,
            rules.limits,
            rules.policy,
            has_model=rules.has_model,
            check_model=rules.check_model,
            route=rules.route,
            canonical_model=rules.canonical_model,
            key_of=rules.keys_for(batch),
        )

    def give_up_ingest(
        self, db: Database, blobs: BlobStorage, batch: batches.BatchRecord, message: str
    ) -> batches.BatchRecord:
        return unqueued.fail_uningested(db, batch, message)

    def cancel_uningested(
        self, db: Database, blobs: BlobStorage, batch: batches.BatchRecord
    ) -> batches.BatchRecord:
        return unqueued.keep_no_requests(db, batch)

    def write_results(
        self,
        db: Database,
        blobs: BlobStorage,
        batch: batches.BatchRecord,
        end_status: BatchStatus,
        salvage: str | None,
    ) -> batches.BatchRecord:
        return finalize.write_files(db, blobs, batch, end_status, salvage)

    def delete_create_body(self, blobs: BlobStorage, batch_id: str) -> None:
        pass  # the input file is the user's, deleted through the Files API


class MessageBatches(Lifecycle):
    """Anthropic Message Batches: the create body in; one results blob out."""

    api = "anthropic"

    def ingest(
        self, db: Database, blobs: BlobStorage, batch: batches.BatchRecord, rules: IngestRules
    ) -> batches.BatchRecord:
        return ingest.ingest_message_batch(
            db,
            blobs,
            batch,
            rules.limits,
            rules.policy,
            has_model=rules.has_model,
            check_model=rules.check_model,
            route=rules.route,
            canonical_model=rules.canonical_model,
            key_of=rules.keys_for(batch),
        )

    def give_up_ingest(
        self, db: Database, blobs: BlobStorage, batch: batches.BatchRecord, message: str
    ) -> batches.BatchRecord:
        return unqueued.error_every_request(db, blobs, batch, message)

    def cancel_uningested(
        self, db: Database, blobs: BlobStorage, batch: batches.BatchRecord
    ) -> batches.BatchRecord:
        return unqueued.cancel_every_request(db, blobs, batch)

    def write_results(
        self,
        db: Database,
        blobs: BlobStorage,
        batch: batches.BatchRecord,
        end_status: BatchStatus,
        salvage: str | None,
    ) -> batches.BatchRecord:
        return finalize.write_message_results(db, blobs, batch, end_status, salvage)

    def results_blob(self, batch_id: str) -> str | None:
        return blob_store.message_batch_results(batch_id)

    def delete_create_body(self, blobs: BlobStorage, batch_id: str) -> None:
        blobs.delete(blob_store.message_batch_requests(batch_id))


OPENAI_BATCHES = OpenAIBatches()
MESSAGE_BATCHES = MessageBatches()
LIFECYCLES: dict[str, Lifecycle] = {x.api: x for x in (OPENAI_BATCHES, MESSAGE_BATCHES)}


def lifecycle_for(batch: batches.BatchRecord) -> Lifecycle:
    """The lifecycle of the batch's API (`batch.api`)."""
    return LIFECYCLES[batch.api]
