"""Namespace controller: a Terminating namespace loses all its content, then its finalizer.

Like Kubernetes' namespace lifecycle controller: delete every namespaced resource in the
namespace, wait until they are gone (pods may take their grace period), then call
``/finalize`` to drop the ``kubernetes`` finalizer; the API server then removes the namespace.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from peapod.api.errors import ApiError
from peapod.api.resources import REGISTRY, ResourceInfo, api_path, resource
from peapod.client.rest import ApiClient
from peapod.client.sharedinformer import InformerFactory
from peapod.client.workqueue import WorkQueue
from peapod.clock import Clock

log = logging.getLogger(__name__)

NAMESPACES = resource("", "v1", "namespaces")
RECHECK_SECONDS = 1.0


def namespaced_content() -> list[ResourceInfo]:
    return [
        r for r in REGISTRY.resources
        if r.namespaced and "deletecollection" in r.verbs and not r.storage_resource
    ]


class NamespaceController:
    def __init__(self, client: ApiClient, *, clock: Clock, factory: InformerFactory | None = None) -> None:
        self.client = client
        self.clock = clock
        self.queue = WorkQueue(clock=clock)
        informers = factory or InformerFactory(client, clock=clock)
        self.informer = informers.informer(NAMESPACES)
        self.informer.add_handlers(
            on_add=self._enqueue, on_update=lambda _old, new: self._enqueue(new),
        )

    def _enqueue(self, ns: dict[str, Any]) -> None:
        if ns["metadata"].get("deletionTimestamp"):
            self.queue.add(ns["metadata"]["name"])

    async def sync(self, name: Any) -> None:
        ns = self.informer.get(name)
        if ns is None or not ns["metadata"].get("deletionTimestamp"):
            return
        if "kubernetes" not in ns.get("spec", {}).get("finalizers", []):
            return
        remaining = 0
        for info in namespaced_content():
            try:
                await self.client.request(
                    "DELETE", api_path(info, name), body={"propagationPolicy": "Background"}
                )
                left = await self.client.list(info, name, limit=1)
            except ApiError as e:
                if e.code in (404, 405):
                    continue
                raise
            remaining += len(left.get("items", []))
        if remaining:
            self.queue.add_after(name, RECHECK_SECONDS)
            return
        await self._finalize(name)

    async def _finalize(self, name: str) -> None:
        for _ in range(5):
            try:
                ns = await self.client.get(NAMESPACES, name)
            except ApiError as e:
                if e.code == 404:
                    return
                raise
            spec = ns.setdefault("spec", {})
            spec["finalizers"] = [f for f in spec.get("finalizers", []) if f != "kubernetes"]
            try:
                await self.client.request("PUT", api_path(NAMESPACES, None, name, "finalize"), body=ns)
                log.info("namespace %s finalized", name)
                return
            except ApiError as e:
                if e.code == 404:
                    return
                if e.code != 409:
                    raise

    async def run(self, workers: int = 1) -> None:
        task = asyncio.create_task(self.informer.run())
        try:
            await self.informer.synced.wait()
            await self.queue.run_workers(self.sync, workers)
        finally:
            task.cancel()
