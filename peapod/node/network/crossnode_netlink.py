"""Cross-node networking, the netlink side: observe and change routes, the vxlan device, its fdb and
neighbour entries in the current network namespace.

Uses pyroute2 (``AsyncIPRoute``) rather than running ``ip``/``bridge``: netlink messages are
structured both ways (no parsing of command output), it is asyncio-native, and a resync is a few
dumps on one socket instead of a process per entry. Only things peapod made are ever deleted:
routes carry :data:`ROUTE_PROTO`, fdb/neigh entries live on peapod's own vxlan device.
"""

from __future__ import annotations

import errno
import logging
import socket
from pathlib import Path

from pyroute2 import AsyncIPRoute
from pyroute2.netlink.exceptions import NetlinkError

from peapod.node.network.crossnode_plan import (
    ROUTE_PROTO,
    VXLAN_DEVICE,
    VXLAN_OVERHEAD,
    Changes,
    Fdb,
    Neigh,
    Observed,
    ObservedVtep,
    Route,
)

log = logging.getLogger(__name__)

MAIN_TABLE = 254
RTNH_F_ONLINK = 4
NUD_PERMANENT = 0x80
NTF_SELF = 0x02  # the vxlan device's own fdb (pyroute2 would otherwise ask for a bridge master's)
IFF_UP = 1
_GONE = {errno.ENOENT, errno.ESRCH, errno.ENODEV, errno.EADDRNOTAVAIL}


class NetlinkDataplane:
    """Routes, vxlan device, fdb and neighbours of the namespace this process runs in."""

    def __init__(self, *, device: str = VXLAN_DEVICE, proc_sys: str = "/proc/sys") -> None:
        self.device = device
        self.proc_sys = Path(proc_sys)

    def enable_forwarding(self) -> None:
        """net.ipv4.ip_forward=1 (left on at stop: other things on the host may rely on it)."""
        p = self.proc_sys / "net/ipv4/ip_forward"
        if p.read_text().strip() != "1":
            p.write_text("1\n")

    async def underlay_mtu(self, node_ip: str) -> int | None:
        """The MTU of the device holding ``node_ip`` (None if no device has it)."""
        async with AsyncIPRoute() as ipr:
            idx = await _index_of_address(ipr, node_ip)
            if idx is None:
                return None
            links = [lk async for lk in await ipr.link("dump", index=idx)]
            return links[0].get("mtu") if links else None

    async def observe(self) -> Observed:
        async with AsyncIPRoute() as ipr:
            vtep, idx = await self._observe_vtep(ipr)
            routes: set[Route] = set()
            async for r in await ipr.route("dump", family=socket.AF_INET, table=MAIN_TABLE, proto=ROUTE_PROTO):
                if r.get("proto") != ROUTE_PROTO or r.get("table") != MAIN_TABLE or not r.get("gateway"):
                    continue
                dst = f"{r.get('dst') or '0.0.0.0'}/{r['dst_len']}"
                routes.add(Route(dst, r.get("gateway"), vxlan=idx is not None and r.get("oif") == idx))
            fdb: set[Fdb] = set()
            neigh: set[Neigh] = set()
            if idx is not None:
                async for f in await ipr.fdb("dump", ifindex=idx):
                    if f.get("ifindex") == idx and f.get("lladdr") and f.get("dst"):
                        fdb.add(Fdb(f.get("lladdr").lower(), f.get("dst")))
                async for n in await ipr.neigh("dump", ifindex=idx, family=socket.AF_INET):
                    if n.get("ifindex") == idx and n["state"] & NUD_PERMANENT and n.get("lladdr"):
                        neigh.add(Neigh(n.get("dst"), n.get("lladdr").lower()))
            return Observed(vtep=vtep, routes=frozenset(routes), fdb=frozenset(fdb), neigh=frozenset(neigh))

    async def _observe_vtep(self, ipr: AsyncIPRoute) -> tuple[ObservedVtep | None, int | None]:
        links = [lk async for lk in await ipr.link("dump", ifname=self.device)]
        if not links:
            return None, None
        lk = links[0]
        info = lk.get("linkinfo")
        kind = info.get("kind") if info else None
        data = info.get("data") if info else None
        idx = lk["index"]
        addrs = frozenset([
            f"{a.get('address')}/{a['prefixlen']}"
            async for a in await ipr.addr("dump", index=idx, family=socket.AF_INET)
        ])
        if kind != "vxlan" or data is None:  # someone else's device under our name: replace it
            return ObservedVtep(self.device, None, None, None, lk.get("address"), addrs), idx
        return ObservedVtep(
            name=self.device, vni=data.get("vxlan_id"), port=data.get("vxlan_port"),
            local=data.get("vxlan_local"), mac=(lk.get("address") or "").lower() or None, addresses=addrs,
            mtu=lk.get("mtu"), up=bool(lk["flags"] & IFF_UP),
        ), idx

    async def apply(self, changes: Changes) -> list[str]:
        """Carry out ``changes``; returns errors (each step is tried, so one bad entry blocks nothing)."""
        errors: list[str] = []
        async with AsyncIPRoute() as ipr:
            for r in changes.del_routes:
                await _step(errors, f"del route {r.dst}", ipr.route(
                    "del", dst=r.dst, gateway=r.gateway, proto=ROUTE_PROTO, table=MAIN_TABLE), gone_ok=True)
            if changes.delete_vtep:
                await _step(errors, f"del link {self.device}", ipr.link("del", ifname=self.device), gone_ok=True)
            if changes.create_vtep is not None:
                v = changes.create_vtep
                args = dict(ifname=v.name, kind="vxlan", vxlan_id=v.vni, vxlan_port=v.port, vxlan_local=v.local,
                            vxlan_learning=0, address=v.mac)
                under = await _index_of_address(ipr, v.local)
                if under is not None:
                    args["vxlan_link"] = under
                if v.mtu:
                    args["mtu"] = v.mtu
                await _step(errors, f"add link {v.name}", ipr.link("add", **args))
            idx = _first(await ipr.link_lookup(ifname=self.device))
            if idx is not None:
                if changes.set_vtep_mac:
                    await _step(errors, "set vtep mac", ipr.link("set", index=idx, address=changes.set_vtep_mac))
                if changes.set_vtep_mtu:
                    await _step(errors, "set vtep mtu", ipr.link("set", index=idx, mtu=changes.set_vtep_mtu))
                for a in changes.del_vtep_addresses:
                    ip, plen = a.split("/")
                    await _step(errors, f"del addr {a}", ipr.addr("del", index=idx, address=ip, prefixlen=int(plen)),
                                gone_ok=True)
                addr = changes.create_vtep.address + "/32" if changes.create_vtep else changes.add_vtep_address
                if addr:
                    ip, plen = addr.split("/")
                    await _step(errors, f"add addr {addr}", ipr.addr("replace", index=idx, address=ip,
                                                                     prefixlen=int(plen)))
                if changes.create_vtep or changes.set_vtep_up:
                    await _step(errors, "vtep up", ipr.link("set", index=idx, state="up"))
            for f in changes.del_fdb:
                if idx is not None:
                    await _step(errors, f"del fdb {f.mac}", ipr.fdb("del", ifindex=idx, lladdr=f.mac, dst=f.dst),
                                gone_ok=True)
            for n in changes.del_neigh:
                if idx is not None:
                    await _step(errors, f"del neigh {n.ip}", ipr.neigh("del", dst=n.ip, lladdr=n.mac, ifindex=idx),
                                gone_ok=True)
            for f in changes.set_fdb:
                if idx is None:
                    errors.append(f"fdb {f.mac}: no {self.device}")
                    continue
                await _step(errors, f"fdb {f.mac} dst {f.dst}", ipr.fdb(
                    "replace", ifindex=idx, lladdr=f.mac, dst=f.dst, state=NUD_PERMANENT, flags=NTF_SELF))
            for n in changes.set_neigh:
                if idx is None:
                    errors.append(f"neigh {n.ip}: no {self.device}")
                    continue
                await _step(errors, f"neigh {n.ip}", ipr.neigh(
                    "replace", dst=n.ip, lladdr=n.mac, ifindex=idx, state=NUD_PERMANENT))
            for r in changes.set_routes:
                if r.vxlan:
                    if idx is None:
                        errors.append(f"route {r.dst}: no {self.device}")
                        continue
                    call = ipr.route("replace", dst=r.dst, gateway=r.gateway, oif=idx, flags=RTNH_F_ONLINK,
                                     proto=ROUTE_PROTO, table=MAIN_TABLE)
                else:
                    call = ipr.route("replace", dst=r.dst, gateway=r.gateway, proto=ROUTE_PROTO, table=MAIN_TABLE)
                await _step(errors, f"route {r.dst} via {r.gateway}", call)
        return errors

    async def remove_all(self) -> list[str]:
        """Delete every route carrying ROUTE_PROTO and the vxlan device (with its fdb/neigh entries)."""
        obs = await self.observe()
        return await self.apply(Changes(del_routes=tuple(sorted(obs.routes)), delete_vtep=obs.vtep is not None))


async def _step(errors: list[str], what: str, call: object, *, gone_ok: bool = False) -> None:
    try:
        await call  # type: ignore[misc]
    except NetlinkError as e:
        if gone_ok and e.code in _GONE:
            return
        errors.append(f"{what}: {e}")
    except (OSError, ValueError) as e:
        errors.append(f"{what}: {e}")


async def _index_of_address(ipr: AsyncIPRoute, ip: str) -> int | None:
    async for a in await ipr.addr("dump", family=socket.AF_INET):
        if a.get("address") == ip:
            return int(a["index"])
    return None


def _first(xs: list[int] | tuple[int, ...]) -> int | None:
    return xs[0] if xs else None


def vxlan_mtu(underlay: int | None) -> int | None:
    return underlay - VXLAN_OVERHEAD if underlay else None
