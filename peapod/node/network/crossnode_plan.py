"""Cross-node pod networking, the pure part: Node objects -> desired routes/fdb/neigh/firewall rules,
and the diff between desired and observed dataplane state.

No I/O here (DESIGN example 3, plan then act). The applier (crossnode_netlink, crossnode_iptables)
observes what is installed and carries out a :class:`Changes`; this module decides.

Two modes, as flannel has them:

* ``host-gw``: for every other node, ``route <podCIDR> via <InternalIP>``. The next hop must be on a
  shared segment (the kernel refuses an unreachable gateway).
* ``vxlan``: one kernel vxlan device per node (:data:`VXLAN_DEVICE`, VNI 1, UDP 8472, ``nolearning``),
  addressed with the first address of the node's pod CIDR as a /32 (flannel's scheme). For each
  remote node: fdb ``<remote MAC> dst <remote InternalIP>``, a permanent neighbour
  ``<remote vtep IP> lladdr <remote MAC>`` and ``route <podCIDR> via <remote vtep IP> dev vxlan onlink``.
  Each node publishes its device's MAC in the :data:`VXLAN_MAC_ANNOTATION` annotation of its Node.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

MODES = ("host-gw", "vxlan")
VXLAN_DEVICE = "peapod.vxlan"
VXLAN_VNI = 1
VXLAN_PORT = 8472  # the Linux kernel's (and flannel's) historic port, not IANA's 4789
VXLAN_OVERHEAD = 50  # outer IPv4 (20) + UDP (8) + VXLAN (8) + inner Ethernet (14)
VXLAN_MAC_ANNOTATION = "peapod.io/vxlan-mac"
# Routes peapod installs carry this rtnetlink protocol number, so they are found again after a
# restart (re-adoption) and on stop without a record on disk. Unused by iproute2's rt_protos.
ROUTE_PROTO = 0x9B
FORWARD_CHAIN = "PEAPOD-FORWARD"
NAT_CHAIN = "PEAPOD-POSTROUTING"
MULTICAST = "224.0.0.0/4"


@dataclass(frozen=True, order=True)
class NodeInfo:
    """What cross-node networking needs of one Node."""

    name: str
    pod_cidr: str | None
    ip: str | None  # InternalIP (IPv4)
    vxlan_mac: str | None = None


@dataclass(frozen=True, order=True)
class Route:
    dst: str  # network, e.g. 10.42.2.0/24
    gateway: str
    vxlan: bool = False  # dev peapod.vxlan onlink (else: the kernel picks the device of the gateway)


@dataclass(frozen=True, order=True)
class Fdb:
    mac: str
    dst: str  # remote node IP (the VXLAN underlay destination)


@dataclass(frozen=True, order=True)
class Neigh:
    ip: str
    mac: str


@dataclass(frozen=True)
class Vtep:
    """The local vxlan device as it should be."""

    name: str
    vni: int
    port: int
    local: str
    address: str  # the device's own IPv4 address (a /32)
    mac: str
    mtu: int | None = None  # None: leave the kernel's choice


@dataclass(frozen=True)
class ObservedVtep:
    name: str
    vni: int | None
    port: int | None
    local: str | None
    mac: str | None
    addresses: frozenset[str] = frozenset()  # "ip/prefixlen"
    mtu: int | None = None
    up: bool = True


@dataclass(frozen=True)
class Desired:
    vtep: Vtep | None = None
    routes: frozenset[Route] = frozenset()
    fdb: frozenset[Fdb] = frozenset()
    neigh: frozenset[Neigh] = frozenset()
    forward_rules: tuple[str, ...] = ()  # iptables rule specs for FORWARD_CHAIN (filter)
    nat_rules: tuple[str, ...] = ()  # for NAT_CHAIN (nat)
    skipped: tuple[str, ...] = ()  # why some nodes got nothing (for logs)


@dataclass(frozen=True)
class Observed:
    vtep: ObservedVtep | None = None
    routes: frozenset[Route] = frozenset()  # only the ones carrying ROUTE_PROTO
    fdb: frozenset[Fdb] = frozenset()  # on the vxlan device
    neigh: frozenset[Neigh] = frozenset()  # permanent entries on the vxlan device


@dataclass(frozen=True)
class Changes:
    create_vtep: Vtep | None = None  # create (after deleting the old one if delete_vtep)
    delete_vtep: bool = False
    set_vtep_mac: str | None = None
    set_vtep_mtu: int | None = None
    set_vtep_up: bool = False
    add_vtep_address: str | None = None
    del_vtep_addresses: tuple[str, ...] = ()
    del_routes: tuple[Route, ...] = ()
    set_routes: tuple[Route, ...] = ()
    del_fdb: tuple[Fdb, ...] = ()
    set_fdb: tuple[Fdb, ...] = ()
    del_neigh: tuple[Neigh, ...] = ()
    set_neigh: tuple[Neigh, ...] = ()

    @property
    def empty(self) -> bool:
        return self == Changes()


@dataclass(frozen=True)
class PlanInput:
    node_name: str
    node_ip: str
    mode: str
    cluster_cidr: str | None = None
    masquerade: bool = False
    vtep_mac: str | None = None  # default: vtep_mac_for(node_name)
    vtep_mtu: int | None = None


# -- reading Nodes -------------------------------------------------------------------------------

def _ipv4_cidr(node: Mapping[str, Any]) -> str | None:
    spec = node.get("spec") or {}
    cands = [spec.get("podCIDR"), *(spec.get("podCIDRs") or [])]
    for c in cands:
        if not c:
            continue
        try:
            net = ipaddress.ip_network(c, strict=False)
        except ValueError:
            continue
        if net.version == 4:
            return str(net)
    return None


def _internal_ip(node: Mapping[str, Any]) -> str | None:
    for a in (node.get("status") or {}).get("addresses") or []:
        if a.get("type") != "InternalIP":
            continue
        try:
            ip = ipaddress.ip_address(a.get("address", ""))
        except ValueError:
            continue
        if ip.version == 4:
            return str(ip)
    return None


def _mac(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    parts = value.strip().lower().split(":")
    if len(parts) != 6 or not all(len(p) == 2 and all(c in "0123456789abcdef" for c in p) for p in parts):
        return None
    return ":".join(parts)


def node_info(node: Mapping[str, Any]) -> NodeInfo:
    md = node.get("metadata") or {}
    ann = md.get("annotations") or {}
    return NodeInfo(name=str(md.get("name", "")), pod_cidr=_ipv4_cidr(node), ip=_internal_ip(node),
                    vxlan_mac=_mac(ann.get(VXLAN_MAC_ANNOTATION)))


def vtep_mac_for(node_name: str) -> str:
    """A stable, locally administered unicast MAC for a node's vxlan device: a re-created device
    keeps its MAC, so peers' fdb/neigh entries stay right across agent restarts."""
    h = hashlib.sha256(b"peapod-vxlan:" + node_name.encode()).digest()
    return ":".join(f"{b:02x}" for b in (0x0A, *h[:5]))  # 0x0a: locally administered, unicast


def vtep_address(pod_cidr: str) -> str:
    """The vxlan device's own address: the pod CIDR's network address (flannel's choice; CNI
    host-local never hands it out, and the bridge takes the first usable address)."""
    return str(ipaddress.ip_network(pod_cidr, strict=False).network_address)


def pod_mtu(mode: str, underlay_mtu: int = 1500) -> int | None:
    """The MTU to give pods (CniConfig.mtu) so VXLAN-encapsulated packets fit the underlay."""
    return underlay_mtu - VXLAN_OVERHEAD if mode == "vxlan" else None


# -- planning ------------------------------------------------------------------------------------

def plan(inp: PlanInput, nodes: Iterable[Mapping[str, Any] | NodeInfo]) -> Desired:
    if inp.mode not in MODES:
        raise ValueError(f"unknown cross-node network mode {inp.mode!r} (want one of {MODES})")
    infos = sorted(n if isinstance(n, NodeInfo) else node_info(n) for n in nodes)
    me = next((n for n in infos if n.name == inp.node_name), None)
    own_cidr = me.pod_cidr if me else None
    own_net = ipaddress.ip_network(own_cidr) if own_cidr else None
    cluster = ipaddress.ip_network(inp.cluster_cidr) if inp.cluster_cidr else None
    routes: set[Route] = set()
    fdb: set[Fdb] = set()
    neigh: set[Neigh] = set()
    skipped: list[str] = []
    seen_dst: set[str] = set()
    for n in infos:
        if n.name == inp.node_name:
            continue
        why = _unusable(n, inp, own_net, cluster, seen_dst)
        if why:
            skipped.append(f"{n.name}: {why}")
            continue
        assert n.pod_cidr and n.ip
        seen_dst.add(n.pod_cidr)
        if inp.mode == "host-gw":
            routes.add(Route(n.pod_cidr, n.ip))
        else:
            assert n.vxlan_mac
            gw = vtep_address(n.pod_cidr)
            routes.add(Route(n.pod_cidr, gw, vxlan=True))
            fdb.add(Fdb(n.vxlan_mac, n.ip))
            neigh.add(Neigh(gw, n.vxlan_mac))
    vtep = None
    if inp.mode == "vxlan" and own_cidr:
        vtep = Vtep(VXLAN_DEVICE, VXLAN_VNI, VXLAN_PORT, inp.node_ip, vtep_address(own_cidr),
                    inp.vtep_mac or vtep_mac_for(inp.node_name), inp.vtep_mtu)
    # What counts as "inside the cluster": the cluster CIDR, or else every pod CIDR we know of.
    inside = [str(cluster)] if cluster else sorted({n.pod_cidr for n in infos if n.pod_cidr})
    forward = tuple(r for c in inside for r in (f"-s {c} -j ACCEPT", f"-d {c} -j ACCEPT"))
    nat: tuple[str, ...] = ()
    if inp.masquerade and own_cidr:
        nat = (*(f"-s {own_cidr} -d {c} -j RETURN" for c in inside),
               f"-s {own_cidr} ! -d {MULTICAST} -j MASQUERADE")
    return Desired(vtep=vtep, routes=frozenset(routes), fdb=frozenset(fdb), neigh=frozenset(neigh),
                   forward_rules=forward, nat_rules=nat, skipped=tuple(skipped))


def _unusable(n: NodeInfo, inp: PlanInput, own: ipaddress.IPv4Network | ipaddress.IPv6Network | None,
              cluster: ipaddress.IPv4Network | ipaddress.IPv6Network | None, seen: set[str]) -> str | None:
    if not n.pod_cidr:
        return "no spec.podCIDR"
    if not n.ip:
        return "no InternalIP"
    if n.ip == inp.node_ip:
        return f"InternalIP {n.ip} is this node's own"
    net = ipaddress.ip_network(n.pod_cidr)
    if own is not None and net.overlaps(own):
        return f"podCIDR {n.pod_cidr} overlaps this node's {own}"
    if cluster is not None and not net.subnet_of(cluster):  # type: ignore[arg-type]
        return f"podCIDR {n.pod_cidr} is outside the cluster CIDR {cluster}"
    if n.pod_cidr in seen:
        return f"podCIDR {n.pod_cidr} is another node's too"
    if inp.mode == "vxlan" and not n.vxlan_mac:
        return f"no {VXLAN_MAC_ANNOTATION} annotation yet"
    return None


# -- diffing -------------------------------------------------------------------------------------

def diff(desired: Desired, observed: Observed) -> Changes:
    """What to do to get from ``observed`` to ``desired`` (deletes are of things peapod made only)."""
    want, have = desired.vtep, observed.vtep
    create = None
    delete = False
    set_mac = set_mtu = add_addr = None
    set_up = False
    del_addrs: tuple[str, ...] = ()
    if want is None:
        delete = have is not None
    elif have is None or (have.vni, have.port, have.local) != (want.vni, want.port, want.local):
        delete = have is not None
        create = want
    else:
        if have.mac != want.mac:
            set_mac = want.mac
        if want.mtu is not None and have.mtu != want.mtu:
            set_mtu = want.mtu
        set_up = not have.up
        addr = f"{want.address}/32"
        if addr not in have.addresses:
            add_addr = addr
        del_addrs = tuple(sorted(a for a in have.addresses if a != addr))
    fresh = create is not None  # a new device has no fdb/neigh entries and no routes through it
    routes_have = set() if fresh else set(observed.routes)
    if fresh:
        routes_have |= {r for r in observed.routes if not r.vxlan}
    fdb_have = set() if fresh else set(observed.fdb)
    neigh_have = set() if fresh else set(observed.neigh)
    want_dsts = {r.dst for r in desired.routes}
    want_neigh_ips = {n.ip for n in desired.neigh}
    return Changes(
        create_vtep=create, delete_vtep=delete, set_vtep_mac=set_mac, set_vtep_mtu=set_mtu,
        set_vtep_up=set_up, add_vtep_address=add_addr, del_vtep_addresses=del_addrs,
        # a route whose dst is still wanted is replaced in place (no window without a route)
        del_routes=tuple(sorted(r for r in routes_have if r.dst not in want_dsts)),
        set_routes=tuple(sorted(desired.routes - routes_have)),
        del_fdb=tuple(sorted(fdb_have - desired.fdb)),
        set_fdb=tuple(sorted(desired.fdb - fdb_have)),
        del_neigh=tuple(sorted(n for n in neigh_have if n.ip not in want_neigh_ips)),
        set_neigh=tuple(sorted(desired.neigh - neigh_have)),
    )
