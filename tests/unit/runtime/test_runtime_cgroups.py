"""Cgroup path resolution and limits on fake v1/hybrid/v2 trees."""

from __future__ import annotations

from pathlib import Path

from peapod.node.runtime.cgroups import CgroupManager, shares_to_weight

SELF_V1 = """9:name=systemd:/
8:pids:/
4:memory:/limited/me
2:cpu,cpuacct:/
0::/
"""


def v1_tree(root: Path, *, unified: bool) -> None:
    for d in ("systemd", "pids", "memory/limited/me", "cpu,cpuacct"):
        (root / d).mkdir(parents=True)
    if unified:
        (root / "unified").mkdir()


def test_v1_paths_follow_own_cgroup(tmp_path: Path) -> None:
    v1_tree(tmp_path, unified=True)
    cg = CgroupManager("peapod", cgroup_root=tmp_path, self_cgroup=SELF_V1)
    assert cg.mode == "hybrid"
    assert cg.container_relpath("u1", "c1") == "peapod/podu1/c1"
    dirs = cg.dirs("peapod/podu1")
    assert dirs[tmp_path / "memory"] == tmp_path / "memory/limited/me/peapod/podu1"
    assert dirs[tmp_path / "cpu,cpuacct"] == tmp_path / "cpu,cpuacct/peapod/podu1"
    assert dirs[tmp_path / "unified"] == tmp_path / "unified/peapod/podu1"
    assert tmp_path / "systemd" in dirs


def test_v1_create_limits_stats_remove(tmp_path: Path) -> None:
    v1_tree(tmp_path, unified=False)
    cg = CgroupManager("peapod", cgroup_root=tmp_path, self_cgroup=SELF_V1)
    assert cg.mode == "v1"
    cg.create_pod("u1", memory_limit=1000, cpu_shares=256, cpu_quota=5000, pids_limit=9)
    mem = tmp_path / "memory/limited/me/peapod/podu1"
    cpu = tmp_path / "cpu,cpuacct/peapod/podu1"
    assert (mem / "memory.limit_in_bytes").read_text() == "1000"
    assert (cpu / "cpu.shares").read_text() == "256"
    assert (cpu / "cpu.cfs_quota_us").read_text() == "5000"
    assert (tmp_path / "pids/peapod/podu1/pids.max").read_text() == "9"
    (mem / "memory.usage_in_bytes").write_text("4096\n")
    (mem / "memory.stat").write_text("cache 1\ntotal_inactive_file 1024\n")
    (cpu / "cpuacct.usage").write_text("123456\n")
    (tmp_path / "pids/peapod/podu1/pids.current").write_text("3\n")
    st = cg.stats(cg.pod_relpath("u1"))
    got = (st.memory_usage_bytes, st.memory_working_set_bytes, st.cpu_usage_ns, st.pids)
    assert got == (4096, 3072, 123456, 3)
    assert cg.exists("peapod/podu1")
    # a fake tree has files in its dirs, so rmdir can't work; remove() must skip missing dirs quietly
    cg.remove("peapod/podzzz")


def test_v1_remove_real_dirs(tmp_path: Path) -> None:
    v1_tree(tmp_path, unified=False)
    cg = CgroupManager("peapod", cgroup_root=tmp_path, self_cgroup=SELF_V1)
    for d in cg.dirs("peapod/podu1/c1").values():
        d.mkdir(parents=True)
    cg.remove_pod("u1")
    assert not cg.exists("peapod/podu1")
    cg.remove_pod("u1")  # idempotent
    cg.remove_parent_if_empty()
    assert not cg.exists("peapod")


def test_v2(tmp_path: Path) -> None:
    (tmp_path / "cgroup.controllers").write_text("cpu memory pids io\n")
    (tmp_path / "agent").mkdir()
    (tmp_path / "agent" / "cgroup.controllers").write_text("cpu memory pids\n")
    cg = CgroupManager("peapod", cgroup_root=tmp_path, self_cgroup="0::/agent\n")
    assert cg.mode == "v2"
    assert list(cg.dirs("peapod/podu1").values()) == [tmp_path / "agent/peapod/podu1"]
    cg.create_pod("u1", memory_limit=2048, cpu_shares=1024, cpu_quota=50000, pids_limit=10)
    d = tmp_path / "agent/peapod/podu1"
    assert (tmp_path / "agent" / "cgroup.subtree_control").read_text() == "+cpu +memory +pids"
    assert (d / "memory.max").read_text() == "2048"
    assert (d / "cpu.weight").read_text() == str(shares_to_weight(1024))
    assert (d / "cpu.max").read_text() == "50000 100000"
    assert (d / "pids.max").read_text() == "10"
    (d / "memory.current").write_text("500\n")
    (d / "memory.stat").write_text("inactive_file 100\n")
    (d / "cpu.stat").write_text("usage_usec 7\nuser_usec 5\n")
    st = cg.stats("peapod/podu1")
    assert (st.memory_usage_bytes, st.memory_working_set_bytes, st.cpu_usage_ns) == (500, 400, 7000)


def test_shares_to_weight() -> None:
    assert shares_to_weight(2) == 1
    assert shares_to_weight(262144) == 10000
    assert shares_to_weight(1024) == 39
