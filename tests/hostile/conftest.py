"""The hostile-input suite's server: one capped `freight serve` for the session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.hostile.capped_server import CappedServer


@pytest.fixture(scope="session")
def capped_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CappedServer]:
    """`freight serve` under the memory cap, restarted whenever a case left it unwell."""
    server = CappedServer(tmp_path_factory.mktemp("hostile"))
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def server(capped_server: CappedServer) -> CappedServer:
    """The capped server, up and healthy, its peak memory reset for this case."""
    capped_server.ensure_up()
    return capped_server
