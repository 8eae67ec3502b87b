"""CrossNodeNetwork against the real API server (in-process, SQLite, node authorization on): it follows
Nodes through its informer, publishes its vxlan MAC on its own Node with node credentials, and
follows another node's removal. The dataplane is the in-memory fake (the netlink side is covered by
test_crossnode.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from peapod.api.resources import resource
from peapod.client.rest import ApiClient
from peapod.node.network.crossnode import CrossNodeNetwork
from peapod.node.network.crossnode_fakes import FakeDataplane, FakeFirewall
from peapod.node.network.crossnode_plan import VXLAN_MAC_ANNOTATION, Fdb, Route, vtep_mac_for
from peapod.testing.waiting import eventually
from tests.integration.test_rbac import SecureServer

NODES = resource("", "v1", "nodes")


@pytest.fixture
def secure(tmp_path: Path) -> Iterator[SecureServer]:
    srv = SecureServer(tmp_path)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


async def make_node(admin: ApiClient, name: str, cidr: str, ip: str, mac: str | None = None) -> None:
    md: dict[str, Any] = {"name": name}
    if mac:
        md["annotations"] = {VXLAN_MAC_ANNOTATION: mac}
    await admin.create(NODES, {"apiVersion": "v1", "kind": "Node", "metadata": md, "spec": {"podCIDR": cidr}})
    await admin.patch(NODES, name, {"status": {"addresses": [{"type": "InternalIP", "address": ip}]}},
                      subresource="status")


async def test_follows_real_nodes_and_publishes_mac_as_the_node(secure: SecureServer) -> None:
    admin = ApiClient(secure.url, token="admin")
    node = ApiClient(secure.url, token="node1")  # system:node:n1
    dp, fw = FakeDataplane(), FakeFirewall()
    net = CrossNodeNetwork(node, node_name="n1", node_ip="10.200.0.1", mode="vxlan",  # type: ignore[arg-type]
                           cluster_cidr="10.42.0.0/16", dataplane=dp, firewall=fw)
    try:
        await make_node(admin, "n1", "10.42.1.0/24", "10.200.0.1")
        await make_node(admin, "n2", "10.42.2.0/24", "10.200.0.2", vtep_mac_for("n2"))
        await net.start()

        async def published() -> bool:
            n1 = await admin.get(NODES, "n1")
            return (n1["metadata"].get("annotations") or {}).get(VXLAN_MAC_ANNOTATION) == vtep_mac_for("n1")

        await eventually(published, timeout=10, what="n1's MAC on its Node")

        async def programmed() -> bool:
            return dp.state.fdb == {Fdb(vtep_mac_for("n2"), "10.200.0.2")}

        await eventually(programmed, timeout=10, what="fdb for n2")
        assert dp.state.routes == {Route("10.42.2.0/24", "10.42.2.0", vxlan=True)}
        assert net.last_errors == []
        await admin.delete(NODES, "n2")

        async def removed() -> bool:
            return not dp.state.fdb and not dp.state.routes

        await eventually(removed, timeout=10, what="n2's entries removed")
    finally:
        await net.stop()
        await admin.close()
        await node.close()
    assert not dp.state.routes and dp.state.vtep is None and fw.forward == ()
