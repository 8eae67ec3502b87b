"""Node IPAM against the real API server: blocks handed out once, kept across a controller restart,
released on Node delete."""

from __future__ import annotations

from typing import Any

from peapod.client.rest import ApiClient
from peapod.clock import RealClock
from peapod.controlplane.controllers.nodeipam import NodeIpamController
from tests.integration.controllers.cluster import NODES, eventually, running


def node(name: str, cidr: str | None = None) -> dict[str, Any]:
    obj: dict[str, Any] = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}}
    if cidr:
        obj["spec"] = {"podCIDR": cidr, "podCIDRs": [cidr]}
    return obj


async def cidr_of(api: ApiClient, name: str) -> str | None:
    return ((await api.get(NODES, name)).get("spec") or {}).get("podCIDR")


async def test_nodes_get_distinct_blocks_and_a_restart_never_reuses_one(api: ApiClient) -> None:
    await api.create(NODES, node("preset", "10.99.1.0/24"))  # set by hand: never handed out again
    await api.create(NODES, node("outside", "10.77.0.0/16"))  # `peapod up`'s own range: left alone
    await api.create(NODES, node("a"))
    await api.create(NODES, node("b"))
    ctl = NodeIpamController(api, clock=RealClock(), cluster_cidr="10.99.0.0/16", node_cidr_mask_size=24)
    async with running(ctl.run()):
        a = await eventually(lambda: cidr_of(api, "a"), what="a's pod CIDR")
        b = await eventually(lambda: cidr_of(api, "b"), what="b's pod CIDR")
        assert len({a, b, "10.99.1.0/24"}) == 3
        got = await api.get(NODES, "a")
        assert got["spec"]["podCIDRs"] == [a]
        assert await cidr_of(api, "outside") == "10.77.0.0/16"
    # A new controller (another leader) rebuilds its map from the Nodes first.
    ctl2 = NodeIpamController(api, clock=RealClock(), cluster_cidr="10.99.0.0/16", node_cidr_mask_size=24)
    async with running(ctl2.run()):
        await api.create(NODES, node("c"))
        c = await eventually(lambda: cidr_of(api, "c"), what="c's pod CIDR")
        assert c not in (a, b, "10.99.1.0/24")
        await api.delete(NODES, "a")
        await eventually(lambda: _released(ctl2, a), what="a's block released")


async def _released(ctl: NodeIpamController, cidr: str) -> bool:
    return not ctl.cidrs.allocated(cidr)


async def test_a_full_range_leaves_the_node_without_a_block(api: ApiClient) -> None:
    ctl = NodeIpamController(api, clock=RealClock(), cluster_cidr="10.98.0.0/23", node_cidr_mask_size=24)
    async with running(ctl.run()):
        for n in ("x", "y"):
            await api.create(NODES, node(n))
        await eventually(lambda: cidr_of(api, "y"), what="y's pod CIDR")
        await api.create(NODES, node("z"))
        await eventually(lambda: _event_reason(api, "CIDRNotAvailable"), what="CIDRNotAvailable event")
        assert await cidr_of(api, "z") is None


async def _event_reason(api: ApiClient, reason: str) -> bool:
    from tests.integration.controllers.cluster import EVENTS

    items = (await api.list(EVENTS, "default")).get("items", [])
    return any(e.get("reason") == reason for e in items)
