"""The ingest reads a Message Batch's requests to `[limits] max_json_depth`, the depth its
create was held to, not to the most the setting could be (worker/ingest.py).

A body stored while the setting allowed more (here: params 81 levels deep, the setting
since lowered to its default 64) cannot be read, and the batch ends at its first
attempt with every request errored, saying why. SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from freight.config import LimitSettings
from tests.integration.test_batch_ends import attempts, deep_message_batch, echo_service
from tests.integration.test_message_batch_worker import results
from tests.integration.test_worker import TERMINAL, run_until

DEPTH = 80  # the metadata's arrays; with the params object around them, 81 levels


def test_message_batch_deeper_than_max_json_depth_ends_at_its_first_attempt(
    tmp_path: Path, database_url: str
) -> None:
    svc = echo_service(tmp_path, database_url, max_batch_step_attempts=3)
    assert svc.settings.limits.max_json_depth == LimitSettings().max_json_depth == 64
    batch_id = deep_message_batch(svc, DEPTH)
    record = asyncio.run(run_until(svc, batch_id, TERMINAL))
    assert record.status == "completed"
    assert (record.num_total, record.num_errored, record.num_succeeded) == (2, 2, 0)
    history = attempts(svc, batch_id, "ingest")
    assert (history.num_attempts, history.num_failed) == (1, 1)
    by_id = results(svc, batch_id)
    assert sorted(by_id) == ["a", "b"]
    for result in by_id.values():
        assert result["type"] == "errored"
        assert (
            "requests.0.params nests JSON 81 levels deep; the limit is 64 ([limits] "
            "max_json_depth)" in result["error"]["error"]["message"]
        )


def test_message_batch_within_max_json_depth_is_read_and_runs(
    tmp_path: Path, database_url: str
) -> None:
    svc = echo_service(tmp_path, database_url)
    svc.settings.limits.max_json_depth = 100
    batch_id = deep_message_batch(svc, DEPTH)
    record = asyncio.run(run_until(svc, batch_id, TERMINAL))
    assert record.status == "completed"
    assert attempts(svc, batch_id, "ingest").num_failed == 0
    by_id = results(svc, batch_id)
    assert by_id["b"]["type"] == "succeeded"  # read past request a's depth
    assert record.num_succeeded == 1
