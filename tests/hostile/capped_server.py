"""`freight serve` as a real process under a memory cap, for the hostile-input suite.

The server runs with the zero-cost echo engine only (the built-in model names are
echo engines too, so no input can start vLLM), the fast worker settings the tests use,
and a memory cap (memory_cap.py). After each case a test asks `problems()`: did the
process die, was it OOM-killed by the cap, did its peak memory reach the cap. A server
that died, or was left with a batch that never ends, is replaced by a fresh one (new
home) before the next case, so one failure does not fail every case after it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from freight.config import DEFAULT_CHAT_MODEL, DEFAULT_EMBEDDING_MODEL
from tests.conftest import free_port
from tests.hostile import memory_cap

MEMORY_CAP_BYTES = 1024**3
BATCH_DEADLINE_SECONDS = 20.0  # a one-request batch ends in well under a second here
REQUEST_TIMEOUT_SECONDS = 60.0
TERMINAL = {"completed", "failed", "expired", "cancelled"}
_ACCESS_LINE = re.compile(r'^INFO: +[0-9.]+:[0-9]+ - "')

CONFIG = f"""
default_model = "echo"

[[models]]
name = "echo"
engine = "echo"

[[models]]
name = "{DEFAULT_CHAT_MODEL}"
engine = "echo"

[[models]]
name = "{DEFAULT_EMBEDDING_MODEL}"
engine = "echo"

[worker]
poll_seconds = 0.05
flush_seconds = 0.02
lease_seconds = 10

[webhooks]
timeout_seconds = 2

# Shorter than the defaults (10 s, 30 s) so that test_headers' waits stay short; the
# behaviour under test is the same.
[server]
header_timeout_seconds = 2
body_timeout_seconds = 2
"""
VALID_LINE = {
    "custom_id": "seed",
    "method": "POST",
    "url": "/v1/chat/completions",
    "body": {"model": "echo", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4},
}
VALID_MESSAGE_REQUEST = {
    "custom_id": "seed",
    "params": {"model": "echo", "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]},
}


class CappedServer:
    """One `freight serve` process at a time, restarted on demand."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.cap: memory_cap.MemoryCap | None = None
        self.config = workdir / "freight.toml"
        self.config.write_text(CONFIG)
        self.proc: subprocess.Popen[bytes] | None = None
        self.client = httpx.Client(timeout=REQUEST_TIMEOUT_SECONDS)
        self.base_url = ""
        self.ids: dict[str, str] = {}  # objects that path parameters name (seed())
        self.needs_restart = True
        self.num_starts = 0
        self.home: Path | None = None
        self._log: Path | None = None

    # --- life -------------------------------------------------------------------------------

    def start(self) -> None:
        self.num_starts += 1
        home = self.home = self.workdir / f"home-{self.num_starts}"
        home.mkdir()
        self.cap = memory_cap.MemoryCap(MEMORY_CAP_BYTES, "freight-hostile")
        port = free_port()
        self.base_url = f"http://127.0.0.1:{port}"
        self._log = self.workdir / f"serve-{self.num_starts}.log"
        argv = [
            sys.executable,
            "-m",
            "freight.cli.main",
            "serve",
            "--home",
            str(home),
            "--port",
            str(port),
            "--no-preload",
        ]
        env = {**os.environ, "FREIGHT_CONFIG": str(self.config)}
        with open(self._log, "wb") as log:
            self.proc = subprocess.Popen(
                self.cap.command(argv),
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.cap.watch(self.proc.pid)
        self._wait_healthy()
        self.client.close()
        self.client = httpx.Client(base_url=self.base_url, timeout=REQUEST_TIMEOUT_SECONDS)
        self.seed()
        self.needs_restart = False

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + 120
        while True:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"freight serve exited with {self.proc.returncode}:\n{self.log_tail()}"
                )
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{self.base_url}/health", timeout=2).status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise TimeoutError(f"freight serve did not answer within 120 s:\n{self.log_tail()}")
            time.sleep(0.1)

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL), drop its cgroup and its home."""
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=10)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            self.proc = None
        if self.cap is not None:
            self.cap.close()
        if self.home is not None:
            shutil.rmtree(self.home, ignore_errors=True)  # its files are no case's evidence

    def close(self) -> None:
        self.stop()
        self.client.close()

    def ensure_up(self) -> None:
        """A healthy server: this one, or a fresh one if it died or was left unwell."""
        if self.needs_restart or self.proc is None or self.proc.poll() is not None:
            self.stop()
            self.start()
        memory_cap.reset_peak(self.pid)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    # --- what a case did to it --------------------------------------------------------------

    def peak_mib(self) -> float | None:
        kib = memory_cap.read_status_kib(self.pid, "VmHWM")
        return None if kib is None else kib / 1024

    def problems(self) -> list[str]:
        """What went wrong with the process itself: death, an OOM kill, memory at the cap."""
        assert self.proc is not None and self.cap is not None
        found = []
        if self.cap.killed_at_kib is not None:
            found.append(
                f"the server's RSS reached {self.cap.killed_at_kib // 1024} MiB: killed at the "
                f"memory cap ({self.cap.describe()})"
            )
        kills = self.cap.num_oom_kills()
        if kills:
            found.append(f"the kernel OOM-killed {kills} process(es) ({self.cap.describe()})")
        code = self.proc.poll()
        if code is not None:
            found.append(f"the server process died (exit code {code})")
        else:
            peak = self.peak_mib()
            if peak is not None and peak * 2**20 >= MEMORY_CAP_BYTES:
                found.append(f"the server's peak RSS reached {peak:.0f} MiB")
        if found:
            self.needs_restart = True
        return found

    def log_tail(self, num_lines: int = 30) -> str:
        """The end of the server's log, without its access lines."""
        if self._log is None or not self._log.exists():
            return ""
        lines = self._log.read_text(errors="replace").splitlines()
        lines = [line for line in lines if not _ACCESS_LINE.match(line)][-num_lines:]
        return "\n".join(line[:300] for line in lines)

    def sign_in_dashboard(self) -> None:
        """A signed-in session cookie on the client (single-user mode: any key will do)."""
        response = self.client.post("/ui/login", data={"api_key": ""})
        assert response.status_code == 303, response.text[:300]

    def get(self, path: str) -> httpx.Response:
        """GET, tried twice: after a 500 the server drops the connection, which a client
        reusing it sees as a reset (what matters is the next answer)."""
        try:
            return self.client.get(path)
        except httpx.TransportError:
            return self.client.get(path)

    # --- objects that path parameters need ----------------------------------------------------

    def seed(self) -> None:
        """A file, a batch, a Message Batch and a webhook endpoint, for routes naming one."""
        content = (json.dumps(VALID_LINE) + "\n").encode()
        uploaded = self.upload(content)
        batch = self.client.post(
            "/v1/batches",
            json={
                "input_file_id": uploaded["id"],
                "endpoint": "/v1/chat/completions",
                "completion_window": "24h",
            },
        )
        message_batch = self.client.post(
            "/v1/messages/batches", json={"requests": [VALID_MESSAGE_REQUEST]}
        )
        # Events only for expired batches: no delivery attempts while the suite runs.
        endpoint = self.client.post(
            "/v1/webhook_endpoints",
            json={"url": "http://127.0.0.1:9/hook", "event_types": ["batch.expired"]},
        )
        self.ids = {
            "file_id": uploaded["id"],
            "batch_id": _id(batch),
            "message_batch_id": _id(message_batch),
            # A server that refuses loopback receivers still gets these routes' bodies.
            "endpoint_id": _id(endpoint) if endpoint.status_code == 200 else "wh_none",
            "model": "echo",
        }

    def upload(self, content: bytes) -> dict[str, Any]:
        response = self.client.post(
            "/v1/files", files={"file": ("in.jsonl", content)}, data={"purpose": "batch"}
        )
        assert response.status_code == 200, response.text
        uploaded: dict[str, Any] = response.json()
        return uploaded

    # --- batches ----------------------------------------------------------------------------

    def wait_batch_ended(self, kind: str, batch_id: str) -> tuple[dict[str, Any] | None, list[str]]:
        """Poll an accepted batch until it is terminal; (its last object, problems)."""
        path = f"/v1/batches/{batch_id}" if kind == "openai" else f"/v1/messages/batches/{batch_id}"
        deadline = time.monotonic() + BATCH_DEADLINE_SECONDS
        batch: dict[str, Any] | None = None
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                return batch, [f"the server died while batch {batch_id} ran"]
            try:
                response = self.get(path)
            except httpx.TransportError as exc:
                return batch, [f"GET {path} failed: {exc!r}"]
            if response.status_code >= 500:
                return batch, [f"GET {path} answered {response.status_code}: {response.text[:300]}"]
            batch = response.json()
            if _is_ended(kind, batch):
                return batch, []
            time.sleep(0.05)
        self.needs_restart = True  # leave no never-ending batch to the next case
        status = None if batch is None else batch.get("status", batch.get("processing_status"))
        return batch, [
            f"batch {batch_id} was accepted but is still '{status}' after "
            f"{BATCH_DEADLINE_SECONDS:.0f} s (it must reach a terminal status)"
        ]


def _id(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    return str(response.json()["id"])


def _is_ended(kind: str, batch: dict[str, Any]) -> bool:
    if kind == "openai":
        return batch.get("status") in TERMINAL
    return batch.get("processing_status") == "ended"


def report(server: CappedServer, what: str, problems: list[str]) -> str:
    """A failed case's message: what was sent, what went wrong, the server's peak and log."""
    peak = server.peak_mib() if server.proc is not None and server.proc.poll() is None else None
    memory = "gone" if peak is None else f"{peak:.0f} MiB"
    return (
        f"{what} (server peak RSS: {memory}):\n" + "\n".join(problems)
        + "\n--- the server's log ends (access lines left out) ---\n" + server.log_tail()
    )  # fmt: skip
