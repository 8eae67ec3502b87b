"""Garbage collector: ownerReferences and cascading deletion (Background, Foreground, Orphan).

Kubernetes' semantics, level-triggered over informer caches:
- an object all of whose owners are gone is deleted (Background); dangling references to gone
  owners are removed when other owners remain;
- an owner being deleted with the ``foregroundDeletion`` finalizer gets its dependents deleted
  (in the foreground too) and loses the finalizer once no dependent with blockOwnerDeletion is left;
- an owner with the ``orphan`` finalizer has itself removed from its dependents' ownerReferences,
  then loses the finalizer.
"Gone" is confirmed with a live GET of the owner (the cache may lag behind a fresh owner).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from peapod.api.errors import ApiError
from peapod.api.resources import REGISTRY, ResourceInfo
from peapod.client.informer import object_key
from peapod.client.rest import ApiClient
from peapod.client.sharedinformer import InformerFactory, SharedInformer
from peapod.client.workqueue import WorkQueue
from peapod.clock import Clock
from peapod.controlplane.controllers.finalizers import remove_finalizer

log = logging.getLogger(__name__)

FOREGROUND = "foregroundDeletion"
ORPHAN = "orphan"
Obj = dict[str, Any]


def collectable_resources() -> list[ResourceInfo]:
    """Every listable resource except duplicates that share storage (events.k8s.io events)."""
    return [
        r for r in REGISTRY.resources
        if "watch" in r.verbs and "list" in r.verbs and not r.storage_resource
    ]


def split_api_version(api_version: str) -> tuple[str, str]:
    if "/" in api_version:
        g, v = api_version.split("/", 1)
        return g, v
    return "", api_version


class GarbageCollector:
    def __init__(
        self, client: ApiClient, *, clock: Clock, factory: InformerFactory | None = None
    ) -> None:
        self.client = client
        self.clock = clock
        self.queue = WorkQueue(clock=clock)
        informers = factory or InformerFactory(client, clock=clock)
        self.informers: dict[str, SharedInformer] = {}
        for info in collectable_resources():
            name = f"{info.resource}.{info.group}"
            self.informers[name] = informers.informer(info)
        # uid -> (informer name, key) of live objects, and owner uid -> dependent uids.
        self._where: dict[str, tuple[str, str]] = {}
        self._dependents: dict[str, set[str]] = {}
        for name, inf in self.informers.items():
            inf.add_handlers(
                on_add=lambda o, n=name: self._observe(n, o),
                on_update=lambda old, new, n=name: self._observe(n, new, old),
                on_delete=lambda o, n=name: self._forget(n, o),
            )

    # -- graph maintenance (handlers: cheap, only enqueue) ------------------------------------
    def _observe(self, inf: str, obj: Obj, old: Obj | None = None) -> None:
        md = obj["metadata"]
        uid = md.get("uid", "")
        self._where[uid] = (inf, object_key(obj))
        if old is not None:
            for ref in old["metadata"].get("ownerReferences", []):
                self._dependents.get(ref.get("uid", ""), set()).discard(uid)
        for ref in md.get("ownerReferences", []):
            self._dependents.setdefault(ref.get("uid", ""), set()).add(uid)
        if md.get("ownerReferences"):
            self.queue.add(uid)
        if md.get("deletionTimestamp") and (FOREGROUND in md.get("finalizers", []) or ORPHAN in
                                            md.get("finalizers", [])):
            self.queue.add(uid)

    def _forget(self, inf: str, obj: Obj) -> None:
        md = obj["metadata"]
        uid = md.get("uid", "")
        self._where.pop(uid, None)
        for ref in md.get("ownerReferences", []):
            owner = ref.get("uid", "")
            deps = self._dependents.get(owner)
            if deps is not None:
                deps.discard(uid)
                # An owner waiting on its dependents may now finish.
                if owner in self._where:
                    self.queue.add(owner)
        for dep in self._dependents.pop(uid, set()):
            self.queue.add(dep)

    def _lookup(self, uid: str) -> tuple[SharedInformer, Obj] | None:
        where = self._where.get(uid)
        if where is None:
            return None
        inf = self.informers[where[0]]
        obj = inf.get(where[1])
        if obj is None or obj["metadata"].get("uid") != uid:
            return None
        return inf, obj

    # -- the sync ----------------------------------------------------------------------------
    async def sync(self, uid: Any) -> None:
        found = self._lookup(uid)
        if found is None:
            return
        inf, obj = found
        md = obj["metadata"]
        finalizers = md.get("finalizers", [])
        if md.get("deletionTimestamp") and ORPHAN in finalizers:
            await self._orphan_dependents(inf.info, obj)
            return
        if md.get("deletionTimestamp") and FOREGROUND in finalizers:
            await self._delete_dependents_foreground(inf.info, obj)
            return
        if md.get("ownerReferences"):
            await self._check_owners(inf.info, obj)

    async def _owner_exists(self, namespace: str | None, ref: dict[str, Any]) -> bool | None:
        """True/False if the owner is there (same uid) or not; None when its kind is not served."""
        g, v = split_api_version(ref.get("apiVersion", ""))
        info = REGISTRY.by_kind(g, v, ref.get("kind", ""))
        if info is None:
            return None
        found = self._lookup(ref.get("uid", ""))
        if found is not None:
            return True
        try:
            live = await self.client.get(info, ref["name"], namespace if info.namespaced else None)
        except ApiError as e:
            if e.code == 404:
                return False
            raise
        return live["metadata"].get("uid") == ref.get("uid")

    async def _check_owners(self, info: ResourceInfo, obj: Obj) -> None:
        md = obj["metadata"]
        ns = md.get("namespace")
        refs = md.get("ownerReferences", [])
        absent: list[dict[str, Any]] = []
        for ref in refs:
            exists = await self._owner_exists(ns, ref)
            if exists is False:
                absent.append(ref)
        if not absent:
            return
        if len(absent) == len(refs):
            if md.get("deletionTimestamp"):
                return
            log.info("deleting %s %s: owners gone", info.kind, object_key(obj))
            try:
                await self.client.delete(
                    info, md["name"], ns, propagation_policy="Background",
                    preconditions={"uid": md["uid"]},
                )
            except ApiError as e:
                if e.code not in (404, 409):
                    raise
            return
        gone = {r.get("uid") for r in absent}
        patch = [{"op": "test", "path": "/metadata/uid", "value": md["uid"]},
                 {"op": "replace", "path": "/metadata/ownerReferences",
                  "value": [r for r in refs if r.get("uid") not in gone]}]
        await self._patch_ignoring_gone(info, md["name"], ns, patch)

    async def _patch_ignoring_gone(self, info: ResourceInfo, name: str, ns: str | None, patch: Any) -> None:
        try:
            await self.client.patch(info, name, patch, ns, patch_type="json")
        except ApiError as e:
            if e.code not in (404, 409, 422):
                raise

    def _dependent_objects(self, uid: str) -> list[tuple[SharedInformer, Obj]]:
        out = []
        for dep in list(self._dependents.get(uid, ())):
            found = self._lookup(dep)
            if found is not None:
                out.append(found)
        return out

    async def _orphan_dependents(self, info: ResourceInfo, owner: Obj) -> None:
        uid = owner["metadata"]["uid"]
        for dinf, dep in self._dependent_objects(uid):
            dmd = dep["metadata"]
            refs = dmd.get("ownerReferences", [])
            patch = [{"op": "test", "path": "/metadata/uid", "value": dmd["uid"]},
                     {"op": "replace", "path": "/metadata/ownerReferences",
                      "value": [r for r in refs if r.get("uid") != uid]}]
            await self._patch_ignoring_gone(dinf.info, dmd["name"], dmd.get("namespace"), patch)
        md = owner["metadata"]
        await remove_finalizer(self.client, info, md.get("namespace"), md["name"], ORPHAN, uid)

    async def _delete_dependents_foreground(self, info: ResourceInfo, owner: Obj) -> None:
        uid = owner["metadata"]["uid"]
        blocking = 0
        for dinf, dep in self._dependent_objects(uid):
            dmd = dep["metadata"]
            ref = next((r for r in dmd.get("ownerReferences", []) if r.get("uid") == uid), {})
            if ref.get("blockOwnerDeletion"):
                blocking += 1
            if dmd.get("deletionTimestamp"):
                continue
            try:
                await self.client.delete(
                    dinf.info, dmd["name"], dmd.get("namespace"), propagation_policy="Foreground",
                    preconditions={"uid": dmd["uid"]},
                )
            except ApiError as e:
                if e.code not in (404, 409):
                    raise
        if blocking == 0:
            md = owner["metadata"]
            await remove_finalizer(self.client, info, md.get("namespace"), md["name"], FOREGROUND, uid)

    async def run(self, workers: int = 2) -> None:
        tasks = [asyncio.create_task(inf.run()) for inf in self.informers.values()]
        try:
            await asyncio.gather(*(inf.synced.wait() for inf in self.informers.values()))
            await self.queue.run_workers(self.sync, workers)
        finally:
            for t in tasks:
                t.cancel()
