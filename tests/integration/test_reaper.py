"""Engine processes left behind by a SIGKILLed Freight are stopped at the next start."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from freight.engines import reaper

OWNER = """
import subprocess, sys, time
from pathlib import Path
from freight.engines import reaper
before = reaper.children()
child = subprocess.Popen(["sleep", "600"])
reaper.record(Path(sys.argv[1]), "fake-engine", before)
print(child.pid, flush=True)
time.sleep(600)
"""


def start_owner(run_dir: Path) -> tuple[subprocess.Popen[str], int]:
    owner = subprocess.Popen(
        [sys.executable, "-c", OWNER, str(run_dir)], stdout=subprocess.PIPE, text=True
    )
    assert owner.stdout is not None
    child_pid = int(owner.stdout.readline())
    return owner, child_pid


def test_orphans_of_a_killed_owner_are_stopped(tmp_path: Path) -> None:
    owner, child_pid = start_owner(tmp_path)
    try:
        assert reaper.reap(tmp_path) == 0  # owner alive: nothing to do
        assert psutil.pid_exists(child_pid)
        os.kill(owner.pid, signal.SIGKILL)
        owner.wait()
        assert psutil.Process(child_pid).status() != psutil.STATUS_ZOMBIE  # outlived it
        assert reaper.reap(tmp_path) == 1
        deadline = time.monotonic() + 10
        while psutil.pid_exists(child_pid) and psutil.Process(child_pid).status() != (
            psutil.STATUS_ZOMBIE
        ):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert list(tmp_path.glob("engine-*.json")) == []
    finally:
        owner.kill()
        owner.wait()
        assert owner.stdout is not None
        owner.stdout.close()


def test_a_reused_pid_is_never_killed(tmp_path: Path) -> None:
    bystander = subprocess.Popen(["sleep", "600"])
    try:
        record = {
            "owner": {"pid": 999_999_999, "started": 0.0},
            "children": [{"pid": bystander.pid, "started": 12345.0}],
        }
        (tmp_path / "engine-1-x.json").write_text(json.dumps(record))
        assert reaper.reap(tmp_path) == 0
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()
