"""The hosts' network: one bridge on the machine, and per host a network namespace joined to it by a veth
pair (``eth0`` inside, with the host's address). Made and removed with iproute2's ``ip``."""

from __future__ import annotations

import ipaddress
import json
import subprocess
from collections.abc import Sequence
from pathlib import Path

from peapod.cluster import ClusterError

IP = "ip"


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    p = subprocess.run([IP, *args], capture_output=True, text=True)
    if check and p.returncode != 0:
        raise ClusterError(f"ip {' '.join(args)}: {p.stderr.strip()}")
    return p


def used_networks() -> list[ipaddress.IPv4Network]:
    """Every IPv4 network with an address or a route on the machine (the hosts' subnet and the pods'
    CIDR must overlap none of them)."""
    nets: list[ipaddress.IPv4Network] = []
    for ifc in json.loads(_ip("-j", "-4", "addr", "show").stdout or "[]"):
        for a in ifc.get("addr_info", []):
            nets.append(ipaddress.IPv4Interface(f"{a['local']}/{a['prefixlen']}").network)
    for r in json.loads(_ip("-j", "-4", "route", "show", "table", "all").stdout or "[]"):
        dst = r.get("dst", "")
        if dst and dst != "default" and r.get("type", "unicast") in ("unicast", ""):
            try:
                net = ipaddress.ip_network(dst if "/" in dst else f"{dst}/32", strict=False)
            except ValueError:
                continue
            if isinstance(net, ipaddress.IPv4Network) and not net.is_loopback:
                nets.append(net)
    return nets


def link_exists(name: str, netns: str | None = None) -> bool:
    args = ["-n", netns] if netns else []
    return _ip(*args, "link", "show", "dev", name, check=False).returncode == 0


def netns_exists(name: str) -> bool:
    return Path("/run/netns", name).exists()


def create_bridge(name: str, address: str, prefix: int) -> None:
    _ip("link", "add", name, "type", "bridge")
    # Traffic between hosts is bridged: keep it out of the machine's iptables (br_netfilter), whose
    # FORWARD policy is not ours to depend on.
    _ip("link", "set", name, "type", "bridge", "nf_call_iptables", "0", check=False)
    _ip("addr", "add", f"{address}/{prefix}", "dev", name)
    _ip("link", "set", name, "up")


def create_host(netns: str, veth: str, bridge: str, address: str, prefix: int) -> None:
    """A network namespace with loopback up and ``eth0`` (address/prefix) on ``bridge``. The caller
    records ``netns`` and ``veth`` before calling, so a failure half-way is still cleaned up."""
    _ip("netns", "add", netns)
    _ip("-n", netns, "link", "set", "lo", "up")
    _ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", netns)
    _ip("link", "set", veth, "master", bridge, "up")
    _ip("-n", netns, "addr", "add", f"{address}/{prefix}", "dev", "eth0")
    _ip("-n", netns, "link", "set", "eth0", "up")
    # A host forwards between its pods' bridge and eth0 (routes to other nodes' pods).
    subprocess.run(["nsenter", f"--net=/run/netns/{netns}", "sysctl", "-qw", "net.ipv4.ip_forward=1"],
                   capture_output=True)


def set_link(veth: str, up: bool) -> None:
    """Sever (down) or restore (up) a host's only link to the others and to the machine."""
    _ip("link", "set", veth, "up" if up else "down")


def delete_host(netns: str, veth: str) -> list[str]:
    """Remove a host's namespace (with every interface, route and vxlan device inside) and its veth."""
    removed: list[str] = []
    if netns_exists(netns):
        _ip("netns", "del", netns, check=False)
        removed.append(f"netns {netns}")
    if link_exists(veth):
        _ip("link", "del", veth, check=False)
        removed.append(f"link {veth}")
    return removed


def delete_bridge(name: str) -> list[str]:
    if link_exists(name):
        _ip("link", "del", name, check=False)
        return [f"bridge {name}"]
    return []


def links(netns: str | None = None) -> list[str]:
    args = ["-n", netns] if netns else []
    out = _ip(*args, "-j", "link", "show", check=False).stdout or "[]"
    return [ln["ifname"] for ln in json.loads(out)]


def routes_via(names: Sequence[str]) -> list[str]:
    """Routes of the machine that use any of the given interfaces (expected: none after ``down``)."""
    out = _ip("-j", "route", "show", "table", "all", check=False).stdout or "[]"
    return [json.dumps(r) for r in json.loads(out) if r.get("dev") in names]
