"""Failures survived the Kubernetes way, on one 3-host cluster with shortened failure timings:
a host dies (agent killed, link cut), an etcd member dies, the server holding the leases dies;
then `peapod cluster down` leaves nothing behind."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

from peapod.testing.multinode import KUBECTL, MultiNodeCluster, wait_until
from tests.e2e.multinode.helpers import NEEDS, available, busybox, httpd_deployment, live_pods, started

pytestmark = [pytest.mark.e2e, pytest.mark.etcd, NEEDS]

# The agent renews its node Lease every 10 s: the grace period must be longer.
GRACE = 15
MONITOR_PERIOD = 5  # the node lifecycle controller looks every 5 s
TOLERATION = 2
LEASE = 4
SERVER_ARGS = (
    "--node-monitor-grace-period", str(GRACE),
    "--default-not-ready-toleration-seconds", str(TOLERATION),
    "--default-unreachable-toleration-seconds", str(TOLERATION),
    "--leader-elect-lease-duration", str(LEASE), "--leader-elect-renew-deadline", "3",
    "--leader-elect-retry-period", "1",
)  # fmt: skip


@pytest.fixture(scope="module")
def mcluster(tmp_path_factory: pytest.TempPathFactory, registry: Any) -> Iterator[MultiNodeCluster]:
    yield from started(tmp_path_factory.mktemp("mn-fail"), nodes=3, registries=[registry.host],
                       server_args=SERVER_ARGS)


@pytest.fixture(scope="module")
def web(mcluster: MultiNodeCluster, registry: Any) -> str:
    """Two pods on two of the three nodes (required anti-affinity): the third node is where a pod of a
    dead node can go."""
    mcluster.apply(httpd_deployment("web", busybox(registry), 2, anti_affinity="required"))
    wait_until(lambda: available(mcluster, "web", 2), 90, "web has 2 available pods")
    return "web"


def test_a_dead_host_goes_not_ready_its_pods_move_and_it_rejoins_cleanly(mcluster: MultiNodeCluster, web: str) -> None:
    placed = {p["spec"]["nodeName"] for p in live_pods(mcluster, "app=web")}
    assert len(placed) == 2
    victim = "node-2" if "node-2" in placed else sorted(placed)[0]  # node 2 when it holds a pod
    on_victim = {p["metadata"]["name"] for p in live_pods(mcluster, "app=web") if p["spec"]["nodeName"] == victim}
    mcluster.kill_agent(victim)
    mcluster.sever(victim)
    dead = time.monotonic()
    wait_until(lambda: mcluster.node_ready(victim) in ("False", "Unknown"), GRACE + MONITOR_PERIOD + 10,
               f"{victim} is NotReady")
    took = time.monotonic() - dead
    assert took <= GRACE + MONITOR_PERIOD + 3, took
    taints = mcluster.get_json("node", victim)["spec"].get("taints") or []
    assert any(t["key"].startswith("node.kubernetes.io/") and t["effect"] == "NoExecute" for t in taints), taints

    others = set(mcluster.node_names()) - {victim}

    def moved() -> bool:
        live = live_pods(mcluster, "app=web")
        return (not on_victim & {p["metadata"]["name"] for p in live}
                and {p["spec"].get("nodeName") for p in live} == others
                and available(mcluster, "web", 2))

    wait_until(moved, TOLERATION + 2 * MONITOR_PERIOD + 40, f"{victim}'s pod is recreated on the free node")

    mcluster.restore(victim)
    mcluster.restart_agent(victim)
    wait_until(lambda: mcluster.node_ready(victim) == "True", 40, f"{victim} is Ready again")

    def untainted() -> bool:
        return not [t for t in mcluster.get_json("node", victim)["spec"].get("taints") or []
                    if t["key"].startswith("node.kubernetes.io/")]
    wait_until(untainted, 2 * MONITOR_PERIOD + 5, f"{victim}'s taints are lifted")

    # Its old pod, deleted while it was away, is stopped and gone; the Deployment is untouched.
    def gone() -> bool:
        names = {p["metadata"]["name"] for p in mcluster.get_json("pods", "-l", "app=web")["items"]}
        return not names & on_victim and not _runc_ids(mcluster, victim)
    wait_until(gone, 40, f"the evicted pod of {victim} is stopped and finalised")
    assert available(mcluster, "web", 2)


def _runc_ids(c: MultiNodeCluster, node: str) -> list[str]:
    root = f"{c.host(node).data_dir}/node/runtime"
    out = subprocess.run(["runc", "--root", root, "list", "-q"], capture_output=True, text=True)
    return out.stdout.split()


def test_creates_and_watches_go_on_with_one_etcd_member_dead_and_it_rejoins(mcluster: MultiNodeCluster) -> None:
    mcluster.kill_etcd(0)
    watch = subprocess.Popen(
        [KUBECTL, f"--kubeconfig={mcluster.kubeconfig}", "get", "configmaps", "-n", "default", "-w",
         "--output-watch-events", "-o", "name", "-l", "etcdtest=1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        time.sleep(1)
        for i in range(3):
            mcluster.kubectl("create", "configmap", f"while-down-{i}", check=True)
            mcluster.kubectl("label", "configmap", f"while-down-{i}", "etcdtest=1", check=True)
        seen: set[str] = set()
        deadline = time.monotonic() + 20
        assert watch.stdout is not None
        while len(seen) < 3 and time.monotonic() < deadline:
            line = watch.stdout.readline()
            if "configmap/while-down-" in line:
                seen.add(line.split("/")[-1].strip())
        assert seen == {f"while-down-{i}" for i in range(3)}
    finally:
        watch.kill()
        watch.communicate()
    mcluster.restart_etcd(0)
    mcluster.kubectl("create", "configmap", "after-rejoin", check=True)
    assert mcluster.kubectl("get", "configmap", "after-rejoin").returncode == 0


def test_the_other_server_takes_over_when_the_lease_holder_dies(mcluster: MultiNodeCluster, registry: Any) -> None:
    mcluster.apply(httpd_deployment("scaled", busybox(registry), 1))
    wait_until(lambda: available(mcluster, "scaled", 1), 60, "scaled has its pod")
    leader = mcluster.lease_holder_server()
    other = next(s for s in mcluster.state.servers if s.name != leader.name)
    mcluster.kill_server(leader.name)
    killed = time.monotonic()
    # kubectl goes through the loopback proxy: it keeps working with one server dead.
    mcluster.kubectl("scale", "deployment", "scaled", "--replicas=4", check=True)
    wait_until(lambda: mcluster.lease_holder() == mcluster.server_identity(other), LEASE + 10,
               f"{other.name} takes the controller lease")
    assert time.monotonic() - killed < LEASE + 10
    wait_until(lambda: available(mcluster, "scaled", 4), 60, "the scaled Deployment converges on the new leader")

    mcluster.restart_server(leader.name)
    mcluster.kubectl("scale", "deployment", "scaled", "--replicas=2", check=True)
    wait_until(lambda: available(mcluster, "scaled", 2) and len(live_pods(mcluster, "app=scaled")) == 2, 60,
               "scaled back down with both servers up")


def test_cluster_down_removes_everything(mcluster: MultiNodeCluster) -> None:
    st = mcluster.state
    mcluster.kill_agent("node-3")  # an agent that crashed: down still removes its pods
    out = mcluster.down()
    assert "removed" in out
    left = {k: v for k, v in mcluster.leftovers(st).items() if v}
    assert not left, left
