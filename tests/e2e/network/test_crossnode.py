"""Cross-node pod networking on real namespaces: 3 "hosts" (network namespaces on a bridge in the root
namespace, each with its own address), each with a CNI bridge pod network and one pod, and the real
CrossNodeNetwork (netlink + iptables) running inside each host under ``ip netns exec`` as an agent
would, fed Node objects by a fake API. Proves pod-to-pod TCP across hosts in both modes with source
IPs kept, masquerade only for traffic leaving the cluster CIDR, removal of a node's routes, and that
stop() leaves nothing behind.
"""

from __future__ import annotations

import ipaddress
import itertools
import json
import os
import queue
import random
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from peapod.node.network.crossnode_plan import ROUTE_PROTO, VXLAN_DEVICE, VXLAN_MAC_ANNOTATION

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)"),
    pytest.mark.skipif(not os.path.exists("/usr/lib/cni/bridge"), reason="CNI plugins not installed"),
]

REPO = Path(__file__).resolve().parents[3]
DRIVER = Path(__file__).with_name("crossnode_driver.py")
IP = shutil.which("ip") or "/usr/sbin/ip"
IPTABLES = shutil.which("iptables") or "/usr/sbin/iptables"
PORT = 8080
SERVER = (
    "import socket\n"
    "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    f"s.bind(('0.0.0.0', {PORT})); s.listen(16); print('ready', flush=True)\n"
    "while True:\n"
    "    c, a = s.accept(); c.sendall((a[0] + '\\n').encode()); c.close()\n"
)
CLIENT = (
    "import socket, sys\n"
    "s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1.5)\n"
    "print(s.recv(100).decode().strip())\n"
)
_counter = itertools.count()


def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, check=check, timeout=30)


def in_ns(ns: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run(IP, "netns", "exec", ns, *args, check=check)


def _taken() -> list[ipaddress.IPv4Network]:
    out = run(IP, "-4", "-o", "addr").stdout + run(IP, "-4", "route", "show", "table", "all").stdout
    nets = []
    for word in out.split():
        try:
            nets.append(ipaddress.IPv4Network(word, strict=False))
        except ValueError:
            continue
    return nets


def free_net(first_octets: range, prefix: int, rng: random.Random) -> ipaddress.IPv4Network:
    taken = _taken()
    for _ in range(200):
        second = rng.choice(first_octets)
        net = ipaddress.IPv4Network(f"10.{second}.{rng.randrange(256) if prefix > 16 else 0}.0/{prefix}")
        if not any(net.overlaps(t) for t in taken if t.prefixlen > 0):
            return net
    raise RuntimeError("no free private range")


@dataclass
class Host:
    index: int
    ns: str
    ip: str
    pod_ns: str
    pod_cidr: str
    node_name: str
    driver: subprocess.Popen[str] | None = None
    events: queue.Queue[dict[str, Any]] = field(default_factory=queue.Queue)
    pod_ip: str = ""
    mac: str | None = None
    server: subprocess.Popen[str] | None = None

    def node(self) -> dict[str, Any]:
        md: dict[str, Any] = {"name": self.node_name}
        if self.mac:
            md["annotations"] = {VXLAN_MAC_ANNOTATION: self.mac}
        return {"apiVersion": "v1", "kind": "Node", "metadata": md, "spec": {"podCIDR": self.pod_cidr},
                "status": {"addresses": [{"type": "InternalIP", "address": self.ip},
                                         {"type": "Hostname", "address": self.node_name}]}}

    def send(self, msg: dict[str, Any]) -> None:
        assert self.driver is not None and self.driver.stdin is not None
        self.driver.stdin.write(json.dumps(msg) + "\n")
        self.driver.stdin.flush()

    def wait_event(self, kind: str, timeout: float = 20) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            try:
                ev = self.events.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"{self.node_name}: no {kind!r} event; driver stderr:\n{self.stderr()}") from None
            if ev.get("event") == kind:
                return ev

    def stderr(self) -> str:
        if self.driver is None or self.driver.poll() is None:
            return "(running)"
        return self.driver.stderr.read() if self.driver.stderr else ""


class Lab:
    """N hosts + one outside machine on a bridge in the root namespace; everything removed in close()."""

    def __init__(self, tmp: Path, n: int, mode: str) -> None:
        rng = random.Random()
        tag = f"{os.getpid() % 10000:04d}{next(_counter)}"
        self.prefix = f"pcx{tag}"
        self.tmp = tmp
        self.mode = mode
        self.bridge = f"{self.prefix}b"
        self.namespaces: list[str] = []
        self.forward_rule: list[str] | None = None
        under = free_net(range(210, 240), 24, rng)
        self.cluster = free_net(range(150, 200), 16, rng)
        hosts_ips = list(under.hosts())
        self.hosts = [
            Host(i, f"{self.prefix}-h{i}", str(hosts_ips[i]), f"{self.prefix}-p{i}",
                 str(list(self.cluster.subnets(new_prefix=24))[i + 1]), f"node-{i}")
            for i in range(n)
        ]
        self.outside_ns = f"{self.prefix}-x"
        self.outside_ip = str(hosts_ips[200])
        self.plen = under.prefixlen

    # -- topology ---------------------------------------------------------------------------------
    def build(self) -> None:
        run(IP, "link", "add", self.bridge, "type", "bridge")
        run(IP, "link", "set", self.bridge, "up")
        if not run(IPTABLES, "-w", "-S", "FORWARD").stdout.startswith("-P FORWARD ACCEPT"):
            # the root namespace filters bridged traffic (br_netfilter) and drops by default: let ours through
            self.forward_rule = ["FORWARD", "-i", self.bridge, "-o", self.bridge, "-j", "ACCEPT"]
            run(IPTABLES, "-w", "-I", *self.forward_rule)
        for i, (ns, ip) in enumerate([*((h.ns, h.ip) for h in self.hosts), (self.outside_ns, self.outside_ip)]):
            run(IP, "netns", "add", ns)
            self.namespaces.append(ns)
            veth = f"{self.prefix}v{i}"
            run(IP, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
            run(IP, "link", "set", veth, "master", self.bridge, "up")
            in_ns(ns, IP, "addr", "add", f"{ip}/{self.plen}", "dev", "eth0")
            in_ns(ns, IP, "link", "set", "eth0", "up")
            in_ns(ns, IP, "link", "set", "lo", "up")
        for h in self.hosts:
            run(IP, "netns", "add", h.pod_ns)
            self.namespaces.append(h.pod_ns)

    def start_drivers(self, *, masquerade: bool) -> None:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        for h in self.hosts:
            args = [IP, "netns", "exec", h.ns, sys.executable, str(DRIVER), "--node-name", h.node_name,
                    "--node-ip", h.ip, "--mode", self.mode, "--cluster-cidr", str(self.cluster),
                    "--pod-cidr", h.pod_cidr, "--pod-netns", f"/run/netns/{h.pod_ns}",
                    "--data-dir", str(self.tmp / h.node_name)]
            if self.mode == "vxlan":
                args += ["--mtu", "1450"]
            if masquerade:
                args.append("--masquerade")
            h.driver = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True, cwd=REPO, env=env)
            threading.Thread(target=_pump, args=(h.driver, h.events), daemon=True).start()
        for h in self.hosts:
            h.pod_ip = h.wait_event("pod")["ip"]
            assert ipaddress.ip_address(h.pod_ip) in ipaddress.ip_network(h.pod_cidr)

    def start_servers(self) -> None:
        for ns, h in [*((h.pod_ns, h) for h in self.hosts), (self.outside_ns, None)]:
            p = subprocess.Popen([IP, "netns", "exec", ns, sys.executable, "-c", SERVER], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
            if h is not None:
                h.server = p
            else:
                self.outside_server = p
            assert p.stdout is not None and p.stdout.readline().strip() == "ready"

    def publish(self, hosts: list[Host]) -> None:
        """What the API server would do: every host sees the same Node set."""
        for h in self.hosts:
            h.send({"nodes": [x.node() for x in hosts]})

    # -- probes -----------------------------------------------------------------------------------
    def connect(self, src: Host, dst_ip: str) -> str | None:
        """The source address the server at dst_ip saw for a connection from src's pod (None: failed)."""
        r = in_ns(src.pod_ns, sys.executable, "-c", CLIENT, dst_ip, str(PORT), check=False)
        return r.stdout.strip() if r.returncode == 0 else None

    def eventually_connect(self, src: Host, dst_ip: str, timeout: float = 20) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            seen = self.connect(src, dst_ip)
            if seen:
                return seen
            time.sleep(0.2)
        raise AssertionError(f"{src.node_name} pod -> {dst_ip}: no connection\n{self.dump(src)}")

    def dump(self, h: Host) -> str:
        return "\n".join(in_ns(h.ns, *c, check=False).stdout for c in (
            (IP, "route"), (IP, "-d", "link", "show", VXLAN_DEVICE), ("bridge", "fdb", "show", "dev", VXLAN_DEVICE),
            (IP, "neigh"), (IPTABLES, "-S"), (IPTABLES, "-t", "nat", "-S")))

    def our_routes(self, h: Host) -> str:
        return in_ns(h.ns, IP, "route", "show", "proto", str(ROUTE_PROTO)).stdout

    # -- teardown ---------------------------------------------------------------------------------
    def close(self) -> None:
        for h in self.hosts:
            for p in (h.server, h.driver):
                _kill(p)
        _kill(getattr(self, "outside_server", None))
        for ns in reversed(self.namespaces):
            run(IP, "netns", "del", ns, check=False)
        run(IP, "link", "del", self.bridge, check=False)
        if self.forward_rule:
            run(IPTABLES, "-w", "-D", *self.forward_rule, check=False)


def _pump(p: subprocess.Popen[str], q: queue.Queue[dict[str, Any]]) -> None:
    assert p.stdout is not None
    for line in p.stdout:
        try:
            q.put(json.loads(line))
        except json.JSONDecodeError:
            q.put({"event": "junk", "line": line})


def _kill(p: subprocess.Popen[str] | None) -> None:
    if p is None or p.poll() is not None:
        return
    p.kill()  # `ip netns exec` execs the program, so this PID is the program itself
    p.wait(timeout=10)


@pytest.fixture
def lab_factory(tmp_path: Path) -> Iterator[Any]:
    labs: list[Lab] = []

    def make(mode: str, n: int = 3) -> Lab:
        lab = Lab(tmp_path, n, mode)
        labs.append(lab)
        lab.build()
        return lab

    yield make
    for lab in labs:
        lab.close()
    leftovers = [ns for ns in run(IP, "netns", "list").stdout.split() if any(ns.startswith(lb.prefix) for lb in labs)]
    assert leftovers == []


def wait_until(cond: Any, what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out: {what}")


@pytest.mark.parametrize("mode", ["host-gw", "vxlan"])
def test_pod_to_pod_across_hosts(lab_factory: Any, mode: str) -> None:
    lab: Lab = lab_factory(mode)
    h0, h1, h2 = lab.hosts
    lab.start_drivers(masquerade=True)
    lab.start_servers()
    lab.publish(lab.hosts)
    if mode == "vxlan":
        # each agent publishes its device's MAC on its own Node; the "API" hands it to everyone
        for h in lab.hosts:
            ev = h.wait_event("patch")
            assert ev["name"] == h.node_name
            h.mac = ev["patch"]["metadata"]["annotations"][VXLAN_MAC_ANNOTATION]
        lab.publish(lab.hosts)

    # pod-to-pod by IP, both directions, the server sees the client pod's own address (no NAT)
    for src, dst in [(h0, h1), (h1, h0), (h2, h0), (h0, h2), (h1, h2)]:
        assert lab.eventually_connect(src, dst.pod_ip) == src.pod_ip, f"{src.node_name} -> {dst.node_name}"
    # traffic leaving the cluster CIDR is masqueraded to the host's address
    assert lab.eventually_connect(h1, lab.outside_ip) == h1.ip
    for h in lab.hosts:
        in_ns(h.ns, "sh", "-c", "test $(cat /proc/sys/net/ipv4/ip_forward) = 1")
    if mode == "vxlan":
        link = in_ns(h0.ns, IP, "-d", "link", "show", VXLAN_DEVICE).stdout
        assert "vxlan id 1 " in link and f"local {h0.ip}" in link and "dstport 8472" in link, link
        assert h1.mac and h1.mac in in_ns(h0.ns, "bridge", "fdb", "show", "dev", VXLAN_DEVICE).stdout
        # traffic really goes through the vxlan device, not some other path
        assert f"dev {VXLAN_DEVICE}" in in_ns(h0.ns, IP, "route", "get", h1.pod_ip).stdout
    else:
        assert f"via {h1.ip} dev eth0" in in_ns(h0.ns, IP, "route", "get", h1.pod_ip).stdout

    # node-2 goes away: its routes (and vxlan entries) go away everywhere else
    lab.publish([h0, h1])
    cidr2 = h2.pod_cidr
    wait_until(lambda: cidr2 not in lab.our_routes(h0) and cidr2 not in lab.our_routes(h1), "node-2 routes removed")
    assert h1.pod_cidr in lab.our_routes(h0)
    if mode == "vxlan":
        assert h2.mac and h2.mac not in in_ns(h0.ns, "bridge", "fdb", "show", "dev", VXLAN_DEVICE).stdout
        assert str(ipaddress.ip_network(cidr2).network_address) not in in_ns(
            h0.ns, IP, "neigh", "show", "dev", VXLAN_DEVICE).stdout
    assert lab.connect(h0, h2.pod_ip) is None
    assert lab.eventually_connect(h0, h1.pod_ip) == h0.pod_ip

    # drift: someone deletes a route; the periodic resync (2 s here) puts it back
    in_ns(h0.ns, IP, "route", "del", h1.pod_cidr)
    wait_until(lambda: h1.pod_cidr in lab.our_routes(h0), "route repaired by resync")

    # stop(): nothing of ours is left in any host
    for h in lab.hosts:
        h.send({"stop": True})
    for h in lab.hosts:
        assert h.wait_event("stopped")["error"] is None
        assert h.driver is not None and h.driver.wait(timeout=20) == 0
        assert lab.our_routes(h) == ""
        assert in_ns(h.ns, IP, "link", "show", VXLAN_DEVICE, check=False).returncode != 0
        rules = in_ns(h.ns, IPTABLES, "-w", "-S").stdout + in_ns(h.ns, IPTABLES, "-w", "-t", "nat", "-S").stdout
        assert "PEAPOD" not in rules, rules
        assert in_ns(h.ns, IP, "link", "show", "peapod0", check=False).returncode != 0
    assert lab.connect(h0, h1.pod_ip) is None


def test_restart_re_adopts_installed_state(lab_factory: Any) -> None:
    """A killed agent leaves its routes; the next one takes them over without a gap and stop() removes them."""
    lab: Lab = lab_factory("vxlan", 2)
    h0, h1 = lab.hosts
    lab.start_drivers(masquerade=False)
    lab.start_servers()
    lab.publish(lab.hosts)
    for h in lab.hosts:
        h.mac = h.wait_event("patch")["patch"]["metadata"]["annotations"][VXLAN_MAC_ANNOTATION]
    lab.publish(lab.hosts)
    assert lab.eventually_connect(h0, h1.pod_ip) == h0.pod_ip
    before = in_ns(h0.ns, IP, "-d", "link", "show", VXLAN_DEVICE).stdout
    routes = lab.our_routes(h0)
    # kill host 0's agent (no cleanup runs), keep its pod: the CNI network stays
    _kill(h0.driver)
    h0.events = queue.Queue()
    assert lab.our_routes(h0) == routes
    code = f"""
import asyncio, json, sys
from peapod.node.network.crossnode import CrossNodeNetwork
from peapod.node.network.crossnode_fakes import FakeNodeClient
from peapod.node.network.crossnode_netlink import NetlinkDataplane
from peapod.node.network.crossnode_plan import diff
async def main():
    client = FakeNodeClient(json.loads(sys.argv[1]))
    net = CrossNodeNetwork(client, node_name={h0.node_name!r}, node_ip={h0.ip!r}, mode="vxlan",
                           cluster_cidr={str(lab.cluster)!r})
    dp = NetlinkDataplane()
    net.vtep_mtu = 1450
    todo = diff(net.desired(client.nodes.values()), await dp.observe())
    await net.start()
    while net.syncs < 1:
        await asyncio.sleep(0.05)
    print(json.dumps({{"todo_empty": todo.empty, "errors": net.last_errors, "patches": client.patches}}))
    await net.stop()
asyncio.run(main())
"""
    r = in_ns(h0.ns, sys.executable, "-c", code, json.dumps([h.node() for h in lab.hosts]), check=False)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    # everything installed by the killed agent is what the new one wants: nothing to redo, same MAC
    assert out == {"todo_empty": True, "errors": [], "patches": []}
    assert "link/ether " + (h0.mac or "") in before
    assert lab.our_routes(h0) == "" and in_ns(h0.ns, IP, "link", "show", VXLAN_DEVICE, check=False).returncode != 0
