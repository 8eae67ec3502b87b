"""The PodNetwork boundary: what the agent asks of pod networking (CNI or a fake)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class PortMapping:
    """A container port published on the node (pod spec hostPort)."""

    host_port: int
    container_port: int
    protocol: str = "tcp"  # tcp | udp | sctp (lower case, as CNI wants)
    host_ip: str = ""


@dataclass(frozen=True)
class NetworkStatus:
    ips: list[str]  # pod IPs, IPv4 first
    gateway: str | None = None
    interface: str = "eth0"
    mac: str | None = None
    cidrs: list[str] = field(default_factory=list)  # ips with prefix length


class NetworkError(Exception):
    """Setup/teardown failed; ``code``/``details`` carry the CNI error when there is one."""

    def __init__(self, msg: str, *, code: int | None = None, details: str = "") -> None:
        super().__init__(msg)
        self.code = code
        self.details = details


class PodNetwork(Protocol):
    async def setup(
        self, pod_uid: str, netns_path: str, port_mappings: Sequence[PortMapping] = (), *,
        pod_name: str = "", pod_namespace: str = "",
    ) -> NetworkStatus: ...

    async def teardown(self, pod_uid: str, netns_path: str | None) -> None:
        """Idempotent; works when the netns is already gone."""

    async def check(self, pod_uid: str, netns_path: str) -> None:
        """Raise NetworkError if the pod's network is not as set up."""

    def status(self, pod_uid: str) -> NetworkStatus | None:
        """The recorded result of the last setup (survives agent restarts)."""
