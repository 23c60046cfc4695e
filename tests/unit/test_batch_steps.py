"""The status ladder (worker/batch_steps.py `next_step`): which step each active batch
needs next, and the lifecycle each API's batches go through (worker/lifecycle.py
`lifecycle_for`).

Pure decisions on plain batch records: no store, no engine; nothing here runs a step.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import pytest

from freight.engines.registry import Registry
from freight.store.batches import BatchRecord
from freight.store.blob_store import BlobStorage
from freight.store.db import Database
from freight.store.statuses import BatchStatus
from freight.upstream import passthrough
from freight.worker import batch_steps, lifecycle
from tests.conftest import make_settings

NOW = 1_767_225_600  # 2026-01-01T00:00:00Z


def record(status: BatchStatus, api: str = "openai", **values: Any) -> BatchRecord:
    base: dict[str, Any] = dict.fromkeys(BatchRecord.__dataclass_fields__)
    base.update(
        id="batch_1",
        project="default",
        api=api,
        endpoint="/v1/chat/completions",
        completion_window="24h",
        status=status,
        created_at=NOW,
        created_ns=NOW * 10**9,
        expires_at=NOW + 86400,
        num_total=3,
        num_succeeded=0,
        num_errored=0,
        num_cancelled=0,
        num_expired=0,
        input_tokens=0,
        cached_tokens=0,
        output_tokens=0,
    )
    base.update(values)
    return BatchRecord(**base)


class LargeBatchesAway:
    """A hand-off that wants every batch of more than two open requests."""

    def wants(self, batch: BatchRecord) -> bool:
        return batch.num_open > 2

    async def run(self, batch_id: str) -> None:
        raise AssertionError("a ladder test runs no step")

    def stop(self) -> None:
        pass


class NoRequests:
    async def flush(self) -> None:
        raise AssertionError("a ladder test runs no step")

    def abort(self, request_ids: list[str]) -> None:
        raise AssertionError("a ladder test runs no step")


def make_steps(
    tmp_path: Path, handoff: batch_steps.HandOff | None = None
) -> batch_steps.BatchSteps:
    settings = make_settings(tmp_path)
    registry = Registry(settings)
    db = cast(Database, None)  # never reached: nothing here runs a step
    upstream = passthrough.Passthrough(settings, db, registry, "test", backoff=lambda n: 0.0)
    return batch_steps.BatchSteps(
        settings,
        db,
        cast(BlobStorage, None),
        registry,
        upstream,
        NoRequests(),
        handoff=handoff,
        backoff=lambda n: 0.0,
        on_done=lambda: None,
    )


def step_name(steps: batch_steps.BatchSteps, batch: BatchRecord, wall: float = NOW) -> str | None:
    step = steps.next_step(batch, wall)
    return None if step is None else step.name


@pytest.mark.parametrize("api", ["openai", "anthropic"])
def test_each_status_gets_its_step(tmp_path: Path, api: str) -> None:
    steps = make_steps(tmp_path)
    assert step_name(steps, record(BatchStatus.VALIDATING, api)) == "ingest"
    assert step_name(steps, record(BatchStatus.CANCELLING, api)) == "cancel"
    assert step_name(steps, record(BatchStatus.IN_PROGRESS, api, in_progress_at=NOW)) is None
    expired = record(BatchStatus.IN_PROGRESS, api, in_progress_at=NOW)
    assert step_name(steps, expired, wall=expired.expires_at) == "expire"
    done = record(BatchStatus.IN_PROGRESS, api, in_progress_at=NOW, num_succeeded=3)
    assert step_name(steps, done) == "finalize"
    assert step_name(steps, record(BatchStatus.FINALIZING, api, num_succeeded=3)) == "finalize"


def test_a_cancel_before_ingest_replaces_the_rows_and_one_after_ends_the_open_ones(
    tmp_path: Path,
) -> None:
    steps = make_steps(tmp_path)
    for api in ("openai", "anthropic"):
        first = steps.next_step(record(BatchStatus.CANCELLING, api), NOW)
        later = steps.next_step(record(BatchStatus.CANCELLING, api, in_progress_at=NOW), NOW)
        assert first is not None and later is not None
        assert first.run.func == steps._cancel_uningested  # type: ignore[attr-defined]
        assert later.run.func == steps._cancel  # type: ignore[attr-defined]
        assert first.give_up is not None and later.give_up is not None


def test_a_large_batch_is_handed_off_unless_it_expired_or_is_cancelled(tmp_path: Path) -> None:
    steps = make_steps(tmp_path, handoff=LargeBatchesAway())
    running = record(BatchStatus.IN_PROGRESS, in_progress_at=NOW)
    step = steps.next_step(running, NOW)
    assert step is not None and step.name == "handoff" and step.give_up is None
    assert step_name(steps, running, wall=running.expires_at) == "expire"
    assert step_name(steps, record(BatchStatus.CANCELLING, in_progress_at=NOW)) == "cancel"
    assert step_name(steps, record(BatchStatus.IN_PROGRESS, num_succeeded=1)) is None  # 2 open


def test_each_api_has_its_own_lifecycle() -> None:
    openai = lifecycle.lifecycle_for(record(BatchStatus.VALIDATING, "openai"))
    anthropic = lifecycle.lifecycle_for(record(BatchStatus.VALIDATING, "anthropic"))
    assert isinstance(openai, lifecycle.OpenAIBatches)
    assert isinstance(anthropic, lifecycle.MessageBatches)
    assert openai.results_blob("batch_1") is None  # its results are files rows
    assert anthropic.results_blob("msgbatch_1") is not None
    with pytest.raises(KeyError):
        lifecycle.lifecycle_for(record(BatchStatus.VALIDATING, "other"))


def test_a_batch_is_ingested_once_it_has_been_in_progress() -> None:
    for api in ("openai", "anthropic"):
        batch = record(BatchStatus.CANCELLING, api)
        api_lifecycle = lifecycle.lifecycle_for(batch)
        assert not api_lifecycle.is_ingested(batch)
        assert api_lifecycle.is_ingested(record(BatchStatus.CANCELLING, api, in_progress_at=NOW))
