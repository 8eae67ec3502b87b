"""The agent's stats sampler: /proc parsing, CPU rates over a window, the summary, cgroup discovery."""

from __future__ import annotations

from pathlib import Path

import pytest

from peapod.node.prom import AgentMetrics
from peapod.node.runtime.cgroups import CgroupManager, CgroupStats
from peapod.node.stats import (
    ContainerRef,
    NodeUsage,
    PodRef,
    StatsSampler,
    cgroup_pods,
    parse_meminfo,
    parse_proc_stat,
)
from peapod.testing.clock import FakeClock

PROC_STAT = """cpu  100 20 30 1000 50 5 5 10 0 0
cpu0 50 10 15 500 25 2 3 5 0 0
intr 12345
"""
MEMINFO = """MemTotal:        2048000 kB
MemFree:          100000 kB
MemAvailable:    1024000 kB
Buffers:            2000 kB
"""


def test_proc_stat_counts_busy_time_only() -> None:
    # user+nice+system+irq+softirq+steal = 100+20+30+5+5+10 = 170 ticks at 100 Hz = 1.7 s
    assert parse_proc_stat(PROC_STAT, 100) == 1_700_000_000
    with pytest.raises(ValueError):
        parse_proc_stat("intr 1\n", 100)


def test_meminfo_working_set_is_total_minus_available() -> None:
    total, ws = parse_meminfo(MEMINFO)
    assert total == 2048000 * 1024
    assert ws == (2048000 - 1024000) * 1024
    # old kernels without MemAvailable: MemFree
    assert parse_meminfo("MemTotal: 10 kB\nMemFree: 4 kB\n") == (10240, 6144)


class Fake:
    """Counters the test moves forward."""

    def __init__(self) -> None:
        self.node_cpu = 0
        self.cg: dict[str, CgroupStats] = {}
        self.pods: list[PodRef] = []

    def read_node(self) -> NodeUsage:
        return NodeUsage(self.node_cpu, memory_total=8 << 30, memory_working_set=2 << 30)

    def read_cgroup(self, rel: str) -> CgroupStats:
        return self.cg.get(rel, CgroupStats())

    def set(self, rel: str, cpu_ns: int, mem: int = 1 << 20, pids: int | None = 1) -> None:
        self.cg[rel] = CgroupStats(memory_usage_bytes=mem + 4096, memory_working_set_bytes=mem,
                                   cpu_usage_ns=cpu_ns, pids=pids)


POD = PodRef("uid-1", "ns", "web", "p/poduid-1",
             (ContainerRef("app", "p/poduid-1/c1"), ContainerRef("side", "p/poduid-1/c2")))


def make(fake: Fake, clock: FakeClock, metrics: AgentMetrics | None = None, window: float = 10.0) -> StatsSampler:
    return StatsSampler(node_name="n1", clock=clock, read_node=fake.read_node, list_pods=lambda: fake.pods,
                        read_cgroup=fake.read_cgroup, interval=2.0, window=window, metrics=metrics,
                        offload=False)


def test_cpu_rate_needs_two_samples_then_is_nanocores_over_the_window() -> None:
    fake, clock = Fake(), FakeClock()
    fake.pods = [POD]
    s = make(fake, clock)
    fake.set("p/poduid-1", 0)
    fake.set("p/poduid-1/c1", 0)
    fake.set("p/poduid-1/c2", 0)
    s.sample()
    first = s.summary()
    assert "usageNanoCores" not in first["node"]["cpu"]
    assert "usageNanoCores" not in first["pods"][0]["cpu"]
    clock.advance(2)
    fake.node_cpu = 3_000_000_000  # 1.5 CPUs busy over 2 s
    fake.set("p/poduid-1", 1_000_000_000, mem=5 << 20)
    fake.set("p/poduid-1/c1", 1_000_000_000, mem=4 << 20)  # half a CPU
    fake.set("p/poduid-1/c2", 0, mem=1 << 20)
    s.sample()
    out = s.summary()
    assert out["node"]["cpu"]["usageNanoCores"] == 1_500_000_000
    assert out["node"]["windowSeconds"] == 2.0
    assert out["node"]["memory"]["workingSetBytes"] == 2 << 30
    assert out["node"]["memory"]["availableBytes"] == 6 << 30
    pod = out["pods"][0]
    assert pod["podRef"] == {"name": "web", "namespace": "ns", "uid": "uid-1"}
    assert pod["cpu"]["usageNanoCores"] == 500_000_000
    assert pod["memory"]["workingSetBytes"] == 5 << 20
    assert pod["memory"]["usageBytes"] == (5 << 20) + 4096
    by_name = {c["name"]: c for c in pod["containers"]}
    assert by_name["app"]["cpu"]["usageNanoCores"] == 500_000_000
    assert by_name["app"]["cpu"]["usageCoreNanoSeconds"] == 1_000_000_000
    assert by_name["side"]["cpu"]["usageNanoCores"] == 0
    assert by_name["app"]["memory"]["time"] == "2026-01-01T00:00:02Z"


def test_window_slides_and_a_reset_counter_starts_over() -> None:
    fake, clock = Fake(), FakeClock()
    fake.pods = [PodRef("u", "ns", "p", "pod", (ContainerRef("c", "pod/c"),))]
    s = make(fake, clock, window=4.0)
    # 1 CPU for 6 s, then 2 CPUs: a 4 s window holds only the new rate
    cpu = 0
    for t in range(12):
        fake.set("pod", cpu)
        fake.set("pod/c", cpu)
        s.sample()
        clock.advance(1)
        cpu += 1_000_000_000 if t < 6 else 2_000_000_000
    out = s.summary()["pods"][0]
    assert out["windowSeconds"] == 4.0
    assert out["cpu"]["usageNanoCores"] == 2_000_000_000
    # a restarted container's counter starts from zero again: no negative rate, rate after 2 samples
    fake.set("pod/c", 5)
    s.sample()
    c = s.summary()["pods"][0]["containers"][0]["cpu"]
    assert "usageNanoCores" not in c and c["usageCoreNanoSeconds"] == 5


def test_stopped_and_missing_containers_and_gone_pods_are_left_out() -> None:
    fake, clock = Fake(), FakeClock()
    metrics = AgentMetrics()
    other = PodRef("u2", "ns", "gone", "pod2", (ContainerRef("c", "pod2/c"),))
    fake.pods = [POD, other]
    s = make(fake, clock, metrics)
    fake.set("p/poduid-1", 10)
    fake.set("p/poduid-1/c1", 10)
    fake.set("p/poduid-1/c2", 10, pids=0)  # exited, cgroup not yet removed
    fake.set("pod2", 10)  # its container has no cgroup
    s.sample()
    out = s.summary()
    assert [p["podRef"]["name"] for p in out["pods"]] == ["web"]
    assert [c["name"] for c in out["pods"][0]["containers"]] == ["app"]
    assert metrics.registry.get_sample_value("kubelet_running_pods") == 1
    assert metrics.registry.get_sample_value("kubelet_running_containers", {"container_state": "running"}) == 1
    fake.pods = []
    s.sample()
    assert s.summary()["pods"] == []
    assert s._series.keys() == {"node"}
    assert metrics.registry.get_sample_value("kubelet_running_pods") == 0


async def test_run_samples_every_interval() -> None:
    import asyncio

    fake, clock = Fake(), FakeClock()
    s = make(fake, clock)
    task = asyncio.create_task(s.run())
    for _ in range(50):
        await asyncio.sleep(0)
        if clock.sleepers:
            break
    fake.node_cpu = 2_000_000_000
    clock.advance(2)
    for _ in range(50):
        await asyncio.sleep(0)
        if clock.sleepers and "usageNanoCores" in s.summary()["node"].get("cpu", {}):
            break
    task.cancel()
    assert s.summary()["node"]["cpu"]["usageNanoCores"] == 1_000_000_000


def test_cgroup_pods_discovers_pods_and_containers_from_the_cgroup_tree(tmp_path: Path) -> None:
    # a hybrid layout: v1 controllers plus the unified mount, the agent in the root cgroups
    for ctrl in ("cpu", "cpuacct", "memory", "pids", "unified"):
        (tmp_path / ctrl).mkdir()
    self_cgroup = "4:memory:/\n3:pids:/\n2:cpuacct:/\n1:cpu:/\n0::/\n"
    cg = CgroupManager("peapod-x", cgroup_root=tmp_path, self_cgroup=self_cgroup)
    base = tmp_path / "cpuacct" / "peapod-x"
    (base / "poduid-a" / "uid-a-c1").mkdir(parents=True)
    (base / "poduid-a" / "uid-a-old").mkdir()
    (base / "poduid-b").mkdir()  # a pod the API no longer has
    (base / "not-a-pod").mkdir()
    pods = [{"metadata": {"uid": "uid-a", "name": "web", "namespace": "ns"}}]
    got = cgroup_pods(cg, pods=lambda: pods, container_names=lambda uid: {"uid-a-c1": "app"})
    assert got == [PodRef("uid-a", "ns", "web", "peapod-x/poduid-a",
                          (ContainerRef("app", "peapod-x/poduid-a/uid-a-c1"),))]
