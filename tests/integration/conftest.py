"""In-process cluster harness: the real API server on a real SQLiteStore in a temp dir.

The server runs on its own event loop in a thread, listening on 127.0.0.1:<free port>, so both
async aiohttp clients (in the test's loop) and the synchronous official ``kubernetes`` client can
talk to it over real HTTP.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from peapod.apiserver.app import build_app
from peapod.apiserver.bootstrap import bootstrap
from peapod.clock import RealClock
from peapod.store.sqlite import SQLiteStore


class ServerThread:
    """A running API server; ``call`` runs a coroutine on the server's loop (e.g. store reads)."""

    def __init__(self, data_dir: Path, **app_kwargs: Any) -> None:
        self.data_dir = data_dir
        self.app_kwargs = app_kwargs
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="apiserver", daemon=True)
        self.store: SQLiteStore | None = None
        self.runner: web.AppRunner | None = None
        self.app: web.Application | None = None
        self.port = 0

    def call(self, coro: Coroutine[Any, Any, Any], timeout: float = 30) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def start(self) -> None:
        self.thread.start()
        self.call(self._start())

    async def _start(self) -> None:
        self.store = await SQLiteStore.open(self.data_dir / "state.db")
        clock = self.app_kwargs.pop("clock", None) or RealClock()
        await bootstrap(self.store, clock)
        self.app = build_app(store=self.store, clock=clock, **self.app_kwargs)
        self.runner = web.AppRunner(self.app, shutdown_timeout=2)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def _stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
        if self.store is not None:
            await self.store.close()

    def stop(self) -> None:
        try:
            self.call(self._stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def raw(self, key: str) -> bytes | None:
        """A stored value as bytes (from the test's loop)."""
        fut = asyncio.run_coroutine_threadsafe(self._raw(key), self.loop)
        return await asyncio.wrap_future(fut)

    async def _raw(self, key: str) -> bytes | None:
        assert self.store is not None
        kv = await self.store.get(key)
        return kv.value if kv else None

    async def dump(self) -> dict[str, tuple[int, bytes]]:
        """Every live key with its mod_revision (to prove a rejected request changed nothing)."""
        fut = asyncio.run_coroutine_threadsafe(self._dump(), self.loop)
        return await asyncio.wrap_future(fut)

    async def _dump(self) -> dict[str, tuple[int, bytes]]:
        assert self.store is not None
        res = await self.store.list("/")
        return {kv.key: (kv.mod_revision, kv.value) for kv in res.items}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerThread]:
    srv = ServerThread(tmp_path)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
async def http(server: ServerThread) -> Any:
    import aiohttp

    async with aiohttp.ClientSession(base_url=server.url) as session:
        yield session


@pytest.fixture
def kube(server: ServerThread) -> Iterator[Any]:
    """An official ``kubernetes`` ApiClient configured for the server (no auth)."""
    from kubernetes import client

    cfg = client.Configuration()
    cfg.host = server.url
    api = client.ApiClient(cfg)
    try:
        yield api
    finally:
        api.close()
