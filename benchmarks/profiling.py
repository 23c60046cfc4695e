"""Where a process's time goes: a py-spy profile recorded around some work, summarised.

`record(pid, path)` runs `py-spy record` on the process while the block runs (py-spy is
in the dev extra) and leaves py-spy's raw collapsed stacks in `path`; `summarise(path)`
turns them into shares: by the package of the innermost frame (where the CPU was), and
by the innermost Freight function on the stack (which of Freight's calls it was for).
Only samples where a thread was running are recorded (py-spy's default, no --idle).
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

RATE_HZ = 100


def py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(found).exists():
        raise RuntimeError("py-spy is not installed: pip install -e '.[dev]'")
    return found


@contextlib.contextmanager
def record(pid: int, path: Path, rate_hz: int = RATE_HZ) -> Iterator[None]:
    """Profile process `pid` (its Python threads) while the block runs."""
    argv = [py_spy(), "record", "--pid", str(pid), "--rate", str(rate_hz)]
    argv += ["--format", "raw", "--output", str(path), "--nonblocking"]
    spy = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)  # py-spy writes the profile when interrupted
        _, err = spy.communicate(timeout=120)
        if not path.exists():
            raise RuntimeError(f"py-spy wrote no profile: {err.decode()[-2000:]}")


def _frames(stack: str) -> list[tuple[str, str]]:
    """[(function, file)] outermost first, from py-spy's 'func (file:line);...'."""
    frames = []
    for frame in stack.split(";"):
        function, _, where = frame.rpartition(" (")
        frames.append((function, where.rsplit(":", 1)[0]))
    return frames


def package(file: str) -> str:
    """The top package of a frame's file as py-spy names it ('freight/worker/x.py')."""
    head = file.split("/", 1)[0]
    return head.removesuffix(".py") or "?"


def summarise(path: Path, top: int = 15) -> dict[str, Any]:
    """Shares of the samples: by the innermost frame's package, and by the innermost
    Freight function on the stack."""
    by_package: Counter[str] = Counter()
    by_freight: Counter[str] = Counter()
    total = 0
    for raw in path.read_text().splitlines():
        stack, _, count_text = raw.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = _frames(stack)
        by_package[package(frames[-1][1])] += count
        owner = next(
            (f"{fn} ({file})" for fn, file in reversed(frames) if file.startswith("freight/")),
            "(no Freight frame)",
        )
        by_freight[owner] += count

    def shares(counter: Counter[str]) -> list[dict[str, Any]]:
        return [
            {"name": name, "samples": n, "share": round(n / total, 4)}
            for name, n in counter.most_common(top)
        ]

    return {
        "file": path.name,
        "rate_hz": RATE_HZ,
        "samples": total,
        "by_package": shares(by_package),
        "by_freight_function": shares(by_freight),
    }
