"""The memory cap the hostile suite relies on: a process that grows past it is stopped there.

If the cap did not hold, the suite's deep-nesting cases could take the machine down
instead of failing; so the cap is tested on its own, with a process that only allocates.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from tests.hostile import memory_cap

CAP_BYTES = 256 * 1024**2
GROW = "chunks = []\nwhile True:\n    chunks.append(b'x' * (8 * 1024 * 1024))\n"  # touched pages


def test_a_process_that_grows_past_the_cap_is_killed_at_it() -> None:
    cap = memory_cap.MemoryCap(CAP_BYTES, "freight-hostile-selftest")
    proc = subprocess.Popen(cap.command([sys.executable, "-c", GROW]))
    try:
        cap.watch(proc.pid)
        if cap.group is not None:  # the launcher joins the group before it execs
            assert _joins(proc, cap.group.name)
        assert proc.wait(timeout=120) == -9
    finally:
        proc.kill()
        proc.wait()
        cap.close()
    assert cap.killed_at_kib is not None or cap.num_oom_kills() > 0, cap.describe()
    if cap.killed_at_kib is not None:
        assert CAP_BYTES <= cap.killed_at_kib * 1024 < CAP_BYTES + memory_cap.CGROUP_HEADROOM_BYTES
    if cap.group is not None:
        assert not cap.group.exists()  # removed once its process is gone


def _joins(proc: subprocess.Popen[bytes], group: str) -> bool:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if group in Path(f"/proc/{proc.pid}/cgroup").read_text():
                return True
        except OSError:
            return False
        time.sleep(0.01)
    return False


def test_the_peak_resident_set_is_read_and_reset_per_process() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", "import time\nx = b'x' * (64 * 1024 * 1024)\ndel x\ntime.sleep(60)"]
    )
    try:
        peak = None
        for _ in range(600):  # until the 64 MiB were touched and freed (bounded)
            peak = memory_cap.read_status_kib(proc.pid, "VmHWM")
            rss = memory_cap.read_status_kib(proc.pid, "VmRSS")
            if peak is not None and rss is not None and peak - rss > 48 * 1024:
                break
            time.sleep(0.05)
        assert peak is not None and peak >= 64 * 1024
        memory_cap.reset_peak(proc.pid)
        after = memory_cap.read_status_kib(proc.pid, "VmHWM")
        assert after is not None and after < peak - 48 * 1024
    finally:
        proc.kill()
        proc.wait()
