"""A batch step that raises steps.Unretryable gives up at once (worker/steps.py): its one
attempt is counted, and the step's give-up ends the batch without the remaining tries.

First the step runner alone, then the case it is for: a Message Batch whose stored
requests cannot be read (nested past what the ingest reads). SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from freight.service.runtime import Service
from freight.store import batches
from freight.worker import steps
from tests.integration.test_batch_ends import attempts, deep_message_batch, echo_service
from tests.integration.test_message_batch_worker import results
from tests.integration.test_worker import TERMINAL, run_until


async def run_one_attempt(
    svc: Service, batch_id: str, error: Exception, max_attempts: int = 3
) -> tuple[steps.Steps, list[int], list[str]]:
    """Run an ingest step that raises `error` once; (the runner, its runs, its give-ups)."""
    runs: list[int] = []
    give_ups: list[str] = []

    async def run() -> None:
        runs.append(1)
        raise error

    async def give_up(reason: str) -> None:
        give_ups.append(reason)

    done = asyncio.Event()
    runner = steps.Steps(svc.db, max_attempts, lambda attempt: 0.0, done.set)
    runner.start(batch_id, steps.Step("ingest", run, give_up))
    await asyncio.wait_for(done.wait(), timeout=30)
    return runner, runs, give_ups


def test_unretryable_step_gives_up_after_its_first_attempt(
    tmp_path: Path, database_url: str
) -> None:
    svc = echo_service(tmp_path, database_url)
    batch_id = deep_message_batch(svc, 1)
    error = steps.Unretryable("its requests cannot be read: requests.0 is broken")
    runner, runs, give_ups = asyncio.run(run_one_attempt(svc, batch_id, error))
    assert len(runs) == 1
    assert give_ups == [
        "ingest failed, and trying again cannot help: "
        "its requests cannot be read: requests.0 is broken"
    ]
    assert (runner.num_failed_attempts, runner.num_given_up) == (1, 1)
    history = attempts(svc, batch_id, "ingest")
    assert (history.num_attempts, history.num_failed) == (1, 1)
    assert history.last_failure == "its requests cannot be read: requests.0 is broken"


def test_any_other_failure_leaves_the_remaining_attempts(tmp_path: Path, database_url: str) -> None:
    svc = echo_service(tmp_path, database_url)
    batch_id = deep_message_batch(svc, 1)
    runner, runs, give_ups = asyncio.run(
        run_one_attempt(svc, batch_id, RuntimeError("its requests cannot be read"))
    )
    assert (len(runs), give_ups, runner.num_given_up) == (1, [], 0)
    assert attempts(svc, batch_id, "ingest").num_failed == 1


def test_message_batch_that_cannot_be_read_ends_at_its_first_ingest_attempt(
    tmp_path: Path, database_url: str
) -> None:
    # Nested past the deepest any setting allows: no ingest can read it, the first no more
    # than the third.
    svc = echo_service(tmp_path, database_url, max_batch_step_attempts=3)
    batch_id = deep_message_batch(svc, 3000)
    record = asyncio.run(run_until(svc, batch_id, TERMINAL, timeout=60))
    assert record.status == "completed"
    history = attempts(svc, batch_id, "ingest")
    assert (history.num_attempts, history.num_failed) == (1, 1)
    by_id = results(svc, batch_id)
    assert sorted(by_id) == ["a", "b"]
    for result in by_id.values():
        assert result["type"] == "errored"
        message = result["error"]["error"]["message"]
        assert "ingest failed, and trying again cannot help" in message
        assert "requests.0.params nests JSON 3001 levels deep" in message
    assert (record.num_total, record.num_errored) == (2, 2)
    with svc.db.write() as conn:
        batches.delete_ended(conn, batch_id, "default", api="anthropic")
