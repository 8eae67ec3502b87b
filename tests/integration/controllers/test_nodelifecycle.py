"""Node lifecycle and pod GC against the real API server; time moved by a FakeClock."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from peapod.api.errors import ApiError
from peapod.client.informer import Informer
from peapod.client.rest import ApiClient
from peapod.clock import rfc3339_micro
from peapod.controlplane.controllers import nodelifecycle as nl
from peapod.controlplane.controllers.podgc import PodGC
from peapod.testing.clock import FakeClock
from tests.integration.controllers.cluster import NODES, PODS, eventually, running

Obj = dict[str, Any]


async def add_node(api: ApiClient, clock: FakeClock, name: str) -> None:
    await api.create(
        NODES,
        {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": name},
            "status": {
                "conditions": [
                    {"type": "Ready", "status": "True", "lastHeartbeatTime": "2026-01-01T00:00:00Z"}
                ]
            },
        },
    )
    await api.create(
        nl.LEASES,
        {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": name, "namespace": nl.LEASE_NAMESPACE},
            "spec": {"holderIdentity": name, "renewTime": rfc3339_micro(clock.now())},
        },
    )


async def renew(api: ApiClient, clock: FakeClock, name: str) -> None:
    obj = await api.get(nl.LEASES, name, nl.LEASE_NAMESPACE)
    obj["spec"]["renewTime"] = rfc3339_micro(clock.now())
    await api.update(nl.LEASES, obj)


async def add_pod(api: ApiClient, name: str, node: str, tolerations: list[Obj] | None = None) -> None:
    spec: Obj = {"nodeName": node, "containers": [{"name": "c", "image": "busybox"}]}
    if tolerations is not None:
        spec["tolerations"] = tolerations
    await api.create(
        PODS, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}, "default"
    )


async def cached(inf: Informer, key: str, pred: Any = lambda o: True) -> Obj:
    async def check() -> Obj | None:
        o = inf.get(key)
        return o if o is not None and pred(o) else None

    return await eventually(check, what=f"{key} in cache")


async def gone_or_deleting(api: ApiClient, name: str) -> bool:
    try:
        p = await api.get(PODS, name, "default")
    except ApiError as e:
        return e.code == 404
    return bool(p["metadata"].get("deletionTimestamp"))


def taint_keys(node: Obj) -> set[tuple[str, str]]:
    return {(t["key"], t["effect"]) for t in (node.get("spec") or {}).get("taints") or []}


async def test_silent_node_unknown_tainted_and_pods_evicted(api: ApiClient) -> None:
    clock = FakeClock(datetime.now(UTC))
    for n in ("n1", "n2"):
        await add_node(api, clock, n)
    fast = [
        {"key": nl.TAINT_UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 0}
    ]
    await add_pod(api, "on-n2", "n2")  # gets the default 300 s tolerations from the API server
    await add_pod(api, "on-n2-fast", "n2", fast)
    await add_pod(api, "on-n1", "n1")
    c = nl.NodeLifecycleController(api, clock=clock, grace_period=40)
    async with running(c.nodes.run(), c.leases.run(), c.pods.run()):
        await cached(c.pods, "default/on-n1")
        await cached(c.leases, f"{nl.LEASE_NAMESPACE}/n2")
        await c.monitor_once()
        clock.advance(30)
        await renew(api, clock, "n1")
        await cached(
            c.leases,
            f"{nl.LEASE_NAMESPACE}/n1",
            lambda o: o["spec"]["renewTime"] == rfc3339_micro(clock.now()),
        )
        await c.monitor_once()
        assert nl.ready_status(await api.get(NODES, "n2")) == "True"
        clock.advance(15)  # n2 silent for 45 s, n1 for 15 s
        await c.monitor_once()
        n2 = await api.get(NODES, "n2")
        ready = nl.node_condition(n2, "Ready")
        assert ready is not None and (ready["status"], ready["reason"], ready["message"]) == (
            "Unknown",
            "NodeStatusUnknown",
            "Kubelet stopped posting node status.",
        )
        assert nl.ready_status(await api.get(NODES, "n1")) == "True"

        async def tainted() -> bool:
            await c.monitor_once()
            return taint_keys(await api.get(NODES, "n2")) == {
                (nl.TAINT_UNREACHABLE, "NoSchedule"),
                (nl.TAINT_UNREACHABLE, "NoExecute"),
            }

        await eventually(tainted, what="unreachable taints")
        assert taint_keys(await api.get(NODES, "n1")) == set()
        await cached(c.nodes, "n2", lambda o: taint_keys(o))
        await c.evict_once()
        assert await gone_or_deleting(api, "on-n2-fast")
        assert not await gone_or_deleting(api, "on-n2")
        clock.advance(301)
        await c.evict_once()
        assert await gone_or_deleting(api, "on-n2")
        assert not await gone_or_deleting(api, "on-n1")
        # The kubelet comes back and reports Ready: the taints go.
        n2 = await api.get(NODES, "n2")
        for cond in n2["status"]["conditions"]:
            if cond["type"] == "Ready":
                cond.update(status="True", reason="KubeletReady", message="ok")
        await api.update(NODES, n2, subresource="status")
        await renew(api, clock, "n2")
        await renew(api, clock, "n1")

        async def untainted() -> bool:
            await c.monitor_once()
            return taint_keys(await api.get(NODES, "n2")) == set()

        await eventually(untainted, what="taints removed")


async def test_no_evictions_when_every_node_went_silent(api: ApiClient) -> None:
    clock = FakeClock(datetime.now(UTC))
    await add_node(api, clock, "solo")
    await add_pod(
        api,
        "p",
        "solo",
        [{"key": nl.TAINT_UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 0}],
    )
    c = nl.NodeLifecycleController(api, clock=clock, grace_period=40)
    async with running(c.nodes.run(), c.leases.run(), c.pods.run()):
        await cached(c.pods, "default/p")
        await cached(c.nodes, "solo")
        await c.monitor_once()
        clock.advance(60)
        await c.monitor_once()
        assert nl.ready_status(await api.get(NODES, "solo")) == "Unknown"

        async def disrupted() -> bool:
            await c.monitor_once()
            return c.all_disrupted and taint_keys(await api.get(NODES, "solo")) == {
                (nl.TAINT_UNREACHABLE, "NoSchedule")
            }

        await eventually(disrupted, what="disruption mode with NoSchedule only")
        clock.advance(600)
        await c.monitor_once()
        await c.evict_once()
        await asyncio.sleep(0.2)
        assert not await gone_or_deleting(api, "p")


async def test_pods_of_a_deleted_node_are_collected(api: ApiClient) -> None:
    clock = FakeClock(datetime.now(UTC))
    await add_node(api, clock, "alive")
    await add_pod(api, "orphan", "ghost")
    await add_pod(api, "fine", "alive")
    gc = PodGC(api, clock=clock, quarantine=40)
    async with running(gc.nodes.run(), gc.pods.run()):
        await cached(gc.pods, "default/orphan")
        await cached(gc.pods, "default/fine")
        await cached(gc.nodes, "alive")
        await gc.gc_once()
        assert not await gone_or_deleting(api, "orphan")  # quarantine first
        clock.advance(41)
        await gc.gc_once()
        assert await gone_or_deleting(api, "orphan")
        assert not await gone_or_deleting(api, "fine")
