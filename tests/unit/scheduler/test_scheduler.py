"""The scheduler loop against a fake API: bind, assume, FailedScheduling, requeue on events."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from typing import Any

import pytest

from peapod.api.errors import ApiError
from peapod.controlplane.scheduler.queue import SchedulingQueue
from peapod.controlplane.scheduler.scheduler import Scheduler, node_update_events
from peapod.testing.clock import FakeClock
from tests.unit.scheduler.builders import node, pod
from tests.unit.scheduler.fake_api import FakeApi


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


@pytest.fixture
async def env() -> AsyncIterator[tuple[FakeApi, Scheduler, FakeClock]]:
    api = FakeApi()
    clock = FakeClock()
    sched = Scheduler(api, clock=clock, rng=random.Random(0),  # type: ignore[arg-type]
                      queue=SchedulingQueue(clock=clock, pop_from_backoff=False))
    tasks = [asyncio.create_task(i.run()) for i in (sched.namespaces, sched.nodes, sched.pods)]
    await asyncio.gather(*(i.synced.wait() for i in (sched.namespaces, sched.nodes, sched.pods)))
    yield api, sched, clock
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def step(sched: Scheduler) -> Any:
    out = await asyncio.wait_for(sched.schedule_one(), 2)
    await sched.flush()
    await settle()
    return out


async def test_binds_and_records_scheduled(env: Any) -> None:
    api, sched, _ = env
    api.put("nodes", node("n1"))
    api.put("pods", pod("web", cpu="1"))
    await settle()
    out = await step(sched)
    assert out.node == "n1"
    assert api.bindings == [("default/web", "n1")]
    ev = api.events[-1]
    assert (ev["type"], ev["reason"], ev["message"]) == ("Normal", "Scheduled",
                                                         "Successfully assigned default/web to n1")
    assert ev["source"]["component"] == "default-scheduler"
    assert ev["involvedObject"]["kind"] == "Pod"
    assert "default/web" not in sched.assumed  # confirmed by the watch
    assert sched.snapshot.nodes["n1"].requested.cpu == 1000


async def test_assumed_pods_count_before_the_watch_confirms(env: Any) -> None:
    api, sched, _ = env
    api.put("nodes", node("n1", cpu="2"))
    api.put("nodes", node("n2", cpu="2"))
    api.put("pods", pod("a", cpu="2"))
    api.put("pods", pod("b", cpu="2"))
    await settle()
    first = await asyncio.wait_for(sched.schedule_one(), 2)  # no flush: binding still in flight
    second = await asyncio.wait_for(sched.schedule_one(), 2)
    assert {first.node, second.node} == {"n1", "n2"}
    await sched.flush()


async def test_ignores_other_schedulers_gated_and_deleting_pods(env: Any) -> None:
    api, sched, _ = env
    api.put("nodes", node("n1"))
    api.put("pods", pod("other", schedulerName="my-scheduler"))
    api.put("pods", pod("gated", schedulingGates=[{"name": "g"}]))
    deleting = pod("deleting")
    deleting["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    api.put("pods", deleting)
    api.put("pods", pod("mine", schedulerName="peapod"))
    await settle()
    out = await step(sched)
    assert out.key == "default/mine"
    assert sched.queue.try_pop() is None
    assert sched.queue.where("default/gated") == "gated"
    api.put("pods", pod("gated"))  # gates removed
    await settle()
    assert (await step(sched)).key == "default/gated"


async def test_unschedulable_condition_event_and_requeue_on_node_label(env: Any) -> None:
    api, sched, clock = env
    for n in ("n1", "n2", "n3"):
        api.put("nodes", node(n))
    api.put("pods", pod("p", nodeSelector={"disk": "ssd"}))
    await settle()
    out = await step(sched)
    msg = ("0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector. "
           "preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling.")
    assert out.node is None and out.message == msg
    key, patch = api.status_patches[-1]
    cond = patch["status"]["conditions"][0]
    assert key == "default/p"
    assert (cond["type"], cond["status"], cond["reason"], cond["message"]) == (
        "PodScheduled", "False", "Unschedulable", msg)
    ev = api.events[-1]
    assert (ev["type"], ev["reason"], ev["message"]) == ("Warning", "FailedScheduling", msg)
    assert sched.queue.where("default/p") == "unschedulable"
    # an unrelated node change (a heartbeat) does not move it
    hb = node("n1")
    hb["status"]["conditions"][0]["lastHeartbeatTime"] = "2026-01-01T00:00:10Z"
    api.put("nodes", hb)
    await settle()
    assert sched.queue.where("default/p") == "unschedulable"
    api.put("nodes", node("n2", labels={"disk": "ssd"}))
    await settle()
    assert sched.queue.where("default/p") == "backoff"
    clock.advance(1.0)
    assert (await step(sched)).node == "n2"


async def test_same_failure_does_not_repatch_the_condition(env: Any) -> None:
    api, sched, clock = env
    api.put("nodes", node("n1", cpu="1"))
    api.put("pods", pod("p", cpu="2"))
    await settle()
    await step(sched)
    assert len(api.status_patches) == 1
    clock.advance(300)  # the leftover flush retries it
    await step(sched)
    assert len(api.status_patches) == 1


async def test_resources_freed_by_a_deleted_pod(env: Any) -> None:
    api, sched, clock = env
    api.put("nodes", node("n1", cpu="2"))
    api.put("pods", pod("big", cpu="2", node="n1"))
    api.put("pods", pod("p", cpu="1"))
    await settle()
    out = await step(sched)
    assert out.message.startswith("0/1 nodes are available: 1 Insufficient cpu.")
    assert out.message.endswith("preemption: 0/1 nodes are available: 1 No preemption victims found for "
                                "incoming pod.")
    api.remove("pods", "default/big")
    await settle()
    assert sched.queue.where("default/p") == "backoff"
    clock.advance(1.0)
    assert (await step(sched)).node == "n1"


async def test_no_nodes_then_a_node_appears(env: Any) -> None:
    api, sched, clock = env
    api.put("pods", pod("p"))
    await settle()
    assert (await step(sched)).message == "no nodes available to schedule pods"
    api.put("nodes", node("n1"))
    await settle()
    clock.advance(1.0)
    assert (await step(sched)).node == "n1"


async def test_binding_error_forgets_the_pod_and_retries(env: Any) -> None:
    api, sched, clock = env
    api.put("nodes", node("n1", cpu="1"))
    api.put("pods", pod("p", cpu="1"))
    await settle()
    api.fail_binding = ApiError(500, "InternalError", "boom")
    await step(sched)
    assert sched.snapshot.nodes["n1"].requested.cpu == 0
    assert sched.queue.where("default/p") == "backoff"
    assert api.events[-1]["reason"] == "FailedScheduling"
    assert api.status_patches[-1][1]["status"]["conditions"][0]["reason"] == "SchedulerError"
    api.fail_binding = None
    clock.advance(1.0)
    assert (await step(sched)).node == "n1"
    assert api.bindings == [("default/p", "n1")]


async def test_terminal_pods_free_their_node(env: Any) -> None:
    api, sched, _ = env
    api.put("nodes", node("n1", cpu="1"))
    done = pod("done", cpu="1", node="n1")
    api.put("pods", done)
    await settle()
    assert sched.snapshot.nodes["n1"].requested.cpu == 1000
    api.put("pods", {**done, "status": {"phase": "Succeeded"}})
    await settle()
    assert sched.snapshot.nodes["n1"].requested.cpu == 0


async def test_namespace_selector_uses_namespace_labels(env: Any) -> None:
    api, sched, _ = env
    api.put("namespaces", {"metadata": {"name": "prod", "labels": {"env": "prod"}}})
    api.put("nodes", node("n1"))
    api.put("nodes", node("n2"))
    api.put("pods", pod("db", ns="prod", labels={"app": "db"}, node="n1"))
    anti = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{
        "labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "kubernetes.io/hostname",
        "namespaceSelector": {"matchLabels": {"env": "prod"}}}]}}
    api.put("pods", pod("x", affinity=anti))
    await settle()
    assert (await step(sched)).node == "n2"


def test_node_update_events() -> None:
    base = node("n1")
    assert node_update_events(base, node("n1")) == []
    assert node_update_events(base, node("n1", labels={"a": "b"})) == ["NodeLabel"]
    assert node_update_events(base, node("n1", unschedulable=True)) == ["NodeTaint"]
    assert node_update_events(base, node("n1", cpu="8")) == ["NodeAllocatable"]
    assert node_update_events(base, node("n1", ready="False")) == ["NodeCondition"]


async def test_run_scheduler_loop_binds_pods() -> None:
    from peapod.controlplane.scheduler import run_scheduler

    api = FakeApi()
    api.put("nodes", node("n1"))
    api.put("pods", pod("a"))
    task = asyncio.create_task(run_scheduler(api, clock=FakeClock(), rng=random.Random(0)))  # type: ignore[arg-type]
    for _ in range(200):
        await asyncio.sleep(0)
        if api.bindings:
            break
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert api.bindings == [("default/a", "n1")]


async def test_an_internal_error_requeues_instead_of_crashing(env: Any, monkeypatch: Any) -> None:
    api, sched, clock = env
    api.put("nodes", node("n1"))
    api.put("pods", pod("p"))
    await settle()

    def boom(_pod: Any) -> Any:
        raise RuntimeError("bug")

    monkeypatch.setattr(sched.core, "schedule", boom)
    assert await step(sched) is None
    assert sched.queue.where("default/p") == "backoff"
    monkeypatch.undo()
    clock.advance(1.0)
    assert (await step(sched)).node == "n1"


async def test_status_updates_keep_the_cached_pod_and_label_changes_recache_it(env: Any) -> None:
    api, sched, _ = env
    api.put("nodes", node("n1"))
    api.put("pods", pod("web", cpu="1", node="n1", labels={"app": "a"}))
    await settle()
    cached = sched.snapshot.pods["default/web"]
    running = pod("web", cpu="1", node="n1", labels={"app": "a"})
    running["status"] = {"phase": "Running"}
    api.put("pods", running)
    await settle()
    assert sched.snapshot.pods["default/web"] is cached  # not rebuilt for a status write
    assert cached.obj["status"]["phase"] == "Running"  # but it holds the newest object
    assert sched.snapshot.nodes["n1"].requested.cpu == 1000
    api.put("pods", pod("web", cpu="1", node="n1", labels={"app": "b"}))
    await settle()
    assert sched.snapshot.pods["default/web"] is not cached
    assert sched.snapshot.pods["default/web"].labels == {"app": "b"}
    assert sched.snapshot.nodes["n1"].requested.cpu == 1000
