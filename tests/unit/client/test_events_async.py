"""An asynchronous EventRecorder returns at once and sends in order from a background queue."""

from __future__ import annotations

import asyncio
from typing import Any

from peapod.client.events import EventRecorder
from peapod.testing.clock import FakeClock


class SlowClient:
    def __init__(self) -> None:
        self.created: list[dict[str, Any]] = []
        self.gate = asyncio.Event()

    async def create(self, info: Any, obj: dict[str, Any], namespace: str | None = None) -> dict[str, Any]:
        await self.gate.wait()
        self.created.append(obj)
        return obj


POD = {"kind": "Pod", "apiVersion": "v1", "metadata": {"name": "p", "namespace": "ns", "uid": "u1"}}


async def test_record_does_not_wait_for_the_api_and_close_sends_the_rest_in_order() -> None:
    client = SlowClient()
    rec = EventRecorder(client, component="kubelet", clock=FakeClock(), asynchronous=True)  # type: ignore[arg-type]
    for reason in ("Created", "Started"):
        await asyncio.wait_for(rec.record(POD, "Normal", reason, f"{reason} container c"), 1)
    assert client.created == []  # nothing written yet: the API is slow, the caller went on
    client.gate.set()
    await rec.close()
    assert [e["reason"] for e in client.created] == ["Created", "Started"]


async def test_a_full_queue_drops_events_instead_of_blocking(monkeypatch: Any) -> None:
    import peapod.client.events as events

    monkeypatch.setattr(events, "QUEUE_SIZE", 2)
    client = SlowClient()
    rec = EventRecorder(client, component="kubelet", clock=FakeClock(), asynchronous=True)  # type: ignore[arg-type]
    for i in range(5):
        await rec.record(POD, "Normal", f"R{i}", "m")
    assert rec.dropped >= 2
    client.gate.set()
    await rec.close()
    assert 1 <= len(client.created) <= 3
