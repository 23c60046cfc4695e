"""A memory cap for a server under test, so that hostile input cannot take the machine.

Two layers. A watchdog thread reads the process's resident set every 20 ms and SIGKILLs
it at the cap: that is the cap a test asserts, and it acts before the kernel has to.
Under it, a hard backstop the kernel enforces even if the watchdog is late, with some
headroom above the cap (a cgroup limit also counts the page cache of the files the
server writes), the best this machine allows, in this order:

1. a cgroup v2 memory limit (`memory.max`) on a child of this process's own cgroup, when
   the memory controller is enabled for it;
2. a cgroup v1 memory limit (`memory.limit_in_bytes`) on a child of this process's own
   memory cgroup (what a Firecracker or Docker sandbox with cgroup v1 offers root);
3. RLIMIT_AS, the process's address space (coarser: address space is more than resident
   memory, so it gets more headroom);
4. none: the watchdog alone.

Why not the cgroup alone: at a cgroup v1 limit the kernel first evicts the process's own
code pages and faults them back in, which can stall it (and the machine's two cores) for
minutes before the OOM killer acts. A new cgroup is made for each process, so its OOM
count starts at zero and the page cache of an earlier server is not charged to the next.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import sys
import threading
from pathlib import Path

# Run in the child before `exec`: join the cgroup, or set the rlimit, then become the server.
_LAUNCHER = """
import os, resource, sys
procs, limit = sys.argv[1], int(sys.argv[2])
if procs:
    with open(procs, "w") as fh:
        fh.write(str(os.getpid()))
if limit:
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
os.execv(sys.argv[3], sys.argv[3:])
"""


# FREIGHT_TEST_MEMORY_BACKSTOP=rlimit|none tries a fallback where a cgroup would be used.
BACKSTOP_CHOICE = os.environ.get("FREIGHT_TEST_MEMORY_BACKSTOP", "auto")
CGROUP_HEADROOM_BYTES = 512 * 1024**2
RLIMIT_AS_FACTOR = 3
_serial = itertools.count(1)


class MemoryCap:
    """Caps one process's resident memory at `limit_bytes` (see the module docstring)."""

    def __init__(self, limit_bytes: int, name: str) -> None:
        self.limit_bytes = limit_bytes
        self.group: Path | None = None
        self.version: int | None = None
        self.backstop = "none"
        self.killed_at_kib: int | None = None  # the RSS the watchdog killed the process at
        self._stop = threading.Event()
        hard = limit_bytes + CGROUP_HEADROOM_BYTES
        if BACKSTOP_CHOICE == "none":
            return
        for version, parent in _own_cgroups() if BACKSTOP_CHOICE == "auto" else []:
            group = _make_group(parent, f"{name}-{os.getpid()}-{next(_serial)}", version, hard)
            if group is not None:
                self.group, self.version = group, version
                self.backstop = f"cgroup v{version} at {hard // 2**20} MiB"
                return
        if _rlimit_works(limit_bytes * RLIMIT_AS_FACTOR):
            self.backstop = f"RLIMIT_AS at {limit_bytes * RLIMIT_AS_FACTOR // 2**20} MiB"

    def command(self, argv: list[str]) -> list[str]:
        """`argv` wrapped so that the process starts inside the backstop."""
        procs = str(self.group / "cgroup.procs") if self.group is not None else ""
        rlimit = self.limit_bytes * RLIMIT_AS_FACTOR if self.backstop.startswith("RLIMIT") else 0
        return [sys.executable, "-c", _LAUNCHER, procs, str(rlimit), *argv]

    def watch(self, pid: int) -> None:
        """Start the watchdog on `pid`: SIGKILL when its RSS reaches the cap."""
        threading.Thread(target=self._watchdog, args=(pid,), daemon=True).start()

    def _watchdog(self, pid: int) -> None:
        while not self._stop.wait(0.02):
            rss = read_status_kib(pid, "VmRSS")
            if rss is None:
                return
            if rss * 1024 >= self.limit_bytes:
                self.killed_at_kib = rss
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                return

    def num_oom_kills(self) -> int:
        """OOM kills inside the cgroup so far (0 without a cgroup)."""
        if self.group is None:
            return 0
        name = "memory.events" if self.version == 2 else "memory.oom_control"
        with contextlib.suppress(OSError):
            for line in (self.group / name).read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
        return 0

    def close(self) -> None:
        """Stop the watchdog and remove the cgroup (its process must have exited)."""
        self._stop.set()
        if self.group is not None:
            with contextlib.suppress(OSError):
                self.group.rmdir()

    def describe(self) -> str:
        return f"{self.limit_bytes // 2**20} MiB RSS by a watchdog; backstop: {self.backstop}"


def read_status_kib(pid: int, field: str) -> int | None:
    """A `kB` field of /proc/PID/status (VmRSS, VmHWM), or None if the process is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return None


def reset_peak(pid: int) -> None:
    """Reset the process's VmHWM to its current RSS (Linux: 5 > /proc/PID/clear_refs)."""
    with contextlib.suppress(OSError):
        Path(f"/proc/{pid}/clear_refs").write_text("5")


def _own_cgroups() -> list[tuple[int, Path]]:
    """(version, directory) of this process's memory cgroups, v2 first."""
    found: list[tuple[int, Path]] = []
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
        mounts = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return found
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":
            mount = _mount_point(mounts, "cgroup2", None)
            if mount is not None:
                found.insert(0, (2, mount[1] / _relative(path, mount[0])))
        elif "memory" in controllers.split(","):
            mount = _mount_point(mounts, "cgroup", "memory")
            if mount is not None:
                found.append((1, mount[1] / _relative(path, mount[0])))
    return found


def _mount_point(mounts: list[str], fstype: str, option: str | None) -> tuple[str, Path] | None:
    """(root inside the hierarchy, mount point) of the first mount of `fstype`."""
    for line in mounts:
        fields, _, tail = line.partition(" - ")
        parts, tail_parts = fields.split(), tail.split()
        if not tail_parts or tail_parts[0] != fstype:
            continue
        if option is not None and option not in tail_parts[-1].split(","):
            continue
        return parts[3], Path(parts[4])
    return None


def _relative(path: str, root: str) -> str:
    if root != "/" and path.startswith(root):
        path = path[len(root) :]
    return path.lstrip("/")


def _make_group(parent: Path, name: str, version: int, limit: int) -> Path | None:
    """A child cgroup of `parent` limited to `limit` bytes, or None if not allowed here."""
    limit_file = "memory.max" if version == 2 else "memory.limit_in_bytes"
    if version == 2:
        try:
            if "memory" not in (parent / "cgroup.subtree_control").read_text().split():
                return None  # children of this group get no memory controller
        except OSError:
            return None
    group = parent / name
    try:
        group.mkdir(exist_ok=True)
    except OSError:
        return None
    try:
        (group / limit_file).write_text(str(limit))
        if version == 2:
            with contextlib.suppress(OSError):
                (group / "memory.swap.max").write_text("0")
        if int((group / limit_file).read_text().strip()) > limit:
            raise OSError("the limit did not take")
    except (OSError, ValueError):
        with contextlib.suppress(OSError):
            group.rmdir()
        return None
    return group


def _rlimit_works(limit: int) -> bool:
    """Whether RLIMIT_AS can be lowered to `limit` here (a child tries, so ours stays)."""
    import subprocess

    code = f"import resource; resource.setrlimit(resource.RLIMIT_AS, ({limit}, {limit}))"
    return subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
