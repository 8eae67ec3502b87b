"""A fake ApiClient for the scheduler loop: list/watch from memory, binding and status patches recorded."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator
from typing import Any

from peapod.api.errors import ApiError
from peapod.api.resources import ResourceInfo


class FakeApi:
    def __init__(self) -> None:
        self.objects: dict[str, dict[str, dict[str, Any]]] = {"pods": {}, "nodes": {}, "namespaces": {}}
        self.rv = 1
        self.watchers: dict[str, list[asyncio.Queue[tuple[str, dict[str, Any]]]]] = {}
        self.bindings: list[tuple[str, str]] = []
        self.status_patches: list[tuple[str, dict[str, Any]]] = []
        self.events: list[dict[str, Any]] = []
        self.fail_binding: ApiError | None = None

    # -- test side ----------------------------------------------------------------------------
    @staticmethod
    def key(obj: dict[str, Any]) -> str:
        md = obj["metadata"]
        return f"{md['namespace']}/{md['name']}" if md.get("namespace") else md["name"]

    def put(self, resource: str, obj: dict[str, Any]) -> None:
        obj = copy.deepcopy(obj)
        self.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)
        k = self.key(obj)
        typ = "MODIFIED" if k in self.objects[resource] else "ADDED"
        self.objects[resource][k] = obj
        self._emit(resource, typ, obj)

    def remove(self, resource: str, key: str) -> None:
        obj = self.objects[resource].pop(key)
        self.rv += 1
        self._emit(resource, "DELETED", obj)

    def _emit(self, resource: str, typ: str, obj: dict[str, Any]) -> None:
        for q in self.watchers.get(resource, []):
            q.put_nowait((typ, copy.deepcopy(obj)))

    # -- ApiClient surface --------------------------------------------------------------------
    async def list(self, info: ResourceInfo, namespace: str | None = None, **_: Any) -> dict[str, Any]:
        items = [copy.deepcopy(o) for o in self.objects[info.resource].values()]
        return {"items": items, "metadata": {"resourceVersion": str(self.rv)}}

    async def watch(self, info: ResourceInfo, namespace: str | None = None,
                    **_: Any) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        q: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()
        self.watchers.setdefault(info.resource, []).append(q)
        try:
            while True:
                yield await q.get()
        finally:
            self.watchers[info.resource].remove(q)

    async def request(self, method: str, path: str, *, body: Any = None, **_: Any) -> Any:
        parts = path.strip("/").split("/")
        assert method == "POST" and parts[-1] == "binding", (method, path)
        ns, name = parts[3], parts[5]
        if self.fail_binding is not None:
            raise self.fail_binding
        assert body["kind"] == "Binding" and body["target"]["kind"] == "Node"
        pod = self.objects["pods"].get(f"{ns}/{name}")
        if pod is None:
            raise ApiError(404, "NotFound", f'pods "{name}" not found')
        if pod["spec"].get("nodeName"):
            raise ApiError(409, "Conflict", "already assigned")
        self.bindings.append((f"{ns}/{name}", body["target"]["name"]))
        pod = copy.deepcopy(pod)
        pod["spec"]["nodeName"] = body["target"]["name"]
        self.put("pods", pod)
        return {"kind": "Status", "status": "Success"}

    async def patch(self, info: ResourceInfo, name: str, patch: Any, namespace: str | None = None, *,
                    patch_type: str = "merge", subresource: str | None = None, **_: Any) -> dict[str, Any]:
        if info.resource == "events":
            return {}
        assert info.resource == "pods" and subresource == "status" and patch_type == "strategic"
        key = f"{namespace}/{name}"
        self.status_patches.append((key, patch))
        pod = copy.deepcopy(self.objects["pods"][key])
        pod.setdefault("status", {})["conditions"] = patch["status"]["conditions"]
        self.put("pods", pod)
        return pod

    async def create(self, info: ResourceInfo, obj: dict[str, Any], namespace: str | None = None,
                     **_: Any) -> dict[str, Any]:
        assert info.resource == "events"
        self.events.append(obj)
        return obj
