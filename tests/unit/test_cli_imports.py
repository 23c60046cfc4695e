"""The `freight` command starts without the libraries that only some of its commands use:
every client command (`files`, `batches`, `models`, `keys`) is a process start, and a
script or a test suite runs many of them."""

from __future__ import annotations

import subprocess
import sys

ONLY_SOME_COMMANDS_NEED = ("alembic", "fastapi", "jinja2", "pyarrow", "torch", "vllm")


def test_importing_the_command_leaves_the_heavy_libraries_alone() -> None:
    code = (
        "import sys, freight.cli.main; "
        f"print(' '.join(m for m in {ONLY_SOME_COMMANDS_NEED!r} if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == [], done.stdout
