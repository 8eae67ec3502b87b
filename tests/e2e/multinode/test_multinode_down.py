"""`peapod cluster down` after `up` failed half-way (kept with --retain) and the supervisor crashed."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from peapod.cluster import procs
from peapod.cluster.state import ClusterState
from peapod.testing.cluster import peapod_executable
from peapod.testing.multinode import MultiNodeCluster
from tests.e2e.multinode.helpers import NEEDS

pytestmark = [pytest.mark.e2e, pytest.mark.etcd, NEEDS]


def test_down_cleans_up_after_a_failed_up_and_a_crashed_supervisor(tmp_path: Path) -> None:
    d = tmp_path / "half"
    # The servers refuse these leader-election timings: up stops after the hosts, supervisor and etcd.
    p = subprocess.run([*peapod_executable(), "cluster", "up", "--nodes", "2", "--data-dir", str(d), "--retain",
                        "--leader-elect-retry-period", "100", "--timeout", "60"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 1, p.stdout + p.stderr
    assert "server-0 exited" in p.stderr
    st = ClusterState.load(d.resolve())
    assert st.phase == "failed"
    c = MultiNodeCluster(d)
    assert c.leftovers(st)["netns"] == [h.netns for h in st.hosts]  # --retain kept them
    assert all(procs.alive(m.proc) for m in st.etcd)
    procs.kill(st.supervisor)  # the supervisor crashes too

    c.down()
    left = {k: v for k, v in c.leftovers(st).items() if v}
    assert not left, left
    assert not d.exists()


def test_up_refuses_a_data_dir_holding_a_cluster_and_down_one_without(tmp_path: Path) -> None:
    d = tmp_path / "c"
    d.mkdir()
    (d / "cluster.json").write_text("{}")
    p = subprocess.run([*peapod_executable(), "cluster", "up", "--data-dir", str(d)], capture_output=True, text=True)
    assert p.returncode == 1 and "already holds a cluster" in p.stderr
    p = subprocess.run([*peapod_executable(), "cluster", "down", "--data-dir", str(tmp_path / "none")],
                       capture_output=True, text=True)
    assert p.returncode == 1 and "no cluster in" in p.stderr
