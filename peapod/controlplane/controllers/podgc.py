"""Pod garbage collection (Kubernetes' podgc): pods bound to a node that no longer exists are deleted.

A node missing from the cache is confirmed gone with a live GET after a quarantine (a node may be
re-registering), then its pods are force-deleted: nobody is left to finish their termination.
Terminating pods that were never scheduled are force-deleted too, for the same reason.
"""

from __future__ import annotations

import asyncio
import logging

import aiohttp

from peapod.api.errors import ApiError
from peapod.api.resources import resource
from peapod.client.rest import ApiClient
from peapod.client.sharedinformer import InformerFactory
from peapod.clock import Clock
from peapod.controlplane.controllers.controller_utils import Obj, meta

log = logging.getLogger(__name__)

NODES = resource("", "v1", "nodes")
PODS = resource("", "v1", "pods")


def orphaned(pods: list[Obj], nodes: set[str]) -> dict[str, list[Obj]]:
    """Pods bound to nodes not in ``nodes``, by node name."""
    out: dict[str, list[Obj]] = {}
    for p in pods:
        node = (p.get("spec") or {}).get("nodeName")
        if node and node not in nodes:
            out.setdefault(node, []).append(p)
    return out


def unscheduled_terminating(pods: list[Obj]) -> list[Obj]:
    return [p for p in pods if meta(p).get("deletionTimestamp") and not (p.get("spec") or {}).get("nodeName")]


class PodGC:
    def __init__(
        self, client: ApiClient, *, clock: Clock, quarantine: float = 40.0, period: float = 20.0,
        factory: InformerFactory | None = None,
    ) -> None:
        self.client = client
        self.clock = clock
        self.quarantine = quarantine
        self.period = period
        informers = factory or InformerFactory(client, clock=clock)
        self.nodes = informers.informer(NODES)
        self.pods = informers.informer(PODS)
        self._missing_since: dict[str, float] = {}

    async def gc_once(self) -> None:
        now = self.clock.monotonic()
        known = {meta(n)["name"] for n in self.nodes.list()}
        pods = self.pods.list()
        by_node = orphaned(pods, known)
        self._missing_since = {n: t for n, t in self._missing_since.items() if n in by_node}
        for node, node_pods in by_node.items():
            since = self._missing_since.setdefault(node, now)
            if now - since < self.quarantine or not await self._node_gone(node):
                continue
            for pod in node_pods:
                log.info("pod %s/%s is bound to node %s, which is gone: deleting",
                         meta(pod).get("namespace"), meta(pod)["name"], node)
                await self._force_delete(pod)
        for pod in unscheduled_terminating(pods):
            await self._force_delete(pod)

    async def _node_gone(self, name: str) -> bool:
        try:
            await self.client.get(NODES, name)
        except ApiError as e:
            if e.code == 404:
                return True
            raise
        return False

    async def _force_delete(self, pod: Obj) -> None:
        md = meta(pod)
        try:
            await self.client.delete(PODS, md["name"], md.get("namespace"), grace_period_seconds=0,
                                     preconditions={"uid": md["uid"]})
        except ApiError as e:
            if e.code not in (404, 409):
                raise

    async def run(self) -> None:
        tasks = [asyncio.create_task(self.nodes.run()), asyncio.create_task(self.pods.run())]
        try:
            await self.nodes.synced.wait()
            await self.pods.synced.wait()
            while True:
                try:
                    await self.gc_once()
                except (ApiError, OSError, TimeoutError, aiohttp.ClientError) as e:
                    log.info("pod gc: %s", e)
                await self.clock.sleep(self.period)
        finally:
            for t in tasks:
                t.cancel()
