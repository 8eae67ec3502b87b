"""The scheduler against the real API server on SQLite: binding subresource, condition, events."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from typing import Any

import pytest

from peapod.api.resources import resource
from peapod.client.rest import ApiClient
from peapod.clock import RealClock
from peapod.controlplane.scheduler import Scheduler
from peapod.testing.waiting import eventually

PODS = resource("", "v1", "pods")
NODES = resource("", "v1", "nodes")
EVENTS = resource("", "v1", "events")


def node(name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **(labels or {})}},
        "status": {
            "allocatable": {"cpu": "2", "memory": "4Gi", "pods": "110"},
            "capacity": {"cpu": "2", "memory": "4Gi", "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
        },
    }


def pod(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "containers": [{"name": "c", "image": "busybox", "resources": {"requests": {"cpu": "500m"}}}],
            **spec,
        },
    }


@pytest.fixture
async def cluster(server: Any) -> AsyncIterator[tuple[ApiClient, Scheduler]]:
    client = ApiClient(server.url)
    for n in (node("n1"), node("n2")):
        created = await client.create(NODES, n)
        if not (created.get("status") or {}).get("allocatable"):  # status ignored on create: set it
            created["status"] = n["status"]
            await client.update(NODES, created, subresource="status")
    sched = Scheduler(client, clock=RealClock(), rng=random.Random(0))
    task = asyncio.create_task(sched.run())
    try:
        yield client, sched
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await client.close()


async def events_for(client: ApiClient, name: str) -> list[dict[str, Any]]:
    items = (await client.list(EVENTS, "default"))["items"]
    return [e for e in items if e["involvedObject"]["name"] == name]


async def test_pods_are_bound_through_the_binding_subresource(cluster: Any) -> None:
    client, _ = cluster
    for i in range(8):
        await client.create(PODS, pod(f"p{i}"), "default")

    async def all_bound() -> list[str] | None:
        items = (await client.list(PODS, "default"))["items"]
        nodes = [p["spec"].get("nodeName") for p in items]
        return nodes if len(nodes) == 8 and all(nodes) else None

    nodes = await eventually(all_bound)
    assert sorted(nodes) == ["n1"] * 4 + ["n2"] * 4  # 500m each fills both 2-cpu nodes
    p0 = await client.get(PODS, "p0", "default")
    cond = [c for c in p0["status"]["conditions"] if c["type"] == "PodScheduled"]
    assert cond and cond[0]["status"] == "True"
    evs = await eventually(lambda: events_for(client, "p0"))
    assert evs[0]["reason"] == "Scheduled" and evs[0]["type"] == "Normal"
    assert evs[0]["message"] == f"Successfully assigned default/p0 to {p0['spec']['nodeName']}"
    assert evs[0]["source"]["component"] == "default-scheduler"

    # a full cluster: 500m more does not fit anywhere
    await client.create(PODS, pod("extra"), "default")

    async def unschedulable() -> dict[str, Any] | None:
        p = await client.get(PODS, "extra", "default")
        for c in (p.get("status") or {}).get("conditions") or []:
            if c["type"] == "PodScheduled" and c["status"] == "False":
                return c
        return None

    cond = await eventually(unschedulable)
    assert cond["reason"] == "Unschedulable"
    assert cond["message"] == (
        "0/2 nodes are available: 2 Insufficient cpu. preemption: 0/2 nodes are "
        "available: 2 No preemption victims found for incoming pod."
    )
    # deleting a pod frees room: the waiting pod is moved back and bound
    await client.delete(PODS, "p0", "default", grace_period_seconds=0)

    async def extra_bound() -> str | None:
        return (await client.get(PODS, "extra", "default"))["spec"].get("nodeName")

    assert await eventually(extra_bound) == p0["spec"]["nodeName"]


async def test_failed_scheduling_then_node_label_change(cluster: Any) -> None:
    client, _ = cluster
    await client.create(PODS, pod("ssd", nodeSelector={"disk": "ssd"}), "default")

    async def failed_event() -> dict[str, Any] | None:
        evs = [e for e in await events_for(client, "ssd") if e["reason"] == "FailedScheduling"]
        return evs[0] if evs else None

    ev = await eventually(failed_event)
    msg = (
        "0/2 nodes are available: 2 node(s) didn't match Pod's node affinity/selector. "
        "preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling."
    )
    assert ev["type"] == "Warning" and ev["message"] == msg
    p = await client.get(PODS, "ssd", "default")
    cond = next(c for c in p["status"]["conditions"] if c["type"] == "PodScheduled")
    assert (cond["status"], cond["reason"], cond["message"]) == ("False", "Unschedulable", msg)

    await client.patch(NODES, "n2", {"metadata": {"labels": {"disk": "ssd"}}})

    async def bound() -> str | None:
        return (await client.get(PODS, "ssd", "default"))["spec"].get("nodeName")

    assert await eventually(bound) == "n2"
    p = await client.get(PODS, "ssd", "default")
    cond = next(c for c in p["status"]["conditions"] if c["type"] == "PodScheduled")
    assert cond["status"] == "True"
