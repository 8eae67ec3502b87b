"""``DATA/cluster.json``: every resource and process a cluster made, written before each is made.

``down`` removes exactly what is recorded here (processes by PID and start time, never by name), so it
also cleans up after ``up`` stopped half-way or the supervisor crashed. Writes are atomic (rename).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

STATE_FILE = "cluster.json"
VERSION = 1


@dataclass
class Proc:
    """A process the cluster started: its PID, its start time (clock ticks after boot, from
    /proc/PID/stat, so a reused PID is never mistaken for it), how to start it again and its log."""

    pid: int
    start_time: int
    argv: list[str]
    log: str


@dataclass
class Host:
    index: int
    node_name: str
    netns: str
    veth: str
    ip: str
    pod_bridge: str
    data_dir: str
    agent: Proc | None = None
    netns_created: bool = False
    veth_created: bool = False


@dataclass
class EtcdMember:
    name: str
    client_port: int
    peer_port: int
    data_dir: str
    proc: Proc | None = None


@dataclass
class Server:
    name: str
    port: int
    data_dir: str
    proc: Proc | None = None


@dataclass
class ClusterState:
    data_dir: str
    cluster_id: str
    network: str
    subnet: str
    gateway: str
    cluster_cidr: str
    bridge: str
    bridge_created: bool = False
    registries: list[str] = field(default_factory=list)
    etcd_token: str = ""
    etcd: list[EtcdMember] = field(default_factory=list)
    servers: list[Server] = field(default_factory=list)
    hosts: list[Host] = field(default_factory=list)
    supervisor: Proc | None = None
    api_port: int = 0  # the loopback proxy kubectl uses
    agent_api_port: int = 0  # the proxy on the gateway address the agents use
    phase: str = "starting"  # starting | running | failed
    version: int = VERSION

    @property
    def path(self) -> Path:
        return Path(self.data_dir) / STATE_FILE

    @property
    def api_url(self) -> str:
        return f"https://127.0.0.1:{self.api_port}"

    @property
    def agent_api_url(self) -> str:
        return f"https://{self.gateway}:{self.agent_api_port}"

    @property
    def kubeconfig(self) -> Path:
        return Path(self.data_dir) / "kubeconfig"

    def host(self, which: int | str) -> Host:
        """A host by 1-based index or node name."""
        for h in self.hosts:
            if which in (h.index, h.node_name):
                return h
        raise KeyError(f"no host {which!r}")

    def save(self) -> None:
        tmp = self.path.with_name(STATE_FILE + ".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=1) + "\n")
        os.replace(tmp, self.path)

    @classmethod
    def load(cls, data_dir: Path) -> ClusterState:
        raw = json.loads((Path(data_dir) / STATE_FILE).read_text())
        return cls.from_dict(raw)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ClusterState:
        raw = dict(raw)
        raw["etcd"] = [EtcdMember(**{**m, "proc": _proc(m.get("proc"))}) for m in raw.get("etcd", [])]
        raw["servers"] = [Server(**{**s, "proc": _proc(s.get("proc"))}) for s in raw.get("servers", [])]
        raw["hosts"] = [Host(**{**h, "agent": _proc(h.get("agent"))}) for h in raw.get("hosts", [])]
        raw["supervisor"] = _proc(raw.get("supervisor"))
        return cls(**raw)


def _proc(raw: dict[str, Any] | None) -> Proc | None:
    return Proc(**raw) if raw else None


def exists(data_dir: Path) -> bool:
    return (Path(data_dir) / STATE_FILE).exists()
