"""Crashes of peapod itself: pods outlive a kill -9 and are re-adopted; `peapod down` cleans up."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from peapod.node.agent import cgroup_parent_for
from peapod.testing.cluster import PeapodCluster, peapod_executable
from peapod.testing.images import busybox_image, push_image
from peapod.testing.registry import LoopbackRegistry
from tests.e2e.conftest import write
from tests.e2e.test_pods import wait_for

pytestmark = pytest.mark.skipif(
    subprocess.run(["id", "-u"], capture_output=True, text=True).stdout.strip() != "0", reason="needs root"
)


@pytest.fixture(scope="module")
def image() -> Iterator[str]:
    reg = LoopbackRegistry().start()
    try:
        ref = reg.ref("busybox", "1")
        asyncio.run(push_image(ref, busybox_image()))
        yield ref
    finally:
        reg.stop()


def leftovers(data_dir: Path) -> dict[str, int]:
    """What of this data dir's pods is still on the machine."""
    root = data_dir / "node" / "runtime" / "runc"
    runc = subprocess.run(["runc", "--root", str(root), "list", "-q"], capture_output=True, text=True).stdout.split()
    mounts = [ln for ln in Path("/proc/mounts").read_text().splitlines() if str(data_dir) in ln]
    conmons = subprocess.run(["pgrep", "-f", f"conmon.*{data_dir}"], capture_output=True, text=True).stdout.split()
    parent = cgroup_parent_for(data_dir / "node")
    cgroups = [d for d in Path("/sys/fs/cgroup").glob(f"*/**/{parent}") if d.is_dir()]
    return {"runc": len(runc), "mounts": len(mounts), "conmon": len(conmons), "cgroups": len(cgroups)}


def start_sleeper(cluster: PeapodCluster, image: str, tmp_path: Path) -> dict:
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "sleeper"},
           "spec": {"terminationGracePeriodSeconds": 1,
                    "containers": [{"name": "c", "image": image, "command": ["sh", "-c", "echo up; sleep 3600"]}]}}
    cluster.kubectl("apply", "-f", str(write(tmp_path, "s.json", json.dumps(pod))), check=True)
    wait_for(cluster, "default", "sleeper", "{.status.containerStatuses[0].ready}", "true")
    return cluster.kubectl("get", "pod", "sleeper", "-o", "json", check=True).json()


def test_kill_9_then_restart_readopts_running_pods(image: str, tmp_path: Path) -> None:
    cluster = PeapodCluster(tmp_path / "data")
    cluster.start()
    try:
        before = start_sleeper(cluster, image, tmp_path)
        cluster.kill()
        assert leftovers(cluster.data_dir)["runc"] == 1, "the container must outlive the agent"
        cluster.start()
        time.sleep(3)  # a few relists of the new agent
        after = cluster.kubectl("get", "pod", "sleeper", "-o", "json", check=True).json()
        cs_before, cs_after = before["status"]["containerStatuses"][0], after["status"]["containerStatuses"][0]
        assert cs_after["containerID"] == cs_before["containerID"]
        assert cs_after["restartCount"] == 0 and cs_after["ready"] is True
        assert after["status"]["phase"] == "Running"
        assert cluster.kubectl("logs", "sleeper", check=True).stdout == "up\n"
    finally:
        cluster.stop()
    assert leftovers(cluster.data_dir) == {"runc": 0, "mounts": 0, "conmon": 0, "cgroups": 0}


def test_peapod_down_after_a_crash_removes_everything(image: str, tmp_path: Path) -> None:
    cluster = PeapodCluster(tmp_path / "data")
    cluster.start()
    try:
        start_sleeper(cluster, image, tmp_path)
    finally:
        cluster.kill()
    assert leftovers(cluster.data_dir)["runc"] == 1
    r = subprocess.run([*peapod_executable(), "down", "--data-dir", str(cluster.data_dir)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert leftovers(cluster.data_dir) == {"runc": 0, "mounts": 0, "conmon": 0, "cgroups": 0}
    bridges = subprocess.run(["ip", "-o", "link", "show", "type", "bridge"], capture_output=True, text=True).stdout
    assert cluster.bridge not in bridges
