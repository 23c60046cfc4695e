"""A scaled-out deployment for e2e tests (docs/guides/scaling.md): a PostgreSQL store, one
shared files folder, an API-only `freight serve --no-worker`, and `freight worker`
processes added by the test, each with its own home as on separate machines.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import free_port, stop_process_group, wait_http
from tests.postgres import temporary_database


@contextlib.contextmanager
def freight_process(home: Path, *args: str, env: dict[str, str]) -> Iterator[subprocess.Popen[str]]:
    """`freight ARGS --home HOME` in its own process group, logging to HOME/freight.log."""
    home.mkdir(parents=True, exist_ok=True)
    with open(home / "freight.log", "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "freight.cli.main", *args, "--home", str(home)],
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        try:
            yield proc
        finally:
            stop_process_group(proc)


@dataclass
class Deployment:
    root: Path
    database_url: str
    env: dict[str, str]  # what every process of the deployment runs with
    base_url: str
    api: subprocess.Popen[str]
    stack: contextlib.ExitStack  # stops the workers with the deployment

    def worker(self, name: str, *args: str) -> subprocess.Popen[str]:
        """Start `freight worker ARGS` with its own home ROOT/NAME."""
        process = freight_process(self.root / name, "worker", *args, env=self.env)
        return self.stack.enter_context(process)

    def log(self, name: str) -> Path:
        return self.root / name / "freight.log"

    def openai(self) -> Any:
        import openai

        return openai.OpenAI(base_url=f"{self.base_url}/v1", api_key="test")


@contextlib.contextmanager
def api_only_deployment(root: Path, config: str, *, database: str) -> Iterator[Deployment]:
    """The API process up and answering, on a new database named after `database`;
    everything stopped and the database dropped afterwards."""
    config_path = root / "freight.toml"
    config_path.write_text(config)
    port = free_port()
    with temporary_database(database) as url, contextlib.ExitStack() as stack:
        env = {
            "FREIGHT_DATABASE_URL": url,
            "FREIGHT_FILES_URL": str(root / "shared-files"),
            "FREIGHT_CONFIG": str(config_path),
        }
        serve = ("serve", "--no-worker", "--no-preload", "--port", str(port))
        api = stack.enter_context(freight_process(root / "api", *serve, env=env))
        base_url = f"http://127.0.0.1:{port}"
        wait_http(f"{base_url}/health", proc=api)
        assert httpx.get(f"{base_url}/health").json()["worker"] is None  # API only
        yield Deployment(root, url, env, base_url, api, stack)
