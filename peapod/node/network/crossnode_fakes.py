"""Fakes for cross-node networking tests: a Node-only API client, an in-memory dataplane and firewall."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import replace
from typing import Any

from peapod.node.network.crossnode_plan import Changes, Observed, ObservedVtep


class FakeNodeClient:
    """list/watch/patch of v1 Nodes from an in-memory set (what CrossNodeNetwork's informer uses).

    ``set_nodes`` replaces the whole set and emits ADDED/MODIFIED/DELETED watch events; ``patch``
    applies a merge patch of metadata.annotations and records it in ``patches``."""

    def __init__(self, nodes: Sequence[Mapping[str, Any]] = ()) -> None:
        self.nodes: dict[str, dict[str, Any]] = {}
        self.rv = 1
        self.patches: list[tuple[str, dict[str, Any]]] = []
        self.fail_patch: Exception | None = None
        self._watchers: list[asyncio.Queue[tuple[str, dict[str, Any]]]] = []
        for n in nodes:
            self.nodes[n["metadata"]["name"]] = self._stamp(copy.deepcopy(dict(n)))

    def _stamp(self, obj: dict[str, Any]) -> dict[str, Any]:
        self.rv += 1
        obj.setdefault("metadata", {})["resourceVersion"] = str(self.rv)
        return obj

    def _emit(self, typ: str, obj: dict[str, Any]) -> None:
        for q in self._watchers:
            q.put_nowait((typ, copy.deepcopy(obj)))

    def set_nodes(self, nodes: Sequence[Mapping[str, Any]]) -> None:
        fresh = {n["metadata"]["name"]: copy.deepcopy(dict(n)) for n in nodes}
        for name in list(self.nodes):
            if name not in fresh:
                old = self.nodes.pop(name)
                self._emit("DELETED", self._stamp(old))
        for name, obj in fresh.items():
            old = self.nodes.get(name)
            if old is not None:
                strip = {**obj, "metadata": {k: v for k, v in obj["metadata"].items() if k != "resourceVersion"}}
                kept = {**old, "metadata": {k: v for k, v in old["metadata"].items() if k != "resourceVersion"}}
                if strip == kept:
                    continue
            self.nodes[name] = self._stamp(obj)
            self._emit("MODIFIED" if old is not None else "ADDED", self.nodes[name])

    async def list(self, info: Any, namespace: str | None = None, **_: Any) -> dict[str, Any]:
        return {"items": [copy.deepcopy(n) for n in self.nodes.values()],
                "metadata": {"resourceVersion": str(self.rv)}}

    async def watch(self, info: Any, namespace: str | None = None, **_: Any) -> AsyncIterator[tuple[str, Any]]:
        q: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()
        self._watchers.append(q)
        try:
            while True:
                yield await q.get()
        finally:
            self._watchers.remove(q)

    async def patch(self, info: Any, name: str, patch: Any, namespace: str | None = None, **_: Any) -> Any:
        if self.fail_patch is not None:
            raise self.fail_patch
        self.patches.append((name, copy.deepcopy(patch)))
        node = self.nodes[name]
        md = node.setdefault("metadata", {})
        for k, v in ((patch.get("metadata") or {}).get("annotations") or {}).items():
            ann = md.setdefault("annotations", {})
            if v is None:
                ann.pop(k, None)
            else:
                ann[k] = v
        self._stamp(node)
        self._emit("MODIFIED", node)
        return copy.deepcopy(node)


class FakeDataplane:
    """Holds an Observed and applies Changes to it; ``fail`` makes apply report an error."""

    def __init__(self, observed: Observed | None = None, *, underlay: int | None = 1500) -> None:
        self.state = observed or Observed()
        self.applied: list[Changes] = []
        self.forwarding = False
        self.underlay = underlay
        self.fail: str | None = None

    def enable_forwarding(self) -> None:
        self.forwarding = True

    async def underlay_mtu(self, node_ip: str) -> int | None:
        return self.underlay

    async def observe(self) -> Observed:
        return self.state

    async def apply(self, changes: Changes) -> list[str]:
        if changes.empty:
            return []
        self.applied.append(changes)
        if self.fail:
            return [self.fail]
        s = self.state
        vtep = s.vtep
        routes, fdb, neigh = set(s.routes), set(s.fdb), set(s.neigh)
        routes -= set(changes.del_routes)
        if changes.delete_vtep:
            vtep = None
            routes = {r for r in routes if not r.vxlan}
            fdb, neigh = set(), set()
        if changes.create_vtep:
            v = changes.create_vtep
            vtep = ObservedVtep(v.name, v.vni, v.port, v.local, v.mac, frozenset({v.address + "/32"}), v.mtu)
        if vtep is not None:
            addrs = (set(vtep.addresses) - set(changes.del_vtep_addresses)) | (
                {changes.add_vtep_address} if changes.add_vtep_address else set())
            vtep = replace(vtep, mac=changes.set_vtep_mac or vtep.mac, mtu=changes.set_vtep_mtu or vtep.mtu,
                           up=True if changes.set_vtep_up else vtep.up, addresses=frozenset(addrs))
        fdb = (fdb - set(changes.del_fdb)) | set(changes.set_fdb)
        neigh = (neigh - set(changes.del_neigh)) | set(changes.set_neigh)
        dsts = {r.dst for r in changes.set_routes}
        routes = {r for r in routes if r.dst not in dsts} | set(changes.set_routes)
        self.state = Observed(vtep=vtep, routes=frozenset(routes), fdb=frozenset(fdb), neigh=frozenset(neigh))
        return []

    async def remove_all(self) -> list[str]:
        self.state = Observed()
        return []


class FakeFirewall:
    def __init__(self) -> None:
        self.forward: tuple[str, ...] = ()
        self.nat: tuple[str, ...] = ()
        self.fail: Exception | None = None

    async def ensure(self, forward_rules: Sequence[str], nat_rules: Sequence[str]) -> bool:
        if self.fail:
            raise self.fail
        changed = (tuple(forward_rules), tuple(nat_rules)) != (self.forward, self.nat)
        self.forward, self.nat = tuple(forward_rules), tuple(nat_rules)
        return changed

    async def remove_all(self) -> None:
        self.forward, self.nat = (), ()
