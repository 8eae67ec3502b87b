"""Simulated nodes (kwok-style): Node objects and a lightweight agent that only fakes pod status.

For driving the control plane at scale on one machine: ``SimulatedNodes`` registers ``count`` Nodes
(Ready, 4 CPU, 16Gi, 110 pods), renews each node's Lease in kube-node-lease like a kubelet (so the
node lifecycle controller keeps them Ready), marks every pod bound to one of them Running and Ready
with an address from the node's pod CIDR, and finishes graceful deletions at once (a deleted pod is
removed with grace 0, as kwok does). No container, namespace or network is made.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from peapod.api.errors import ApiError
from peapod.api.resources import resource
from peapod.client.informer import Informer
from peapod.client.rest import ApiClient
from peapod.clock import Clock, RealClock

log = logging.getLogger(__name__)

Obj = dict[str, Any]
NODES = resource("", "v1", "nodes")
PODS = resource("", "v1", "pods")
LEASES = resource("coordination.k8s.io", "v1", "leases")
LEASE_NAMESPACE = "kube-node-lease"
SIM_LABEL = "peapod.io/simulated"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _micro_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def node_cidr(index: int, base: str = "10.128.0.0/9") -> ipaddress.IPv4Network:
    """The /24 of simulated node ``index`` inside ``base``."""
    net = ipaddress.IPv4Network(base)
    if index >= net.num_addresses >> 8:
        raise ValueError(f"{base} has no /24 number {index}")
    return ipaddress.IPv4Network((int(net.network_address) + (index << 8), 24))


def sim_node(name: str, index: int, zones: int = 3) -> Obj:
    cidr = str(node_cidr(index))
    alloc = {"cpu": "4", "memory": "16Gi", "pods": "110", "ephemeral-storage": "100Gi"}
    now = _now()
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {
            "kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
            "topology.kubernetes.io/zone": f"zone-{index % zones}", SIM_LABEL: "true"}},
        "spec": {"podCIDR": cidr, "podCIDRs": [cidr]},
        "status": {
            "capacity": dict(alloc), "allocatable": dict(alloc),
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                            "message": "simulated node", "lastHeartbeatTime": now, "lastTransitionTime": now}],
            "addresses": [{"type": "InternalIP", "address": f"10.127.{index >> 8 & 255}.{index & 255}"},
                          {"type": "Hostname", "address": name}],
            "nodeInfo": {"kubeletVersion": "v1.33.0-peapod-sim", "operatingSystem": "linux",
                         "architecture": "amd64", "containerRuntimeVersion": "sim://0"},
        },
    }


def running_status(pod: Obj, host_ip: str, pod_ip: str) -> Obj:
    """The status a kubelet would report for ``pod`` once all its containers run and are ready."""
    now = _now()
    spec = pod.get("spec") or {}
    statuses = [{
        "name": c["name"], "image": c.get("image", ""), "imageID": "", "ready": True, "started": True,
        "restartCount": 0, "containerID": f"sim://{pod['metadata'].get('uid', '')}-{c['name']}",
        "state": {"running": {"startedAt": now}},
    } for c in spec.get("containers") or []]
    cond = [{"type": t, "status": "True", "lastTransitionTime": now}
            for t in ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled")]
    return {"phase": "Running", "conditions": cond, "hostIP": host_ip, "hostIPs": [{"ip": host_ip}],
            "podIP": pod_ip, "podIPs": [{"ip": pod_ip}], "startTime": now, "containerStatuses": statuses,
            "qosClass": (pod.get("status") or {}).get("qosClass") or "BestEffort"}


@dataclass
class _SimNode:
    name: str
    index: int
    host_ip: str
    cidr: ipaddress.IPv4Network
    used: dict[str, str] = field(default_factory=dict)  # pod uid -> ip

    def allocate(self, uid: str) -> str:
        """The pod's address: the lowest one of the node's /24 no live pod holds."""
        if uid in self.used:
            return self.used[uid]
        taken = set(self.used.values())
        for host in self.cidr.hosts():
            if str(host) not in taken:
                self.used[uid] = str(host)
                return str(host)
        raise RuntimeError(f"simulated node {self.name}: no address left in {self.cidr}")


class SimulatedNodes:
    """``count`` simulated nodes named ``{prefix}{i:05d}`` on the cluster ``client`` talks to."""

    def __init__(self, client: ApiClient, *, count: int, prefix: str = "sim-", clock: Clock | None = None,
                 lease_interval: float = 10.0, workers: int = 8, create_concurrency: int = 16) -> None:
        self.client = client
        self.count = count
        self.prefix = prefix
        self.clock = clock or RealClock()
        self.lease_interval = lease_interval
        self.workers = workers
        self.create_concurrency = create_concurrency
        self.nodes: dict[str, _SimNode] = {}
        self.status_writes = 0
        self.lease_renewals = 0
        self.deletes = 0
        self.errors = 0
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._queued: set[str] = set()
        self.informer: Informer | None = None
        self._tasks: list[asyncio.Task[None]] = []

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Register the Nodes and their Leases, then follow pods bound to them."""
        names = [f"{self.prefix}{i:05d}" for i in range(self.count)]
        for i, name in enumerate(names):
            node = sim_node(name, i)
            self.nodes[name] = _SimNode(name, i, node["status"]["addresses"][0]["address"], node_cidr(i))
        await self._each(names, self._register)
        self.informer = Informer(self.client, PODS, clock=self.clock)
        self.informer.add_handlers(on_add=self._enqueue, on_update=lambda _o, n: self._enqueue(n),
                                    on_delete=self._forget)
        self._tasks.append(asyncio.create_task(self.informer.run()))
        self._tasks.append(asyncio.create_task(self._renew_leases()))
        self._tasks += [asyncio.create_task(self._work()) for _ in range(self.workers)]
        await self.informer.synced.wait()

    async def stop(self, *, delete_nodes: bool = False) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._tasks.clear()
        if delete_nodes:
            await self._each(list(self.nodes), self._unregister)

    async def _each(self, names: list[str], fn: Any) -> None:
        it = iter(names)

        async def worker() -> None:
            for name in it:
                await fn(name)
        await asyncio.gather(*(worker() for _ in range(min(self.create_concurrency, len(names)) or 1)))

    async def _register(self, name: str) -> None:
        sim = self.nodes[name]
        try:
            await self.client.create(NODES, sim_node(name, sim.index))
        except ApiError as e:
            if e.code != 409:
                raise
        lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                 "metadata": {"name": name, "namespace": LEASE_NAMESPACE},
                 "spec": {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": _micro_now()}}
        try:
            await self.client.create(LEASES, lease, LEASE_NAMESPACE)
        except ApiError as e:
            if e.code != 409:
                raise

    async def _unregister(self, name: str) -> None:
        for info, ns in ((LEASES, LEASE_NAMESPACE), (NODES, None)):
            with contextlib.suppress(ApiError):
                await self.client.delete(info, name, ns)

    async def _renew_leases(self) -> None:
        """Every node renews its Lease once per interval, on a schedule of its own (spread evenly, as
        real kubelets drift apart), with several renewals in flight: one slow answer must not delay
        every other node's renewal past the node monitor's grace period."""
        names = list(self.nodes)
        step = self.lease_interval / max(1, len(names))
        start = self.clock.monotonic()
        due = {name: start + i * step for i, name in enumerate(names)}
        limit = asyncio.Semaphore(self.create_concurrency)
        inflight: set[asyncio.Task[None]] = set()

        async def renew(name: str) -> None:
            async with limit:
                try:
                    await self.client.patch(LEASES, name, {"spec": {"renewTime": _micro_now()}}, LEASE_NAMESPACE)
                    self.lease_renewals += 1
                except (ApiError, OSError, TimeoutError) as e:
                    self.errors += 1
                    log.debug("lease %s: %s", name, e)

        try:
            while True:
                now = self.clock.monotonic()
                for name in names:
                    if due[name] <= now:
                        due[name] += self.lease_interval
                        if due[name] <= now:  # fell behind: renew now, then keep the period
                            due[name] = now + self.lease_interval
                        task = asyncio.create_task(renew(name))
                        inflight.add(task)
                        task.add_done_callback(inflight.discard)
                await self.clock.sleep(max(0.0, min(due.values()) - self.clock.monotonic()))
        finally:
            for task in list(inflight):
                task.cancel()

    # -- pods ------------------------------------------------------------------------------------

    def _enqueue(self, pod: Obj) -> None:
        if (pod.get("spec") or {}).get("nodeName") not in self.nodes:
            return
        md = pod["metadata"]
        if not md.get("deletionTimestamp") and (pod.get("status") or {}).get("phase") == "Running":
            return
        key = f"{md.get('namespace')}/{md['name']}"
        if key not in self._queued:
            self._queued.add(key)
            self._queue.put_nowait(key)

    def _forget(self, pod: Obj) -> None:
        sim = self.nodes.get((pod.get("spec") or {}).get("nodeName") or "")
        if sim is not None:
            sim.used.pop(pod["metadata"].get("uid", ""), None)

    async def _work(self) -> None:
        assert self.informer is not None
        while True:
            key = await self._queue.get()
            self._queued.discard(key)
            pod = self.informer.get(key)
            if pod is None:
                continue
            try:
                await self._sync(pod)
            except ApiError as e:
                if e.code not in (404, 409):
                    self.errors += 1
                    log.debug("pod %s: %s", key, e.message)

    async def _sync(self, pod: Obj) -> None:
        md = pod["metadata"]
        sim = self.nodes[pod["spec"]["nodeName"]]
        if md.get("deletionTimestamp"):
            await self.client.delete(PODS, md["name"], md["namespace"], grace_period_seconds=0,
                                     preconditions={"uid": md["uid"]})
            self.deletes += 1
            return
        ip = sim.allocate(md["uid"])
        await self.client.patch(PODS, md["name"], {"status": running_status(pod, sim.host_ip, ip)},
                                md["namespace"], subresource="status")
        self.status_writes += 1
