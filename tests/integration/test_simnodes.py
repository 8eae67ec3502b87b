"""Simulated nodes against the real API server and scheduler: Nodes with Leases, pods Running, deletes."""

from __future__ import annotations

import asyncio
import ipaddress
import random
from typing import Any

from peapod.api.resources import resource
from peapod.client.rest import ApiClient
from peapod.clock import RealClock
from peapod.controlplane.scheduler import Scheduler
from peapod.testing.simnodes import SimulatedNodes, node_cidr
from peapod.testing.waiting import eventually

PODS = resource("", "v1", "pods")
NODES = resource("", "v1", "nodes")
LEASES = resource("coordination.k8s.io", "v1", "leases")


def pod(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"containers": [{"name": "c", "image": "busybox",
                                     "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}]}}


def test_node_cidrs_are_distinct_24s() -> None:
    nets = [node_cidr(i) for i in range(600)]
    assert len({str(n) for n in nets}) == 600
    assert all(n.prefixlen == 24 and n.subnet_of(ipaddress.IPv4Network("10.128.0.0/9")) for n in nets)


async def test_simulated_nodes_run_scheduled_pods_and_finish_deletes(server: Any) -> None:
    client = ApiClient(server.url)
    sim = SimulatedNodes(client, count=5, lease_interval=0.5)
    sched = Scheduler(client, clock=RealClock(), rng=random.Random(0))
    task = asyncio.create_task(sched.run())
    try:
        await sim.start()
        nodes = (await client.list(NODES))["items"]
        assert sorted(n["metadata"]["name"] for n in nodes) == [f"sim-{i:05d}" for i in range(5)]
        assert all(n["status"]["allocatable"]["pods"] == "110" for n in nodes)  # status kept on create
        lease0 = (await client.get(LEASES, "sim-00000", "kube-node-lease"))["spec"]["renewTime"]

        for i in range(20):
            await client.create(PODS, pod(f"p{i}"), "default")

        async def all_running() -> list[dict[str, Any]] | None:
            items = (await client.list(PODS, "default"))["items"]
            ok = len(items) == 20 and all((p.get("status") or {}).get("phase") == "Running" for p in items)
            return items if ok else None

        items = await eventually(all_running)
        for p in items:
            st = p["status"]
            cidr = node_cidr(int(p["spec"]["nodeName"].removeprefix("sim-")))
            assert ipaddress.IPv4Address(st["podIP"]) in cidr
            assert [c["type"] for c in st["conditions"] if c["status"] == "True"].count("Ready") == 1
            assert st["containerStatuses"][0]["state"]["running"]
        assert len({p["status"]["podIP"] for p in items}) == 20

        async def renewed() -> bool:
            lease = await client.get(LEASES, "sim-00000", "kube-node-lease")
            return lease["spec"]["renewTime"] != lease0
        await eventually(renewed)

        await client.delete(PODS, "p0", "default", grace_period_seconds=30)

        async def gone() -> bool:
            return "p0" not in [p["metadata"]["name"] for p in (await client.list(PODS, "default"))["items"]]
        await eventually(gone)
        assert sim.deletes == 1 and sim.errors == 0
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await sim.stop(delete_nodes=True)
        assert (await client.list(NODES))["items"] == []
        await client.close()
