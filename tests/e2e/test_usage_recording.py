"""`freight worker` records its engines' usage in the store; `freight report` reads it back."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from freight import config
from freight.service.runtime import Service
from freight.store import batches, usage
from tests.conftest import TEST_ENGINE_ENV, chat_line, run_cli
from tests.integration.test_worker import submit

TOML = """
[[models]]
name = "echo"
engine = "echo"

[metrics]
usage_record_seconds = 0.5

[pricing]
input_price = 0.5
output_price = 1.5
hardware_per_hour = 1.8
"""


def test_worker_process_records_engine_time_and_report_reads_it(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "freight.toml").write_text(TOML)
    env = {**os.environ, **TEST_ENGINE_ENV, "FREIGHT_HOME": str(home)}
    os.environ["FREIGHT_HOME"] = str(home)
    try:
        svc = Service(config.load(), with_worker=False)
    finally:
        del os.environ["FREIGHT_HOME"]
    batch_id = submit(svc, [chat_line(f"r{i}", f"one two {i}", model="echo") for i in range(20)])
    worker = subprocess.Popen(
        [sys.executable, "-m", "freight.cli.main", "worker", "--home", str(home)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            with svc.db.read() as conn:
                done = batches.get(conn, batch_id).status == "completed"
                rows = usage.engine_usage_by_bucket(conn, since=0, bucket_seconds=86_400)
            if done and sum(r.num_requests for r in rows if r.kind == "batch") == 20:
                break
            assert worker.poll() is None, "the worker exited"
            assert time.monotonic() < deadline, "usage never reached the store"
            time.sleep(0.2)
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        assert worker.wait(timeout=60) == 0
    with svc.db.read() as conn:
        nodes = conn.exec_driver_sql("select distinct node from engine_usage").scalars().all()
    assert nodes == [f"{os.uname().nodename}-{worker.pid}"]
    svc.db.dispose()
    data = json.loads(run_cli("report", "--home", str(home), "--json", check=True).stdout)
    (row,) = data["rows"]
    assert (row["project"], row["model"], row["num_requests"]) == ("default", "echo", 20)
    assert row["tokens_per_second"] > 0 and 0 < row["utilization"] <= 1
    assert row["measured_usd_per_mtok"] is not None
    assert row["realtime_cost"] == round(
        (row["input_tokens"] * 0.5 + row["output_tokens"] * 1.5) / 1e6, 6
    )
