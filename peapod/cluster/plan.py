"""What a cluster is made of, decided before anything is created: names, addresses and command lines.

Pure functions of their inputs (no I/O), so ``up`` and ``down`` and the tests agree on every name.
Interface names stay within Linux's 15 characters: ``ppc<id6>`` (bridge), ``ppc<id6>v<i>`` (host veth),
``ppc<id6>b<i>`` (the pods' bridge inside host ``i``).
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

IFNAMSIZ = 15
NODE_IP_OFFSET = 10  # host i gets subnet address 10 + i; .1 is the bridge (the machine's side)
SUBNET_POOL = ipaddress.ip_network("10.0.0.0/8")
HOST_PREFIX = 24
CLUSTER_PREFIX = 16
ETCD_HEARTBEAT_MS = 100
ETCD_ELECTION_MS = 1000


@dataclass(frozen=True)
class HostPlan:
    index: int  # 1-based, as users count nodes
    node_name: str
    netns: str
    veth: str  # the end on the machine's bridge; the other end is eth0 inside the host
    ip: str
    pod_bridge: str


def new_cluster_id(rng: random.Random | None = None) -> str:
    return f"{(rng or random.SystemRandom()).randrange(16**6):06x}"


def bridge_name(cluster_id: str) -> str:
    return _ifname(f"ppc{cluster_id}")


def host_plan(cluster_id: str, index: int, subnet: ipaddress.IPv4Network) -> HostPlan:
    if index < 1 or NODE_IP_OFFSET + index >= subnet.num_addresses - 1:
        raise ValueError(f"host {index} does not fit in {subnet}")
    return HostPlan(
        index=index,
        node_name=f"node-{index}",
        netns=f"ppc{cluster_id}-{index}",
        veth=_ifname(f"ppc{cluster_id}v{index}"),
        ip=str(subnet.network_address + NODE_IP_OFFSET + index),
        pod_bridge=_ifname(f"ppc{cluster_id}b{index}"),
    )


def gateway(subnet: ipaddress.IPv4Network) -> str:
    """The machine's address on the hosts' bridge (servers and the agents' API proxy listen there)."""
    return str(subnet.network_address + 1)


def _ifname(name: str) -> str:
    if len(name) > IFNAMSIZ:
        raise ValueError(f"interface name {name!r} is longer than {IFNAMSIZ} characters")
    return name


def overlaps(net: ipaddress.IPv4Network, used: Iterable[ipaddress.IPv4Network]) -> bool:
    return any(net.overlaps(u) for u in used)


def choose_networks(
    used: Sequence[ipaddress.IPv4Network], rng: random.Random, *, subnet: str | None = None,
    cluster_cidr: str | None = None, attempts: int = 500,
) -> tuple[ipaddress.IPv4Network, ipaddress.IPv4Network]:
    """A hosts' subnet (/24) and a cluster CIDR for pods (/16) in 10/8 that overlap no network in use
    on the machine nor each other. Given values are checked, not replaced."""
    chosen: list[ipaddress.IPv4Network] = []

    def pick(given: str | None, prefix: int, what: str) -> ipaddress.IPv4Network:
        if given:
            net = ipaddress.ip_network(given, strict=True)
            if not isinstance(net, ipaddress.IPv4Network):
                raise ValueError(f"{what} {given}: only IPv4 is supported")
            if overlaps(net, [*used, *chosen]):
                raise ValueError(f"{what} {given} overlaps a network in use on this machine")
            return net
        count = 2 ** (prefix - SUBNET_POOL.prefixlen)
        for _ in range(attempts):
            start = int(SUBNET_POOL.network_address) + rng.randrange(1, count) * 2 ** (32 - prefix)
            net = ipaddress.IPv4Network((start, prefix))
            if not overlaps(net, [*used, *chosen]):
                return net
        raise ValueError(f"no free {what} in {SUBNET_POOL}")

    # The given ones first, so a random pick never takes their place.
    if subnet and not cluster_cidr:
        hosts = pick(subnet, HOST_PREFIX, "subnet")
        chosen.append(hosts)
        pods = pick(None, CLUSTER_PREFIX, "cluster CIDR")
    else:
        pods = pick(cluster_cidr, CLUSTER_PREFIX, "cluster CIDR")
        chosen.append(pods)
        hosts = pick(subnet, HOST_PREFIX, "subnet")
    if hosts.overlaps(pods):
        raise ValueError(f"subnet {hosts} overlaps cluster CIDR {pods}")
    return hosts, pods


# -- command lines -----------------------------------------------------------------------------


@dataclass(frozen=True)
class EtcdMemberPlan:
    name: str
    client_port: int
    peer_port: int
    data_dir: str

    @property
    def client_url(self) -> str:
        return f"http://127.0.0.1:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://127.0.0.1:{self.peer_port}"


def etcd_argv(
    binary: str, m: EtcdMemberPlan, members: Sequence[EtcdMemberPlan], token: str, *, new_cluster: bool
) -> list[str]:
    """One member on loopback (the servers run on the machine; etcd need not be reachable from hosts)."""
    initial = ",".join(f"{x.name}={x.peer_url}" for x in members)
    return [
        binary, "--name", m.name, "--data-dir", m.data_dir,
        "--listen-client-urls", m.client_url, "--advertise-client-urls", m.client_url,
        "--listen-peer-urls", m.peer_url, "--initial-advertise-peer-urls", m.peer_url,
        "--initial-cluster", initial, "--initial-cluster-token", token,
        "--initial-cluster-state", "new" if new_cluster else "existing",
        "--heartbeat-interval", str(ETCD_HEARTBEAT_MS), "--election-timeout", str(ETCD_ELECTION_MS),
        "--logger", "zap", "--log-outputs", "stderr",
    ]  # fmt: skip


def store_spec(members: Sequence[EtcdMemberPlan]) -> str:
    return "etcd://" + ",".join(f"127.0.0.1:{m.client_port}" for m in members)


def server_argv(
    peapod: Sequence[str], *, store: str, data_dir: str, bind: str, port: int, cluster_cidr: str,
    extra: Sequence[str] = (),
) -> list[str]:
    return [
        *peapod, "server", "--store", store, "--data-dir", data_dir, "--bind", bind, "--port", str(port),
        "--cluster-cidr", cluster_cidr, *extra,
    ]


def agent_argv(
    peapod: Sequence[str], *, netns: str, server: str, token_file: str, host: HostPlan, data_dir: str,
    network: str, registries: Sequence[str], extra: Sequence[str] = (),
) -> list[str]:
    """The agent inside its host: only the network namespace changes (``nsenter --net``), not the mount
    namespace as ``ip netns exec`` would, so a restarted agent sees the mounts of the pods it left."""
    argv = [
        "nsenter", f"--net=/run/netns/{netns}", "--",
        *peapod, "agent", "--server", server, "--token-file", token_file, "--node-name", host.node_name,
        "--data-dir", data_dir, "--node-ip", host.ip, "--bind", host.ip, "--network", network,
        "--bridge", host.pod_bridge,
    ]  # fmt: skip
    for reg in registries:
        argv += ["--insecure-registry", reg, "--allowed-registry", reg]
    return [*argv, *extra]
