"""Regressions the robustness suite found, pinned down with fakes (no processes, no sleeps)."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from peapod.node.statusmanager import StatusManager
from peapod.testing.clock import FakeClock


class DyingServer:
    """A client whose first status patch breaks as when the API server is SIGKILLed mid-request."""

    def __init__(self) -> None:
        self.patches: list[dict[str, Any]] = []
        self.failures = 1

    async def patch(self, _info: Any, name: str, patch: dict[str, Any], namespace: str, **_kw: Any) -> Any:
        if self.failures:
            self.failures -= 1
            raise aiohttp.ServerDisconnectedError()  # an aiohttp.ClientError, not an OSError
        self.patches.append(patch)
        return {"status": patch["status"]}


async def test_status_writes_go_on_after_the_server_died_mid_request() -> None:
    """Seen on a split node: SIGKILL of `peapod server` during a status patch ended the agent's status loop,
    so no pod status was written again (pods ran, the API showed them Pending forever)."""
    clock = FakeClock()
    client = DyingServer()
    sm = StatusManager(client, clock=clock)  # type: ignore[arg-type]
    task = asyncio.create_task(sm.run())
    try:
        pod = {"metadata": {"name": "p", "namespace": "ns", "uid": "u1"}}
        sm.set_status(pod, {"phase": "Running"})
        for _ in range(100):  # the failed pass backs off on the clock
            await asyncio.sleep(0)
            if clock.sleepers:
                break
        assert not task.done(), task.exception() if task.done() else None
        clock.advance(sm.retry_interval)
        await asyncio.wait_for(sm.flush(), 1)
        assert client.patches == [{"metadata": {"uid": "u1"}, "status": {"phase": "Running"}}]
    finally:
        task.cancel()
