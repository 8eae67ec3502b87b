"""The in-process API server (real SQLite store) for the node agent end-to-end tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import ServerThread


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerThread]:
    srv = ServerThread(tmp_path / "apiserver")
    srv.data_dir.mkdir(parents=True, exist_ok=True)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()
