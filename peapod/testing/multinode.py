"""A real ``peapod cluster up`` in a temporary directory, for multi-node end-to-end tests and benches.

::

    c = MultiNodeCluster(tmp / "c", nodes=3, registries=[reg.host]).start()   # `peapod cluster up`
    c.kubectl("get", "nodes", check=True)
    c.kill_agent("node-2"); c.sever("node-2")      # a host dies: agent SIGKILLed, its link down
    c.restore("node-2"); c.restart_agent("node-2")
    c.kill_etcd(0); c.restart_etcd(0)
    leader = c.lease_holder_server(); c.kill_server(leader.name); c.restart_server(leader.name)
    c.down()                                        # `peapod cluster down`

Processes are found through ``DATA/cluster.json`` and stopped by PID; pieces restarted here are written
back to it, so ``down`` stops them too.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from peapod.cluster import hostnet, procs
from peapod.cluster.lifecycle import agent_argv, etcd_healthy, etcd_member_argv, mounts_under, server_ready
from peapod.cluster.state import ClusterState, Host, Server
from peapod.testing.cluster import KUBECTL, KubectlResult, peapod_executable
from peapod.testing.waiting import wait_until

CONTROLLER_LEASE = ("kube-system", "peapod-controller-manager")


@dataclass
class MultiNodeCluster:
    data_dir: Path
    nodes: int = 3
    network: str = "host-gw"
    registries: Sequence[str] = ()
    server_args: Sequence[str] = ()  # e.g. ("--node-monitor-grace-period", "15")
    extra_args: Sequence[str] = ()
    up_seconds: float = 0.0
    up_output: str = ""
    _state: ClusterState | None = field(default=None, repr=False)

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self, timeout: float = 120.0) -> MultiNodeCluster:
        args = [*peapod_executable(), "cluster", "up", "--nodes", str(self.nodes), "--data-dir", str(self.data_dir),
                "--network", self.network, "--timeout", str(timeout), *self.server_args, *self.extra_args]
        for reg in self.registries:
            args += ["--insecure-registry", reg]
        t0 = time.monotonic()
        p = subprocess.run(args, capture_output=True, text=True, timeout=timeout + 60)
        self.up_seconds = time.monotonic() - t0
        self.up_output = p.stdout + p.stderr
        if p.returncode != 0:
            raise RuntimeError(f"peapod cluster up failed ({p.returncode}):\n{self.up_output}")
        self._state = ClusterState.load(self.data_dir.resolve())
        return self

    def down(self, timeout: float = 180.0) -> str:
        if not (self.data_dir / "cluster.json").exists():
            return ""
        p = subprocess.run([*peapod_executable(), "cluster", "down", "--data-dir", str(self.data_dir)],
                           capture_output=True, text=True, timeout=timeout)
        if p.returncode != 0:
            raise RuntimeError(f"peapod cluster down failed ({p.returncode}):\n{p.stdout}{p.stderr}")
        return p.stdout + p.stderr

    @property
    def state(self) -> ClusterState:
        if self._state is None:
            self._state = ClusterState.load(self.data_dir.resolve())
        return self._state

    def _save(self) -> None:
        self.state.save()

    @property
    def kubeconfig(self) -> Path:
        return self.state.kubeconfig

    def node_names(self) -> list[str]:
        return [h.node_name for h in self.state.hosts]

    # -- kubectl -------------------------------------------------------------------------------

    def kubectl(
        self, *args: str, input: str | None = None, timeout: float = 60.0, check: bool = False
    ) -> KubectlResult:
        cache = self.data_dir / "kubectl-cache"
        cmd = [KUBECTL, f"--kubeconfig={self.kubeconfig}", f"--cache-dir={cache}", *args]
        p = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout)
        res = KubectlResult(p.returncode, p.stdout, p.stderr)
        if check and p.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({p.returncode}):\n{p.stderr}{p.stdout}")
        return res

    def apply(self, obj: dict[str, Any] | list[dict[str, Any]]) -> None:
        items = obj if isinstance(obj, list) else [obj]
        self.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}),
                     check=True)

    def get_json(self, *args: str) -> Any:
        return self.kubectl("get", *args, "-o", "json", check=True).json()

    def node_ready(self, node: str) -> str:
        """The Ready condition's status of a node ("True", "False", "Unknown"; "" when absent)."""
        got = self.kubectl("get", "node", node, "-o", "json")
        if got.returncode != 0:
            return ""
        for c in (got.json().get("status") or {}).get("conditions") or []:
            if c.get("type") == "Ready":
                return str(c.get("status"))
        return ""

    # -- failures ------------------------------------------------------------------------------

    def host(self, node: str | int) -> Host:
        return self.state.host(node)

    def kill_agent(self, node: str | int) -> None:
        """SIGKILL the node's agent, as a crash would (its pods keep running)."""
        procs.kill(self.host(node).agent)

    def restart_agent(self, node: str | int) -> None:
        h = self.host(node)
        if procs.alive(h.agent):
            raise RuntimeError(f"the agent of {h.node_name} is running")
        h.agent = procs.spawn(agent_argv(self.state, h), Path(self.state.data_dir) / "logs" / f"{h.node_name}.log")
        self._save()

    def sever(self, node: str | int) -> None:
        """Take the host's only link down: it reaches neither the other hosts nor the control plane."""
        hostnet.set_link(self.host(node).veth, up=False)

    def restore(self, node: str | int) -> None:
        hostnet.set_link(self.host(node).veth, up=True)

    def kill_etcd(self, index: int) -> None:
        procs.kill(self.state.etcd[index].proc)

    def restart_etcd(self, index: int, timeout: float = 30.0) -> None:
        m = self.state.etcd[index]
        if procs.alive(m.proc):
            raise RuntimeError(f"{m.name} is running")
        m.proc = procs.spawn(etcd_member_argv(self.state, index, new_cluster=False),
                             Path(self.state.data_dir) / "logs" / f"{m.name}.log")
        self._save()
        wait_until(lambda: etcd_healthy(m), timeout, f"{m.name} is healthy again")

    def server(self, name: str) -> Server:
        return next(s for s in self.state.servers if s.name == name)

    def server_identity(self, server: Server) -> str:
        """The leader-election identity of a server (as ``peapod server`` derives it from its data dir)."""
        from peapod.cli.up import ControlPlane

        return ControlPlane(data_dir=Path(server.data_dir), bind=self.state.gateway, port=server.port).identity()

    def lease_holder(self, namespace: str = CONTROLLER_LEASE[0], name: str = CONTROLLER_LEASE[1]) -> str:
        got = self.kubectl("get", "lease", "-n", namespace, name, "-o", "jsonpath={.spec.holderIdentity}")
        return got.stdout.strip() if got.returncode == 0 else ""

    def lease_holder_server(self) -> Server:
        """The server whose identity holds the controller-manager Lease (kube-system)."""
        holder = wait_until(self.lease_holder, 30, "a server holds the controller lease")
        for s in self.state.servers:
            if self.server_identity(s) == holder:
                return s
        raise AssertionError(f"lease held by {holder!r}, none of this cluster's servers")

    def kill_server(self, name: str) -> None:
        procs.kill(self.server(name).proc)

    def restart_server(self, name: str, timeout: float = 30.0) -> None:
        s = self.server(name)
        if procs.alive(s.proc):
            raise RuntimeError(f"{name} is running")
        argv = list(s.proc.argv) if s.proc else []
        s.proc = procs.spawn(argv, Path(self.state.data_dir) / "logs" / f"{name}.log")
        self._save()
        wait_until(lambda: server_ready(self.state, s), timeout, f"{name} is ready again")

    def stop_process(self, proc: procs.Proc | None, sig: int = signal.SIGTERM) -> None:
        procs.stop([proc], sig=sig)

    def log_tail(self, component: str, n: int = 40) -> str:
        p = Path(self.state.data_dir) / "logs" / f"{component}.log"
        return "\n".join(p.read_text(errors="replace").splitlines()[-n:]) if p.exists() else ""

    # -- what is left --------------------------------------------------------------------------

    def leftovers(self, st: ClusterState | None = None) -> dict[str, list[str]]:
        """What of this cluster still exists on the machine (all empty after ``down``)."""
        st = st or self.state
        pids = [p for p in [st.supervisor, *(m.proc for m in st.etcd), *(s.proc for s in st.servers),
                            *(h.agent for h in st.hosts)] if p is not None]
        data = Path(st.data_dir)
        names = [st.bridge, *(h.veth for h in st.hosts)]
        return {
            "processes": [f"{p.pid} {' '.join(p.argv[:3])}" for p in pids if procs.alive(p)]
            + _processes_mentioning(str(data)),
            "netns": [h.netns for h in st.hosts if hostnet.netns_exists(h.netns)],
            "links": [n for n in hostnet.links() if n in names],
            "routes": hostnet.routes_via(names) + _routes_to(st.subnet),
            "mounts": mounts_under(data),
            "cgroups": _cgroups_of(st),
            "runc": _runc_containers(st),
            "data": [str(p) for p in data.iterdir()] if data.exists() else [],
        }


def _processes_mentioning(text: str) -> list[str]:
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmd:
            out.append(f"{d.name} {cmd[:120]}")
    return out


def _routes_to(subnet: str) -> list[str]:
    out = subprocess.run(["ip", "-j", "route", "show", "table", "all"], capture_output=True, text=True).stdout
    return [json.dumps(r) for r in json.loads(out or "[]") if r.get("dst") == subnet]


def _cgroups_of(st: ClusterState) -> list[str]:
    from peapod.cluster.nodeclean import node_dir
    from peapod.node.agent import cgroup_parent_for

    names = {cgroup_parent_for(node_dir(Path(h.data_dir))) for h in st.hosts}
    names |= {cgroup_parent_for(Path(h.data_dir) / "node") for h in st.hosts}
    found = []
    root = Path("/sys/fs/cgroup")
    for base in [root, *[p for p in root.iterdir() if p.is_dir()]] if root.exists() else []:
        for n in names:
            if (base / n).exists():
                found.append(str(base / n))
    return found


def _runc_containers(st: ClusterState) -> list[str]:
    out = []
    for h in st.hosts:
        from peapod.cluster.nodeclean import node_dir

        root = node_dir(Path(h.data_dir)) / "runtime"
        for r in [root, *root.glob("*")] if root.exists() else []:
            if r.is_dir() and any(r.glob("*/state.json")):
                out.append(str(r))
    return out
