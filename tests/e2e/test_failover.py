"""Leader failover: two `peapod server` processes on one 3-member etcd; exactly one runs the controllers
and the scheduler; when it is killed (-9) the other takes the Lease over and the cluster converges."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from peapod.cli.up import ControlPlane
from peapod.testing.cluster import PeapodCluster
from peapod.testing.etcd import EtcdCluster
from peapod.testing.waiting import wait_until

pytestmark = [pytest.mark.etcd, pytest.mark.skipif(not EtcdCluster.available(), reason="etcd is not installed")]

LEASE = ("-n", "kube-system", "lease", "peapod-controller-manager")
LEASE_DURATION = 15.0


@pytest.fixture
def etcd(tmp_path: Path) -> Iterator[EtcdCluster]:
    cluster = EtcdCluster(tmp_path / "etcd")
    asyncio.run(cluster.start())
    try:
        yield cluster
    finally:
        asyncio.run(cluster.stop())


@pytest.fixture
def servers(etcd: EtcdCluster, tmp_path: Path) -> Iterator[list[PeapodCluster]]:
    spec = "etcd://" + ",".join(e.removeprefix("http://") for e in etcd.endpoints)
    started: list[PeapodCluster] = []
    try:
        for name in ("a", "b"):
            started.append(PeapodCluster(tmp_path / name, command="server", extra_args=["--store", spec]).start())
        yield started
    finally:
        for s in started:
            s.stop()


def identity(server: PeapodCluster) -> str:
    return ControlPlane(data_dir=server.data_dir, bind="127.0.0.1", port=server.port).identity()




def holder(server: PeapodCluster) -> str:
    return server.kubectl("get", *LEASE, "-o", "jsonpath={.spec.holderIdentity}").stdout


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def fake_node(name: str) -> dict[str, Any]:
    """A Node object no agent runs: Ready, with room for the pods, and a fresh Lease."""
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name,
                                                            "labels": {"kubernetes.io/hostname": name}},
            "status": {"allocatable": {"cpu": "8", "memory": "32Gi", "pods": "110"},
                       "capacity": {"cpu": "8", "memory": "32Gi", "pods": "110"},
                       "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                                       "lastHeartbeatTime": now(), "lastTransitionTime": now()}]}}


def pods(server: PeapodCluster, selector: str) -> list[dict[str, Any]]:
    out = server.kubectl("get", "pods", "-l", selector, "-o", "json", check=True).json()
    return list(out["items"])


def bound(server: PeapodCluster, selector: str, n: int, node: str) -> Callable[[], bool]:
    def check() -> bool:
        items = [p for p in pods(server, selector) if not p["metadata"].get("deletionTimestamp")]
        return len(items) == n and all(p["spec"].get("nodeName") == node for p in items)
    return check


def test_the_standby_takes_over_within_the_lease_duration_and_converges(servers: list[PeapodCluster]) -> None:
    a, b = servers
    ids = {identity(a): a, identity(b): b}
    first = wait_until(lambda: holder(a) in ids and holder(a), 20, "a server holds the lease")
    leader, standby = ids[first], next(s for i, s in ids.items() if i != first)
    # Both servers see the same store; the holder stays put while it lives.
    for _ in range(3):
        assert holder(standby) == first
        time.sleep(1)

    node = "fake-node"
    created = standby.kubectl("create", "-f", "-", input=json.dumps(fake_node(node)), check=True)
    assert "node/fake-node created" in created.stdout
    standby.kubectl("create", "-f", "-", check=True, input=json.dumps({
        "apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "rs", "namespace": "default"},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "rs"}}, "template": {
            "metadata": {"labels": {"app": "rs"}},
            "spec": {"containers": [{"name": "c", "image": "127.0.0.1:1/none:1"}]}}}}))
    wait_until(bound(standby, "app=rs", 3, node), 30, "the leader's controllers create and bind 3 pods")

    assert "acquired lease" in leader.log_tail(400) and "acquired lease" not in standby.log_tail(400)
    leader.kill()
    killed = time.monotonic()
    took = wait_until(lambda: holder(standby) == identity(standby) and time.monotonic() - killed, 30,
                      "the standby takes the lease")
    # It acts on a lease it observed unchanged for leaseDurationSeconds, polled every retryPeriod (2 s).
    assert took < LEASE_DURATION + 2 * 1.2 + 1, took
    assert f"{identity(standby)} acquired lease" in standby.log_tail(400)
    lease = standby.kubectl("get", *LEASE, "-o", "json", check=True).json()
    assert lease["spec"]["leaseDurationSeconds"] == int(LEASE_DURATION)
    assert lease["spec"]["leaseTransitions"] >= 1

    standby.kubectl("scale", "rs/rs", "--replicas=5", check=True)
    wait_until(bound(standby, "app=rs", 5, node), 30, "the new leader's controllers create and bind 5 pods")
    standby.kubectl("scale", "rs/rs", "--replicas=1", check=True)
    wait_until(lambda: len(pods(standby, "app=rs")) == 1 or
               sum(1 for p in pods(standby, "app=rs") if not p["metadata"].get("deletionTimestamp")) == 1, 30,
               "the new leader scales down")
    rs = standby.kubectl("get", "rs", "rs", "-o", "json", check=True).json()
    wait_until(lambda: standby.kubectl("get", "rs", "rs", "-o", "jsonpath={.status.replicas}").stdout == "1", 30,
               "the ReplicaSet status follows")
    assert rs["spec"]["replicas"] == 1
    print(f"takeover after kill -9: {took:.1f}s")
