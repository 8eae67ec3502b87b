"""Resource usage of the node and of its pods and containers (kubelet's ``/stats/summary``).

A sampler reads cumulative counters at a fixed interval: node CPU time and memory from /proc, pod
and container CPU time and memory working set from their cgroups. CPU usage is a rate, so it is
computed over the samples of a sliding window (``usageNanoCores`` = CPU nanoseconds used per
second of wall time over ``windowSeconds``); memory is the latest reading. The API server turns a
summary into metrics.k8s.io NodeMetrics/PodMetrics (:mod:`peapod.apiserver.metricsapi`).

Summary shape (a subset of kubelet's, plus ``windowSeconds``)::

    {"node": {"nodeName", "cpu": {"time", "usageNanoCores", "usageCoreNanoSeconds"},
              "memory": {"time", "workingSetBytes", "usageBytes", "availableBytes"}, "windowSeconds"},
     "pods": [{"podRef": {"name", "namespace", "uid"}, "cpu": {...}, "memory": {...}, "windowSeconds",
               "containers": [{"name", "cpu": {...}, "memory": {...}}]}]}

``usageNanoCores`` is absent until two samples of a key exist.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from peapod.clock import Clock, rfc3339
from peapod.node.runtime.cgroups import CgroupManager, CgroupStats

if TYPE_CHECKING:
    from peapod.node.prom import AgentMetrics

log = logging.getLogger(__name__)

Obj = dict[str, Any]


@dataclass(frozen=True)
class NodeUsage:
    cpu_ns: int  # cumulative busy CPU time of all CPUs
    memory_total: int
    memory_working_set: int


@dataclass(frozen=True)
class ContainerRef:
    name: str
    relpath: str  # cgroup path (CgroupManager.container_relpath)


@dataclass(frozen=True)
class PodRef:
    uid: str
    namespace: str
    name: str
    relpath: str  # cgroup path (CgroupManager.pod_relpath)
    containers: tuple[ContainerRef, ...] = ()


# -- /proc readers ---------------------------------------------------------------------------------


def parse_proc_stat(text: str, clk_tck: int) -> int:
    """Busy CPU nanoseconds of all CPUs from /proc/stat's aggregate ``cpu`` line.

    Busy = user + nice + system + irq + softirq + steal (idle and iowait are not usage; guest time is
    already counted in user/nice)."""
    for line in text.splitlines():
        if line.startswith("cpu "):
            f = [int(x) for x in line.split()[1:]]
            f += [0] * (8 - len(f))
            busy = f[0] + f[1] + f[2] + f[5] + f[6] + f[7]
            return busy * 1_000_000_000 // clk_tck
    raise ValueError("no aggregate cpu line in /proc/stat")


def parse_meminfo(text: str) -> tuple[int, int]:
    """(total, working set) bytes from /proc/meminfo; working set = MemTotal - MemAvailable."""
    kb: dict[str, int] = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            kb[key] = int(parts[0])
    total = kb.get("MemTotal", 0) * 1024
    available = kb.get("MemAvailable", kb.get("MemFree", 0)) * 1024
    return total, max(0, total - available)


def read_proc_node(proc: Path = Path("/proc")) -> NodeUsage:
    cpu = parse_proc_stat((proc / "stat").read_text(), os.sysconf("SC_CLK_TCK"))
    total, ws = parse_meminfo((proc / "meminfo").read_text())
    return NodeUsage(cpu_ns=cpu, memory_total=total, memory_working_set=ws)


def cgroup_children(cgroups: CgroupManager, relpath: str) -> list[str]:
    """Names of the child cgroups of ``relpath`` (in the cpu accounting hierarchy)."""
    dirs = cgroups.dirs(relpath)
    d = None
    for mount, path in dirs.items():
        if cgroups.unified or "cpuacct" in mount.name.split(","):
            d = path
            break
    if d is None or not d.is_dir():
        return []
    try:
        return sorted(p.name for p in d.iterdir() if p.is_dir())
    except OSError:
        return []


def cgroup_pods(cgroups: CgroupManager, *, pods: Callable[[], list[Obj]],
                container_names: Callable[[str], dict[str, str]]) -> list[PodRef]:
    """Pods with a cgroup on this node: ``pods()`` gives the API objects (for names), and
    ``container_names(uid)`` maps container ids to container names (the executor's records)."""
    by_uid = {(p.get("metadata") or {}).get("uid"): p for p in pods()}
    out = []
    for child in cgroup_children(cgroups, cgroups.parent):
        if not child.startswith("pod"):
            continue
        uid = child[3:]
        pod = by_uid.get(uid)
        if pod is None:
            continue
        md = pod["metadata"]
        names = container_names(uid)
        containers = tuple(
            ContainerRef(names[cid], cgroups.container_relpath(uid, cid))
            for cid in cgroup_children(cgroups, cgroups.pod_relpath(uid)) if cid in names
        )
        out.append(PodRef(uid, md.get("namespace") or "default", md["name"], cgroups.pod_relpath(uid), containers))
    return out


# -- the sampler -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Sample:
    mono: float
    wall: datetime
    cpu_ns: int | None
    memory: int | None
    extra: tuple[int | None, ...] = ()  # node: (total,), cgroups: (usage bytes,)


class _Series:
    """Samples of one key within the window (at least the newest two are always kept)."""

    def __init__(self) -> None:
        self.samples: deque[_Sample] = deque()

    def add(self, s: _Sample, window: float) -> None:
        last = self.samples[-1] if self.samples else None
        if last is not None and s.cpu_ns is not None and last.cpu_ns is not None and s.cpu_ns < last.cpu_ns:
            self.samples.clear()  # counter went backwards: a new cgroup under the same path
        self.samples.append(s)
        while len(self.samples) > 2 and s.mono - self.samples[1].mono >= window:
            self.samples.popleft()

    def rate(self) -> tuple[int | None, float]:
        """(nanocores, window seconds) over the kept samples; (None, 0) with fewer than two."""
        if len(self.samples) < 2:
            return None, 0.0
        first, last = self.samples[0], self.samples[-1]
        dt = last.mono - first.mono
        if dt <= 0 or first.cpu_ns is None or last.cpu_ns is None:
            return None, 0.0
        return int((last.cpu_ns - first.cpu_ns) / dt), dt

    @property
    def latest(self) -> _Sample:
        return self.samples[-1]


class StatsSampler:
    """Samples usage every ``interval`` seconds; :meth:`summary` answers ``/stats/summary``."""

    def __init__(
        self,
        *,
        node_name: str,
        clock: Clock,
        read_node: Callable[[], NodeUsage],
        list_pods: Callable[[], list[PodRef]],
        read_cgroup: Callable[[str], CgroupStats],
        interval: float = 2.0,
        window: float = 10.0,
        metrics: AgentMetrics | None = None,
        offload: bool = True,
    ) -> None:
        """``offload``: read files in a worker thread (False in tests: sampling stays on the loop)."""
        self.offload = offload
        self.node_name = node_name
        self.clock = clock
        self.read_node = read_node
        self.list_pods = list_pods
        self.read_cgroup = read_cgroup
        self.interval = interval
        self.window = window
        self.metrics = metrics
        self._series: dict[str, _Series] = {}
        self._pods: list[PodRef] = []

    def _add(self, key: str, sample: _Sample, seen: set[str]) -> None:
        seen.add(key)
        self._series.setdefault(key, _Series()).add(sample, self.window)

    def sample(self, pods_now: list[PodRef] | None = None) -> None:
        """Take one sample of the node and of every pod and container (``pods_now``: the pods,
        listed on the event loop when sampling runs in a thread; default ``list_pods()``)."""
        mono, wall = self.clock.monotonic(), self.clock.now()
        seen: set[str] = set()
        try:
            n = self.read_node()
            self._add("node", _Sample(mono, wall, n.cpu_ns, n.memory_working_set, (n.memory_total,)), seen)
        except (OSError, ValueError) as e:
            log.debug("reading node stats: %s", e)
        pods = []
        running_containers = 0
        for pod in self.list_pods() if pods_now is None else pods_now:
            live = []
            for c in pod.containers:
                st = self.read_cgroup(c.relpath)
                if st.cpu_usage_ns is None or st.pids == 0:
                    continue  # gone, or a stopped container whose cgroup is still there
                self._add(c.relpath, _Sample(mono, wall, st.cpu_usage_ns, st.memory_working_set_bytes,
                                             (st.memory_usage_bytes,)), seen)
                live.append(c)
            if not live:
                continue
            st = self.read_cgroup(pod.relpath)
            if st.cpu_usage_ns is None:
                continue
            self._add(pod.relpath, _Sample(mono, wall, st.cpu_usage_ns, st.memory_working_set_bytes,
                                           (st.memory_usage_bytes,)), seen)
            pods.append(PodRef(pod.uid, pod.namespace, pod.name, pod.relpath, tuple(live)))
            running_containers += len(live)
        for key in set(self._series) - seen:
            del self._series[key]
        self._pods = pods
        if self.metrics is not None:
            self.metrics.set_running(len(pods), running_containers)

    async def run(self) -> None:
        while True:
            try:
                if self.offload:
                    await asyncio.to_thread(self.sample, self.list_pods())
                else:
                    self.sample()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # a stats bug must never stop the agent
                log.warning("stats sampling: %s", e)
            await self.clock.sleep(self.interval)

    # -- the summary -----------------------------------------------------------------------------

    def _cpu(self, series: _Series) -> tuple[Obj, float]:
        rate, window = series.rate()
        last = series.latest
        cpu: Obj = {"time": rfc3339(last.wall)}
        if rate is not None:
            cpu["usageNanoCores"] = rate
        if last.cpu_ns is not None:
            cpu["usageCoreNanoSeconds"] = last.cpu_ns
        return cpu, window

    def _memory(self, series: _Series, *, node: bool = False) -> Obj:
        last = series.latest
        mem: Obj = {"time": rfc3339(last.wall)}
        if last.memory is not None:
            mem["workingSetBytes"] = last.memory
        extra = last.extra[0] if last.extra else None
        if node and extra is not None:
            mem["availableBytes"] = max(0, extra - (last.memory or 0))
            mem["usageBytes"] = last.memory
        elif extra is not None:
            mem["usageBytes"] = extra
        return mem

    def summary(self) -> Obj:
        node: Obj = {"nodeName": self.node_name}
        ns = self._series.get("node")
        if ns is not None:
            node["cpu"], node["windowSeconds"] = self._cpu(ns)
            node["memory"] = self._memory(ns, node=True)
        pods = []
        for pod in self._pods:
            ps = self._series.get(pod.relpath)
            if ps is None:
                continue
            cpu, window = self._cpu(ps)
            containers = []
            for c in pod.containers:
                cs = self._series.get(c.relpath)
                if cs is None:
                    continue
                ccpu, _ = self._cpu(cs)
                containers.append({"name": c.name, "cpu": ccpu, "memory": self._memory(cs)})
            pods.append({
                "podRef": {"name": pod.name, "namespace": pod.namespace, "uid": pod.uid},
                "cpu": cpu, "memory": self._memory(ps), "windowSeconds": window, "containers": containers,
            })
        return {"node": node, "pods": pods}


def agent_sampler(agent: Any, *, interval: float = 2.0, window: float = 10.0) -> StatsSampler | None:
    """The sampler of a started agent's pods (None without a cgroup manager: fake runtimes)."""
    cgroups: CgroupManager | None = agent.config.cgroups
    if cgroups is None:
        return None

    def pods() -> list[Obj]:
        return agent.informer.list() if agent.informer is not None else []

    def container_names(uid: str) -> dict[str, str]:
        ex = agent.executor
        return {r["id"]: r["name"] for r in ex.records(uid) if "id" in r and "name" in r} if ex else {}

    return StatsSampler(
        node_name=agent.config.node_name, clock=agent.clock, read_node=read_proc_node,
        list_pods=lambda: cgroup_pods(cgroups, pods=pods, container_names=container_names),
        read_cgroup=cgroups.stats, interval=interval, window=window, metrics=getattr(agent, "metrics", None),
    )
