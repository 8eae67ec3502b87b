"""Shared informers against the real API server: one watch for many consumers, late joiners replayed."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from peapod.client.rest import ApiClient
from peapod.client.sharedinformer import InformerFactory
from peapod.clock import RealClock
from peapod.controlplane.controllers.replicaset import ReplicaSetController
from peapod.controlplane.manager import controllers
from tests.integration.controllers.cluster import PODS, eventually

Obj = dict[str, Any]


def pod(name: str) -> Obj:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}}


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def handlers(self) -> tuple[Any, Any, Any]:
        return (lambda o: self.events.append(("add", o["metadata"]["name"])),
                lambda _o, n: self.events.append(("update", n["metadata"]["name"])),
                lambda o: self.events.append(("delete", o["metadata"]["name"])))


class CountingClient(ApiClient):
    """The fixture's client, counting the pod watch streams open right now."""

    def __init__(self, api: ApiClient) -> None:
        super().__init__(api.base_url)
        self.open_pod_watches = 0

    async def watch(self, info: Any, *args: Any, **kwargs: Any) -> AsyncIterator[tuple[str, Obj]]:  # type: ignore[override]
        counted = info.resource == "pods"
        self.open_pod_watches += counted
        try:
            async for item in super().watch(info, *args, **kwargs):
                yield item
        finally:
            self.open_pod_watches -= counted


@pytest.fixture
async def counting(api: ApiClient) -> AsyncIterator[CountingClient]:
    client = CountingClient(api)
    try:
        yield client
    finally:
        await client.close()


async def watch_count(api: CountingClient) -> int:
    return api.open_pod_watches


async def test_views_share_one_watch_and_cache(counting: CountingClient) -> None:
    api = counting
    factory = InformerFactory(api, clock=RealClock())
    a, b = factory.informer(PODS), factory.informer(PODS)
    ra, rb = Recorder(), Recorder()
    a.add_handlers(*ra.handlers())
    b.add_handlers(*rb.handlers())
    await api.create(PODS, pod("before"), "default")
    tasks = [asyncio.create_task(a.run()), asyncio.create_task(b.run())]
    try:
        await asyncio.wait_for(asyncio.gather(a.synced.wait(), b.synced.wait()), 10)
        assert ("add", "before") in ra.events and ("add", "before") in rb.events
        await api.create(PODS, pod("after"), "default")
        await eventually(lambda: _has(rb, ("add", "after")), what="the second view sees the new pod")
        assert ("add", "after") in ra.events
        assert a.get("default/after") is b.get("default/after")  # one cache, not two copies
        assert await watch_count(api) == 1
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_late_view_is_replayed_and_stopped_view_gets_nothing(counting: CountingClient) -> None:
    api = counting
    factory = InformerFactory(api, clock=RealClock())
    first = factory.informer(PODS)
    first_rec = Recorder()
    first.add_handlers(*first_rec.handlers())
    t1 = asyncio.create_task(first.run())
    await api.create(PODS, pod("p1"), "default")
    await eventually(lambda: _has(first_rec, ("add", "p1")), what="the first view sees p1")

    late = factory.informer(PODS)
    late_rec = Recorder()
    late.add_handlers(*late_rec.handlers())
    t2 = asyncio.create_task(late.run())
    await asyncio.wait_for(late.synced.wait(), 10)
    assert late_rec.events == [("add", "p1")]  # the cache replayed once as adds, nothing twice

    t1.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await t1
    await api.delete(PODS, "p1", "default", grace_period_seconds=0)
    await eventually(lambda: _has(late_rec, ("delete", "p1")), what="the running view sees the delete")
    assert ("delete", "p1") not in first_rec.events  # the stopped view is detached
    t2.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await t2
    await eventually(lambda: _no_watch(api), what="the last view stops the underlying watch")


async def test_control_plane_controllers_share_the_pod_watch(counting: CountingClient) -> None:
    api = counting
    """Every controller and the scheduler of one process read pods through a single watch."""
    from peapod.controlplane.manager import run_all
    from peapod.controlplane.scheduler import run_scheduler

    clock = RealClock()
    factory = InformerFactory(api, clock=clock)
    factories = {**controllers(api, clock=clock, factory=factory),
                 "scheduler": lambda: run_scheduler(api, clock=clock, factory=factory)}
    task = asyncio.create_task(run_all(factories, clock=clock))
    try:
        await api.create(PODS, pod("w"), "default")
        await eventually(lambda: _watchers_at_least(api, 1), what="a pod watch")
        await asyncio.sleep(0.5)  # every controller has started its informers by now
        assert await watch_count(api) == 1
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_restarted_controller_attaches_again(counting: CountingClient) -> None:
    api = counting
    """A controller instance started after another stopped (leadership regained) gets every pod."""
    clock = RealClock()
    factory = InformerFactory(api, clock=clock)
    await api.create(PODS, pod("x"), "default")
    for _ in range(2):
        rs = ReplicaSetController(api, clock=clock, factory=factory)
        task = asyncio.create_task(rs.run())
        await asyncio.wait_for(rs.pod_informer.synced.wait(), 10)
        assert rs.pod_informer.get("default/x") is not None
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def _has(rec: Recorder, event: tuple[str, str]) -> bool:
    return event in rec.events


async def _no_watch(api: CountingClient) -> bool:
    return await watch_count(api) == 0


async def _watchers_at_least(api: CountingClient, n: int) -> bool:
    return await watch_count(api) >= n
