"""An in-process cluster for controller tests: the real API server on SQLite in this event loop."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from peapod.apiserver.app import build_app
from peapod.apiserver.bootstrap import bootstrap
from peapod.client.rest import ApiClient
from peapod.clock import RealClock
from peapod.store.sqlite import SQLiteStore


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[ApiClient]:
    store = await SQLiteStore.open(tmp_path / "db")
    clock = RealClock()
    await bootstrap(store, clock)
    runner = web.AppRunner(build_app(store=store, clock=clock, bookmark_interval=1.0), shutdown_timeout=1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    assert site._server is not None
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    client = ApiClient(f"http://127.0.0.1:{port}")
    try:
        yield client
    finally:
        await client.close()
        await runner.cleanup()
        await store.close()
