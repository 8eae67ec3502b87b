"""Cross-node pod networking: routes to every other node's pod CIDR, in host-gw or vxlan mode.

Level-triggered like a controller (DESIGN example 1): an Informer on v1 Nodes only marks the state
dirty; one loop computes the desired state from all Nodes (:func:`crossnode_plan.plan`), observes
what is installed, applies the difference, and repeats every ``resync_period`` to repair drift.
What peapod installed is recognisable without a record (routes carry a protocol number of their own,
fdb/neigh entries sit on peapod's own vxlan device, iptables rules in peapod's own chains), so a
restarted agent re-adopts it, and :meth:`CrossNodeNetwork.stop` removes all of it.

Pieces: crossnode_plan (pure: Nodes -> desired, diff), crossnode_netlink (routes, vxlan device, fdb,
neighbours via pyroute2), crossnode_iptables (FORWARD accept, optional masquerade out of the cluster).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

from peapod.api.resources import resource
from peapod.client.informer import Informer
from peapod.client.rest import ApiClient
from peapod.clock import Clock, RealClock
from peapod.node.network.crossnode_plan import (
    MODES,
    VXLAN_MAC_ANNOTATION,
    Changes,
    Desired,
    Observed,
    PlanInput,
    diff,
    plan,
    pod_mtu,
    vtep_mac_for,
)
from peapod.node.network.types import NetworkError

log = logging.getLogger(__name__)

__all__ = ["MODES", "VXLAN_MAC_ANNOTATION", "CrossNodeNetwork", "Dataplane", "Firewall", "pod_mtu"]


class Dataplane(Protocol):
    def enable_forwarding(self) -> None: ...

    async def underlay_mtu(self, node_ip: str) -> int | None: ...

    async def observe(self) -> Observed: ...

    async def apply(self, changes: Changes) -> list[str]:
        """Carry out ``changes``; return the errors (each step is attempted)."""

    async def remove_all(self) -> list[str]: ...


class Firewall(Protocol):
    async def ensure(self, forward_rules: Sequence[str], nat_rules: Sequence[str]) -> bool: ...

    async def remove_all(self) -> None: ...


class CrossNodeNetwork:
    def __init__(
        self, client: ApiClient, *, node_name: str, node_ip: str, mode: str, cluster_cidr: str | None = None,
        clock: Clock = RealClock(), masquerade: bool = False, resync_period: float = 30.0,
        dataplane: Dataplane | None = None, firewall: Firewall | None = None,
    ) -> None:
        """``masquerade``: NAT pod traffic leaving the cluster CIDR (never pod-to-pod traffic).
        ``dataplane``/``firewall`` default to netlink and iptables in this process's namespace."""
        if mode not in MODES:
            raise ValueError(f"unknown cross-node network mode {mode!r} (want one of {MODES})")
        if ipaddress.ip_address(node_ip).version != 4:
            raise ValueError(f"node IP {node_ip} is not IPv4")
        if cluster_cidr is not None:
            cluster_cidr = str(ipaddress.ip_network(cluster_cidr))
        self.client = client
        self.node_name = node_name
        self.node_ip = node_ip
        self.mode = mode
        self.cluster_cidr = cluster_cidr
        self.clock = clock
        self.masquerade = masquerade
        self.resync_period = resync_period
        if dataplane is None:
            from peapod.node.network.crossnode_netlink import NetlinkDataplane

            dataplane = NetlinkDataplane()
        if firewall is None:
            from peapod.node.network.crossnode_iptables import IptablesFirewall

            firewall = IptablesFirewall()
        self.dataplane = dataplane
        self.firewall = firewall
        self.vtep_mac = vtep_mac_for(node_name)
        self.vtep_mtu: int | None = None
        self.informer: Informer | None = None
        self.syncs = 0  # completed sync passes
        self.last_errors: list[str] = []
        self._dirty = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._lock = asyncio.Lock()

    # -- lifecycle -------------------------------------------------------------------------------
    async def start(self) -> None:
        """Enable forwarding, start following Nodes; the first sync runs once the Node list arrived."""
        self.dataplane.enable_forwarding()
        if self.mode == "vxlan":
            under = await self.dataplane.underlay_mtu(self.node_ip)
            self.vtep_mtu = pod_mtu("vxlan", under) if under else None
        self.informer = Informer(self.client, resource("", "v1", "nodes"), clock=self.clock)
        self.informer.add_handlers(lambda _o: self._dirty.set(), lambda _o, _n: self._dirty.set(),
                                   lambda _o: self._dirty.set())
        self._tasks = [asyncio.create_task(self.informer.run(), name="crossnode-informer"),
                       asyncio.create_task(self._loop(), name="crossnode-sync")]

    async def stop(self) -> None:
        """Stop following Nodes and remove every route, device, fdb/neigh entry and rule made."""
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        self._tasks = []
        async with self._lock:
            errors = await self.dataplane.remove_all()
            try:
                await self.firewall.remove_all()
            except Exception as e:
                errors.append(f"firewall: {e}")
        if errors:
            raise NetworkError("cross-node network cleanup: " + "; ".join(errors))

    # -- the level-triggered step ----------------------------------------------------------------
    def desired(self, nodes: Iterable[Mapping[str, Any]]) -> Desired:
        return plan(PlanInput(node_name=self.node_name, node_ip=self.node_ip, mode=self.mode,
                              cluster_cidr=self.cluster_cidr, masquerade=self.masquerade,
                              vtep_mac=self.vtep_mac, vtep_mtu=self.vtep_mtu), nodes)

    async def sync(self, nodes: Sequence[Mapping[str, Any]]) -> list[str]:
        """Make the dataplane match ``nodes`` (all Nodes); returns what failed (empty: all done)."""
        async with self._lock:
            want = self.desired(nodes)
            errors = await self.dataplane.apply(diff(want, await self.dataplane.observe()))
            try:
                await self.firewall.ensure(want.forward_rules, want.nat_rules)
            except Exception as e:
                errors.append(f"firewall: {e}")
            if want.vtep is not None:
                errors.extend(await self._publish_mac(nodes))
            self.syncs += 1
            self.last_errors = errors
            if errors:
                log.warning("cross-node network: %s", "; ".join(errors))
            return errors

    async def _publish_mac(self, nodes: Sequence[Mapping[str, Any]]) -> list[str]:
        """Put this node's vxlan MAC on its Node (node authorization lets a node patch its own)."""
        me = next((n for n in nodes if (n.get("metadata") or {}).get("name") == self.node_name), None)
        if me is None:
            return []
        if ((me["metadata"].get("annotations") or {}).get(VXLAN_MAC_ANNOTATION)) == self.vtep_mac:
            return []
        try:
            await self.client.patch(resource("", "v1", "nodes"), self.node_name,
                                    {"metadata": {"annotations": {VXLAN_MAC_ANNOTATION: self.vtep_mac}}})
        except Exception as e:
            return [f"publish {VXLAN_MAC_ANNOTATION}: {e}"]
        return []

    async def _loop(self) -> None:
        assert self.informer is not None
        backoff = 1.0
        wait = self.resync_period
        while True:
            await self._wait(wait)
            if not self.informer.synced.is_set():
                wait = self.resync_period
                continue
            self._dirty.clear()
            try:
                errors = await self.sync(self.informer.list())
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.exception("cross-node network sync failed")
                errors = [str(e)]
            if errors:
                wait = min(backoff, self.resync_period)
                backoff = min(backoff * 2, self.resync_period)
            else:
                wait, backoff = self.resync_period, 1.0

    async def _wait(self, timeout: float) -> None:
        """Until a Node changed or ``timeout`` seconds passed on the clock."""
        if self._dirty.is_set():
            return
        kicked = asyncio.ensure_future(self._dirty.wait())
        timer = asyncio.ensure_future(self.clock.sleep(timeout))
        try:
            await asyncio.wait({kicked, timer}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in (kicked, timer):
                t.cancel()
            for t in (kicked, timer):
                with contextlib.suppress(asyncio.CancelledError):
                    await t
