"""``peapod cluster up`` and ``down``: make a cluster of hosts in network namespaces, and remove it.

``up``: hosts (bridge, namespaces, veths) -> supervisor (API proxy, registry forwarders) -> etcd members
-> the first API server (it initialises the cluster's CA and tokens in etcd) -> the other servers and one
agent per host -> every Node Ready. Each resource is recorded in ``DATA/cluster.json`` before it is made.
``down``: agents first (they stop their pods), what pods left, servers, supervisor, etcd, the network,
then the data. It removes only what the state file names, so it also works after a crash half-way.
"""

from __future__ import annotations

import base64
import contextlib
import ipaddress
import json
import os
import random
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import yaml

from peapod.cluster import ClusterError, hostnet, plan, procs
from peapod.cluster.state import ClusterState, EtcdMember, Host, Proc, Server
from peapod.cluster.supervisor import SupervisorConfig

ETCD_BINARY = "/usr/bin/etcd"


class StepLike(Protocol):
    def update(self, detail: str, *, completed: int | None = None, total: int | None = None) -> None: ...


class StepsLike(Protocol):
    """What ``up``/``down`` need of a progress display (``peapod.cli.progress.Steps`` has it)."""

    def step(self, title: str) -> AbstractContextManager[StepLike]: ...

    def info(self, text: str) -> None: ...


class _NoStep:
    def update(self, detail: str, *, completed: int | None = None, total: int | None = None) -> None:
        pass


class QuietSteps:
    """No output (tests and benches that time ``up`` themselves)."""

    @contextlib.contextmanager
    def step(self, title: str) -> Iterator[StepLike]:
        yield _NoStep()

    def info(self, text: str) -> None:
        pass


def peapod_command() -> list[str]:
    exe = Path(sys.executable).with_name("peapod")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "peapod.cli.main"]


@dataclass
class UpOptions:
    data_dir: Path
    nodes: int = 3
    servers: int = 2
    etcd_members: int = 3
    network: str = "host-gw"
    registries: list[str] = field(default_factory=list)
    subnet: str | None = None
    cluster_cidr: str | None = None
    server_args: list[str] = field(default_factory=list)  # passed to every `peapod server`
    agent_args: list[str] = field(default_factory=list)  # passed to every `peapod agent`
    timeout: float = 120.0
    retain: bool = False  # keep what was made when `up` fails (to look at the logs)


# -- up ----------------------------------------------------------------------------------------


def up(opts: UpOptions, steps: StepsLike | None = None) -> ClusterState:
    steps = steps or QuietSteps()
    _check(opts)
    data_dir = opts.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + opts.timeout
    try:
        with steps.step("networks: choose the hosts' subnet and the pods' cluster CIDR"):
            hosts_net, pods_net = plan.choose_networks(
                hostnet.used_networks(), random.SystemRandom(), subnet=opts.subnet, cluster_cidr=opts.cluster_cidr
            )
    except ValueError as e:
        raise ClusterError(str(e)) from None
    cid = plan.new_cluster_id()
    st = ClusterState(
        data_dir=str(data_dir), cluster_id=cid, network=opts.network, subnet=str(hosts_net),
        gateway=plan.gateway(hosts_net), cluster_cidr=str(pods_net), bridge=plan.bridge_name(cid),
        registries=list(opts.registries), etcd_token=f"peapod-{cid}-{uuid.uuid4().hex[:8]}",
    )
    st.save()
    try:
        # etcd first: its members take the longest to elect a leader, while the hosts are made.
        _spawn_etcd(st, opts)
        _make_hosts(st, opts, steps)
        _start_supervisor(st, opts, steps, deadline)
        _wait_etcd(st, steps, deadline)
        _start_control_plane_and_agents(st, opts, steps, deadline)
    except BaseException:
        st.phase = "failed"
        st.save()
        if not opts.retain:
            down(data_dir, steps)
        raise
    st.phase = "running"
    st.save()
    return st


def _check(opts: UpOptions) -> None:
    problems = []
    if os.geteuid() != 0:
        problems.append("peapod cluster needs root (network namespaces, bridges, pods)")
    if not os.access(ETCD_BINARY, os.X_OK):
        problems.append(f"{ETCD_BINARY} not found: apt-get install etcd-server")
    if shutil.which("nsenter") is None:
        problems.append("nsenter not found: apt-get install util-linux")
    if opts.nodes < 1 or opts.servers < 1 or opts.etcd_members < 1:
        problems.append("--nodes, --servers and --etcd-members must be at least 1")
    if opts.network not in ("host-gw", "vxlan", "none"):
        problems.append(f"--network {opts.network}: host-gw, vxlan or none")
    for reg in opts.registries:
        host, _, port = reg.rpartition(":")
        if host not in ("127.0.0.1", "localhost") or not port.isdigit():
            problems.append(f"--insecure-registry {reg}: only a registry on the machine's loopback, 127.0.0.1:PORT")
    if (opts.data_dir / "cluster.json").exists():
        problems.append(f"{opts.data_dir} already holds a cluster: `peapod cluster down --data-dir {opts.data_dir}`")
    if problems:
        raise ClusterError("; ".join(problems))


def _make_hosts(st: ClusterState, opts: UpOptions, steps: StepsLike) -> None:
    subnet = ipaddress.IPv4Network(st.subnet)
    with steps.step(f"hosts: bridge {st.bridge} on {st.subnet}, {opts.nodes} network namespaces") as s:
        st.bridge_created = True  # recorded before it is made: `down` removes it if it exists
        st.save()
        hostnet.create_bridge(st.bridge, st.gateway, subnet.prefixlen)
        for i in range(1, opts.nodes + 1):
            hp = plan.host_plan(st.cluster_id, i, subnet)
            h = Host(index=i, node_name=hp.node_name, netns=hp.netns, veth=hp.veth, ip=hp.ip,
                     pod_bridge=hp.pod_bridge, data_dir=str(Path(st.data_dir) / "nodes" / hp.node_name))
            st.hosts.append(h)
            st.save()
            hostnet.create_host(h.netns, h.veth, st.bridge, h.ip, subnet.prefixlen)
            s.update(f"{h.node_name}: {h.ip} in netns {h.netns}", completed=i, total=opts.nodes)


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _start_supervisor(st: ClusterState, opts: UpOptions, steps: StepsLike, deadline: float) -> None:
    d = Path(st.data_dir)
    # The servers' ports are chosen now: the proxy knows its backends from the start.
    for i in range(opts.servers):
        st.servers.append(Server(name=f"server-{i}", port=_free_port(st.gateway),
                                 data_dir=str(d / "servers" / f"server-{i}")))
    ready = d / "supervisor.ready"
    ready.unlink(missing_ok=True)
    cfg = SupervisorConfig(
        api_listen=[("127.0.0.1", 0), (st.gateway, 0)],
        api_backends=[(st.gateway, s.port) for s in st.servers],
        registry_ports=[int(r.rpartition(":")[2]) for r in st.registries],
        netns=[h.netns for h in st.hosts], ready_file=str(ready),
    )
    (d / "supervisor.json").write_text(cfg.dump())
    with steps.step("supervisor: API proxy on loopback, registry forwarders into the hosts"):
        st.supervisor = procs.spawn([sys.executable, "-m", "peapod.cluster.supervisor", str(d / "supervisor.json")],
                                    d / "logs" / "supervisor.log")
        st.save()
        _wait(lambda: ready.exists(), deadline, "the supervisor listens", [st.supervisor])
        bound = json.loads(ready.read_text())["api"]
        st.api_port, st.agent_api_port = int(bound[0][1]), int(bound[1][1])
        st.save()


def _etcd_plans(st: ClusterState) -> list[plan.EtcdMemberPlan]:
    return [plan.EtcdMemberPlan(m.name, m.client_port, m.peer_port, m.data_dir) for m in st.etcd]


def etcd_member_argv(st: ClusterState, index: int, *, new_cluster: bool) -> list[str]:
    plans = _etcd_plans(st)
    return plan.etcd_argv(ETCD_BINARY, plans[index], plans, st.etcd_token, new_cluster=new_cluster)


def _spawn_etcd(st: ClusterState, opts: UpOptions) -> None:
    d = Path(st.data_dir)
    ports = _free_ports(2 * opts.etcd_members)
    for i in range(opts.etcd_members):
        st.etcd.append(EtcdMember(name=f"etcd-{i}", client_port=ports[2 * i], peer_port=ports[2 * i + 1],
                                  data_dir=str(d / "etcd" / f"etcd-{i}")))
    st.save()
    for i, m in enumerate(st.etcd):
        m.proc = procs.spawn(etcd_member_argv(st, i, new_cluster=True), d / "logs" / f"{m.name}.log")
        st.save()


def _wait_etcd(st: ClusterState, steps: StepsLike, deadline: float) -> None:
    with steps.step(f"etcd: {len(st.etcd)} members on loopback elect a leader") as s:
        for i, m in enumerate(st.etcd):
            _wait(lambda m=m: etcd_healthy(m), deadline, f"{m.name} is healthy", [m.proc])
            s.update(f"{m.name} healthy", completed=i + 1, total=len(st.etcd))


def _free_ports(count: int) -> list[int]:
    socks = []
    try:
        for _ in range(count):
            sk = socket.socket()
            sk.bind(("127.0.0.1", 0))
            socks.append(sk)
        return [int(sk.getsockname()[1]) for sk in socks]
    finally:
        for sk in socks:
            sk.close()


def etcd_healthy(m: EtcdMember) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{m.client_port}/health", timeout=2) as r:
            return json.loads(r.read()).get("health") in ("true", True)
    except (OSError, ValueError):
        return False


def server_argv(st: ClusterState, s: Server, extra: Sequence[str]) -> list[str]:
    return plan.server_argv(
        _peapod(st), store=plan.store_spec(_etcd_plans(st)), data_dir=s.data_dir, bind=st.gateway, port=s.port,
        cluster_cidr=st.cluster_cidr, extra=extra,
    )


def _peapod(st: ClusterState) -> list[str]:
    return peapod_command()


def server_ready(st: ClusterState, s: Server) -> bool:
    return _get(f"https://{st.gateway}:{s.port}/readyz", _insecure_ssl()) is not None


def _start_control_plane_and_agents(st: ClusterState, opts: UpOptions, steps: StepsLike, deadline: float) -> None:
    d = Path(st.data_dir)
    first = st.servers[0]
    with steps.step(f"control plane: {first.name} initialises the cluster in etcd"):
        first.proc = procs.spawn(server_argv(st, first, opts.server_args), d / "logs" / f"{first.name}.log")
        st.save()
        token = Path(first.data_dir) / "node-token"
        _wait(lambda: token.exists() and server_ready(st, first), deadline, f"{first.name} is ready", [first.proc])
        write_cluster_kubeconfig(st)
    with steps.step(f"control plane and nodes: {len(st.servers) - 1} more server(s), {len(st.hosts)} agents") as s:
        for srv in st.servers[1:]:
            srv.proc = procs.spawn(server_argv(st, srv, opts.server_args), d / "logs" / f"{srv.name}.log")
            st.save()
        for h in st.hosts:
            h.agent = procs.spawn(agent_argv(st, h, opts.agent_args), d / "logs" / f"{h.node_name}.log")
            st.save()
        for srv in st.servers[1:]:
            _wait(lambda srv=srv: server_ready(st, srv), deadline, f"{srv.name} is ready", [srv.proc])
        everyone = [h.agent for h in st.hosts] + [x.proc for x in st.servers]

        seen = [-1]

        def all_ready() -> bool:
            ready = ready_nodes(st)
            if len(ready) != seen[0]:
                seen[0] = len(ready)
                s.update(f"{len(ready)}/{len(st.hosts)} nodes Ready", completed=len(ready), total=len(st.hosts))
            return len(ready) == len(st.hosts)

        _wait(all_ready, deadline, "every node is Ready", everyone)
    steps.info(f"peapod cluster is up: {len(st.hosts)} nodes, API at {st.api_url}")


def agent_argv(st: ClusterState, h: Host, extra: Sequence[str] = ()) -> list[str]:
    hp = plan.HostPlan(h.index, h.node_name, h.netns, h.veth, h.ip, h.pod_bridge)
    return plan.agent_argv(
        _peapod(st), netns=h.netns, server=st.agent_api_url,
        token_file=str(Path(st.servers[0].data_dir) / "node-token"), host=hp, data_dir=h.data_dir,
        network=st.network, registries=st.registries, extra=extra,
    )


def write_cluster_kubeconfig(st: ClusterState) -> None:
    """The first server's admin kubeconfig, pointed at the loopback proxy in front of every server."""
    from peapod.cli.kubeconfig import write_kubeconfig

    cfg = yaml.safe_load((Path(st.servers[0].data_dir) / "kubeconfig").read_text())
    for c in cfg.get("clusters", []):
        c["cluster"]["server"] = st.api_url
    write_kubeconfig(st.kubeconfig, cfg)


def admin_ssl(st: ClusterState) -> tuple[ssl.SSLContext, str]:
    cfg = yaml.safe_load(st.kubeconfig.read_text())
    ca = base64.b64decode(cfg["clusters"][0]["cluster"]["certificate-authority-data"]).decode()
    return ssl.create_default_context(cadata=ca), cfg["users"][0]["user"]["token"]


def ready_nodes(st: ClusterState) -> list[str]:
    ctx, token = admin_ssl(st)
    body = _get(f"{st.api_url}/api/v1/nodes", ctx, token)
    if body is None:
        return []
    ready = []
    for n in json.loads(body).get("items", []):
        conds = {c.get("type"): c.get("status") for c in (n.get("status") or {}).get("conditions") or []}
        if conds.get("Ready") == "True":
            ready.append(n["metadata"]["name"])
    return ready


def _insecure_ssl() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _get(url: str, ctx: ssl.SSLContext, token: str | None = None) -> bytes | None:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=3) as r:
            return r.read() if r.status == 200 else None
    except (OSError, ValueError):
        return None


def _wait(cond: Callable[[], bool], deadline: float, what: str, watch: Sequence[Proc | None]) -> None:
    """Poll ``cond`` until the deadline; a watched process that exits fails at once, with its log's end."""
    while True:
        if cond():
            return
        for p in watch:
            if p is not None and not procs.alive(p):
                raise ClusterError(f"{Path(p.log).stem} exited while waiting until {what}:\n{log_tail(p)}")
        if time.monotonic() > deadline:
            raise ClusterError(f"timed out waiting until {what}")
        time.sleep(0.05)


def log_tail(p: Proc, lines: int = 20) -> str:
    try:
        return "\n".join(Path(p.log).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


# -- down --------------------------------------------------------------------------------------


def down(data_dir: Path, steps: StepsLike | None = None, *, agent_timeout: float = 60.0) -> list[str]:
    """Remove everything ``DATA/cluster.json`` records. Returns what was removed."""
    steps = steps or QuietSteps()
    data_dir = Path(data_dir).resolve()
    try:
        st = ClusterState.load(data_dir)
    except FileNotFoundError:
        raise ClusterError(f"no cluster in {data_dir} (no cluster.json)") from None
    removed: list[str] = []
    with steps.step(f"agents: stop {len(st.hosts)} (they stop their pods)"):
        agents = [h.agent for h in st.hosts if procs.alive(h.agent)]
        procs.stop(agents, timeout=agent_timeout)
        removed += [f"agent pid {p.pid}" for p in agents if p is not None]
    with steps.step("pods left behind: containers, mounts, sandboxes, cgroups"):
        removed += clean_nodes(st)
    with steps.step("control plane: servers, supervisor, etcd"):
        cp = [s.proc for s in st.servers] + [st.supervisor]
        live = [p for p in cp if procs.alive(p)]
        procs.stop(live, timeout=10)
        # etcd's data goes away with it: no need for a graceful leader hand-over.
        members = [m.proc for m in st.etcd if procs.alive(m.proc)]
        procs.stop(members, timeout=0, sig=signal.SIGKILL)
        removed += [f"process {Path(p.log).stem} pid {p.pid}" for p in [*live, *members] if p is not None]
    with steps.step(f"network: {len(st.hosts)} namespaces, veths, bridge {st.bridge}"):
        for h in st.hosts:
            removed += hostnet.delete_host(h.netns, h.veth)
        if st.bridge_created:
            removed += hostnet.delete_bridge(st.bridge)
    with steps.step(f"data: {data_dir}"):
        removed += remove_data(data_dir)
    return removed


def clean_nodes(st: ClusterState) -> list[str]:
    """What pods of killed agents left: run the node cleanup inside each host's namespace (CNI teardown
    and its iptables rules belong there), or on the machine when the namespace is gone."""
    running: list[tuple[Host, subprocess.Popen[str]]] = []
    for h in st.hosts:
        if not Path(h.data_dir).exists():
            continue
        cmd = [sys.executable, "-m", "peapod.cluster.nodeclean", h.data_dir, h.pod_bridge]
        if hostnet.netns_exists(h.netns):
            cmd = ["nsenter", f"--net=/run/netns/{h.netns}", "--", *cmd]
        running.append((h, subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)))
    removed = []
    for h, p in running:
        out, err = p.communicate(timeout=120)
        if p.returncode != 0:
            raise ClusterError(f"cleaning {h.node_name} failed: {err.strip()[-2000:]}")
        removed += [f"{h.node_name}: {line}" for line in out.splitlines() if line]
    return removed


def mounts_under(path: Path) -> list[str]:
    prefix = str(path).rstrip("/") + "/"
    out = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        mp = line.split()[4].replace("\\040", " ")
        if mp.startswith(prefix) or mp == str(path):
            out.append(mp)
    return out


def remove_data(data_dir: Path) -> list[str]:
    """Every file the cluster wrote. Mounts still under the data dir (a node cleanup that could not
    finish) are detached first, so removing files never reaches into what they mount."""
    removed = []
    for mp in sorted(mounts_under(data_dir), key=len, reverse=True):
        subprocess.run(["umount", "-l", mp], capture_output=True)
        removed.append(f"mount {mp}")
    if mounts_under(data_dir):
        raise ClusterError(f"mounts remain under {data_dir}: not removing its files")
    for name in ("nodes", "servers", "etcd", "logs", "kubeconfig", "kubectl-cache", "supervisor.json",
                 "supervisor.ready", "cluster.json.tmp", "cluster.json"):
        p = data_dir / name
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
            removed.append(f"dir {p}")
        elif p.exists() or p.is_symlink():
            p.unlink()
            removed.append(f"file {p}")
    with contextlib.suppress(OSError):
        data_dir.rmdir()  # only when nothing else is in it
    return removed


def load(data_dir: Path) -> ClusterState:
    return ClusterState.load(Path(data_dir).resolve())


def describe(st: ClusterState) -> dict[str, Any]:
    """A summary for ``peapod cluster up``'s last lines and for tests."""
    return {"api": st.api_url, "kubeconfig": str(st.kubeconfig), "nodes": [h.node_name for h in st.hosts],
            "subnet": st.subnet, "cluster_cidr": st.cluster_cidr, "network": st.network}
