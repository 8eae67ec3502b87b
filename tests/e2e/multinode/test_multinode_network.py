"""Pods spread one per node and reach each other by IP across hosts, with host-gw routes and with VXLAN."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from peapod.testing.multinode import MultiNodeCluster, wait_until
from tests.e2e.multinode.helpers import NEEDS, busybox, http_get, httpd_deployment, ready_pods, started

pytestmark = [pytest.mark.e2e, pytest.mark.etcd, NEEDS]


@pytest.fixture(scope="module", params=["host-gw", "vxlan"])
def mcluster(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
             registry: Any) -> Iterator[MultiNodeCluster]:
    yield from started(tmp_path_factory.mktemp(f"mn-{request.param}"), nodes=3, network=request.param,
                       registries=[registry.host])


def test_cluster_up_is_fast_and_every_node_is_ready(mcluster: MultiNodeCluster) -> None:
    nodes = mcluster.get_json("nodes")["items"]
    assert sorted(n["metadata"]["name"] for n in nodes) == ["node-1", "node-2", "node-3"]
    assert {n["status"]["addresses"][0]["address"] for n in nodes} == {h.ip for h in mcluster.state.hosts}
    assert all(n["spec"].get("podCIDR") for n in nodes)
    assert f"export KUBECONFIG={mcluster.kubeconfig}" in mcluster.up_output
    assert mcluster.up_seconds < 20, mcluster.up_output


def test_anti_affinity_spreads_one_pod_per_node_and_pods_reach_each_other_across_nodes(
    mcluster: MultiNodeCluster, registry: Any
) -> None:
    mcluster.apply(httpd_deployment("spread", busybox(registry), 3, anti_affinity="required"))
    pods = wait_until(lambda: len(p := ready_pods(mcluster, "app=spread")) == 3 and p, 90, "3 pods are ready")
    by_node = {p["spec"]["nodeName"]: p for p in pods}
    assert sorted(by_node) == ["node-1", "node-2", "node-3"]
    cidrs = {n["metadata"]["name"]: n["spec"]["podCIDR"] for n in mcluster.get_json("nodes")["items"]}
    import ipaddress

    for node, p in by_node.items():
        assert ipaddress.ip_address(p["status"]["podIP"]) in ipaddress.ip_network(cidrs[node])
    src, dst = by_node["node-1"], by_node["node-3"]
    src_name, dst_name = src["metadata"]["name"], dst["metadata"]["name"]
    assert http_get(mcluster, src_name, dst["status"]["podIP"]) == f"hello from {dst_name}"
    # And back, node 3 -> node 1.
    assert http_get(mcluster, dst_name, src["status"]["podIP"]) == f"hello from {src_name}"
    mcluster.kubectl("delete", "deployment", "spread", "--wait=false", check=True)
