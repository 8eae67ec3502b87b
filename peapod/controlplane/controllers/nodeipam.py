"""Node IPAM (Kubernetes' range allocator): each Node gets a pod CIDR of its own from the cluster CIDR.

- ``CidrSet`` is the pure allocator: the cluster CIDR cut into blocks of ``/mask``; a block is
  handed out at most once until released; the search goes round from the last allocation, so a
  just-released block is not handed out again at once.
- The controller fills the set from every Node's ``spec.podCIDRs`` before it allocates anything
  (the informer lists all Nodes first), so a restarted or newly elected controller never hands out
  a block twice. A Node without a pod CIDR gets the next free block (a merge patch carrying the
  Node's resourceVersion, so a racing writer wins and the block goes back); a deleted Node's
  block is released. ``spec.podCIDR`` is set once: validation refuses changes.
- Pod CIDRs outside the cluster CIDR (``peapod up``'s own ``--pod-cidr``) are left alone; blocks
  they overlap are never handed out.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from typing import Any

from peapod.api.errors import ApiError
from peapod.api.resources import resource
from peapod.client.events import EventRecorder
from peapod.client.rest import ApiClient
from peapod.client.sharedinformer import InformerFactory
from peapod.client.workqueue import WorkQueue
from peapod.clock import Clock
from peapod.controlplane.controllers.controller_utils import Obj, meta

log = logging.getLogger(__name__)

NODES = resource("", "v1", "nodes")
DEFAULT_CLUSTER_CIDR = "10.42.0.0/16"
DEFAULT_NODE_MASK = 24
EXHAUSTED_RETRY = 30.0

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class CidrSetFullError(Exception):
    pass


class CidrSet:
    """Blocks of ``/mask`` in ``cluster_cidr``, each allocated at most once."""

    def __init__(self, cluster_cidr: str, mask: int) -> None:
        self.cluster = ipaddress.ip_network(cluster_cidr, strict=True)
        if not self.cluster.prefixlen <= mask <= self.cluster.max_prefixlen:
            raise ValueError(f"node CIDR mask /{mask} must lie between /{self.cluster.prefixlen} "
                             f"and /{self.cluster.max_prefixlen}")
        if mask - self.cluster.prefixlen > 24:
            raise ValueError(f"node CIDR mask /{mask} cuts {cluster_cidr} into too many blocks (max 2^24)")
        self.mask = mask
        self.size = 1 << (mask - self.cluster.prefixlen)
        self._used: set[int] = set()
        self._next = 0

    def __len__(self) -> int:
        return len(self._used)

    def _block(self, index: int) -> Network:
        step = 1 << (self.cluster.max_prefixlen - self.mask)
        addr = ipaddress.ip_address(int(self.cluster.network_address) + index * step)
        return ipaddress.ip_network(f"{addr}/{self.mask}")

    def _indexes(self, cidr: str) -> range:
        """Indexes of the blocks ``cidr`` overlaps (empty when outside the cluster CIDR)."""
        try:
            net = ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            return range(0)
        if net.version != self.cluster.version or not net.overlaps(self.cluster):
            return range(0)
        shift = self.cluster.max_prefixlen - self.mask
        base = int(self.cluster.network_address)
        first = max(int(net.network_address), base)
        last = min(int(net.broadcast_address), int(self.cluster.broadcast_address))
        return range((first - base) >> shift, ((last - base) >> shift) + 1)

    def occupy(self, cidr: str) -> None:
        self._used.update(self._indexes(cidr))

    def release(self, cidr: str) -> None:
        self._used.difference_update(self._indexes(cidr))

    def allocated(self, cidr: str) -> bool:
        idx = self._indexes(cidr)
        return len(idx) > 0 and all(i in self._used for i in idx)

    def allocate(self) -> str:
        for k in range(self.size):
            i = (self._next + k) % self.size
            if i not in self._used:
                self._used.add(i)
                self._next = (i + 1) % self.size
                return str(self._block(i))
        raise CidrSetFullError(f"no free /{self.mask} left in {self.cluster}")


def pod_cidrs(node: Obj) -> list[str]:
    spec = node.get("spec") or {}
    cidrs = [c for c in spec.get("podCIDRs") or [] if isinstance(c, str)]
    if not cidrs and isinstance(spec.get("podCIDR"), str) and spec["podCIDR"]:
        cidrs = [spec["podCIDR"]]
    return cidrs


class NodeIpamController:
    def __init__(
        self, client: ApiClient, *, clock: Clock, cluster_cidr: str = DEFAULT_CLUSTER_CIDR,
        node_cidr_mask_size: int = DEFAULT_NODE_MASK, recorder: EventRecorder | None = None,
        factory: InformerFactory | None = None,
    ) -> None:
        self.client = client
        self.clock = clock
        self.cidrs = CidrSet(cluster_cidr, node_cidr_mask_size)
        self.queue = WorkQueue(clock=clock)
        self.recorder = recorder or EventRecorder(client, component="node-controller", clock=clock)
        self.nodes = (factory or InformerFactory(client, clock=clock)).informer(NODES)
        self.nodes.add_handlers(on_add=self._seen, on_update=lambda _old, new: self._seen(new),
                                on_delete=self._deleted)

    def _seen(self, node: Obj) -> None:
        cidrs = pod_cidrs(node)
        for c in cidrs:
            self.cidrs.occupy(c)
        if not cidrs and not meta(node).get("deletionTimestamp"):
            self.queue.add(meta(node)["name"])

    def _deleted(self, node: Obj) -> None:
        for c in pod_cidrs(node):
            # Another Node may hold the same block (set by hand): keep it then.
            if not any(c in pod_cidrs(n) for n in self.nodes.list() if meta(n)["name"] != meta(node)["name"]):
                self.cidrs.release(c)

    async def sync(self, name: Any) -> None:
        node = self.nodes.get(name)
        if node is None or pod_cidrs(node) or meta(node).get("deletionTimestamp"):
            return
        try:
            cidr = self.cidrs.allocate()
        except CidrSetFullError as e:
            log.warning("node %s: %s", name, e)
            await self._event(node, "CIDRNotAvailable", f"Node {name} status is now: CIDRNotAvailable")
            self.queue.add_after(name, EXHAUSTED_RETRY)
            return
        patch = {"metadata": {"resourceVersion": meta(node).get("resourceVersion")},
                 "spec": {"podCIDR": cidr, "podCIDRs": [cidr]}}
        try:
            await self.client.patch(NODES, name, patch)
        except ApiError as e:
            self.cidrs.release(cidr)
            if e.code == 404:
                return
            raise  # a conflict (the Node changed): retried with the informer's newer copy
        except BaseException:
            self.cidrs.release(cidr)
            raise
        log.info("node %s: allocated pod CIDR %s", name, cidr)
        await self._event(node, "CIDRAssignmentSucceeded", f"Node {name} got pod CIDR {cidr}")

    async def _event(self, node: Obj, reason: str, message: str) -> None:
        try:
            await self.recorder.record(node, "Normal" if reason.endswith("Succeeded") else "Warning", reason, message)
        except Exception as e:  # events are best effort
            log.debug("node ipam event: %s", e)

    async def run(self, workers: int = 1) -> None:
        task = asyncio.create_task(self.nodes.run())
        try:
            await self.nodes.synced.wait()
            await self.queue.run_workers(self.sync, workers)
        finally:
            task.cancel()
