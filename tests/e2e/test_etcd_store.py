"""`peapod server --store etcd://...` on a real 3-member etcd cluster, driven by kubectl."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from peapod.testing.cluster import PeapodCluster
from peapod.testing.etcd import EtcdCluster

pytestmark = [pytest.mark.etcd, pytest.mark.skipif(not EtcdCluster.available(), reason="etcd is not installed")]


@pytest.fixture
def etcd(tmp_path: Path) -> Iterator[EtcdCluster]:
    cluster = EtcdCluster(tmp_path / "etcd")
    asyncio.run(cluster.start())
    try:
        yield cluster
    finally:
        asyncio.run(cluster.stop())


def test_server_on_etcd_serves_kubectl_and_survives_a_member_loss(etcd: EtcdCluster, tmp_path: Path) -> None:
    spec = "etcd://" + ",".join(e.removeprefix("http://") for e in etcd.endpoints)
    server = PeapodCluster(tmp_path / "data", command="server", extra_args=["--store", spec])
    server.start()
    try:
        assert server.kubectl("create", "configmap", "one", "--from-literal=a=b", check=True).stdout.strip() == \
            "configmap/one created"
        etcd.kill(1)
        assert server.kubectl("create", "configmap", "two", check=True).stdout.strip() == "configmap/two created"
        names = server.kubectl("get", "cm", "-o", "jsonpath={.items[*].metadata.name}", check=True).stdout.split()
        assert {"one", "two"} <= set(names)
        assert server.kubectl("get", "ns", "default", "-o", "name", check=True).stdout.strip() == "namespace/default"
    finally:
        server.stop()
    # The state is in etcd, not in the data dir: a new server on a fresh data dir sees it.
    again = PeapodCluster(tmp_path / "data2", command="server", extra_args=["--store", spec])
    again.start()
    try:
        names = again.kubectl("get", "cm", "-o", "jsonpath={.items[*].metadata.name}", check=True).stdout.split()
        assert {"one", "two"} <= set(names)
    finally:
        again.stop()
