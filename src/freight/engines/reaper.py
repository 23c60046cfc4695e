"""Engine processes that outlive a killed Freight process are found and stopped.

vLLM runs its engine in child processes. If Freight is killed with SIGKILL (or
crashes), those children keep running and hold their memory: vLLM's engine process
does not watch its parent. So each started engine records its child processes in
FREIGHT_HOME/run/, and every Freight start stops the recorded processes of owners that
are gone. Processes are matched by pid and start time, so a reused pid is never touched.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from pathlib import Path

import psutil

log = logging.getLogger(__name__)


def _identity(proc: psutil.Process) -> dict[str, float | int]:
    return {"pid": proc.pid, "started": proc.create_time()}


def children() -> set[int]:
    return {p.pid for p in psutil.Process().children(recursive=True)}


def record(run_dir: Path, name: str, before: set[int]) -> Path:
    """Write down the child processes started since `before` was taken."""
    run_dir.mkdir(parents=True, exist_ok=True)
    me = psutil.Process()
    started = [p for p in me.children(recursive=True) if p.pid not in before]
    path = run_dir / f"engine-{me.pid}-{name}.json"
    path.write_text(
        json.dumps({"owner": _identity(me), "children": [_identity(p) for p in started]})
    )
    return path


def _same(identity: dict[str, float | int]) -> psutil.Process | None:
    try:
        proc = psutil.Process(int(identity["pid"]))
        return proc if abs(proc.create_time() - float(identity["started"])) < 1e-3 else None
    except psutil.Error:
        return None


def reap(run_dir: Path) -> int:
    """Stop the recorded engine processes of Freight processes that no longer exist."""
    if not run_dir.is_dir():
        return 0
    num_stopped = 0
    for path in run_dir.glob("engine-*.json"):
        try:
            entry = json.loads(path.read_text())
        except (OSError, ValueError):
            path.unlink(missing_ok=True)
            continue
        if _same(entry["owner"]) is not None:
            continue  # its owner is alive: not ours to touch
        for identity in entry["children"]:
            proc = _same(identity)
            if proc is not None:
                with contextlib.suppress(psutil.Error):
                    proc.kill()
                    num_stopped += 1
        path.unlink(missing_ok=True)
    if num_stopped:
        log.warning("stopped %d engine processes left behind by a killed Freight", num_stopped)
    return num_stopped


def forget(path: Path | None) -> None:
    if path is not None:
        with contextlib.suppress(OSError):
            os.unlink(path)
