"""CrossNodeNetwork's loop: follows Nodes through an informer, resyncs on a fake clock, publishes its
vxlan MAC, retries failures, and stop() removes everything."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from peapod.node.network.crossnode import CrossNodeNetwork
from peapod.node.network.crossnode_fakes import FakeDataplane, FakeFirewall, FakeNodeClient
from peapod.node.network.crossnode_plan import VXLAN_MAC_ANNOTATION, Fdb, Observed, Route, vtep_mac_for
from peapod.node.network.types import NetworkError
from peapod.testing.clock import FakeClock


def node(name: str, cidr: str, ip: str, mac: str | None = None) -> dict[str, Any]:
    md: dict[str, Any] = {"name": name}
    if mac:
        md["annotations"] = {VXLAN_MAC_ANNOTATION: mac}
    return {"metadata": md, "spec": {"podCIDR": cidr},
            "status": {"addresses": [{"type": "InternalIP", "address": ip}]}}


N1 = node("n1", "10.42.1.0/24", "10.200.0.1")
N2 = node("n2", "10.42.2.0/24", "10.200.0.2", vtep_mac_for("n2"))
N3 = node("n3", "10.42.3.0/24", "10.200.0.3", vtep_mac_for("n3"))


async def until(cond: Any, what: str = "") -> None:
    for _ in range(200):
        if cond():
            return
        await asyncio.sleep(0)
    raise AssertionError(f"never happened: {what}")


def make(mode: str, nodes: list[dict[str, Any]], **kw: Any) -> tuple[CrossNodeNetwork, FakeNodeClient,
                                                                     FakeDataplane, FakeFirewall, FakeClock]:
    client, dp, fw, clock = FakeNodeClient(nodes), FakeDataplane(), FakeFirewall(), FakeClock()
    net = CrossNodeNetwork(client, node_name="n1", node_ip="10.200.0.1", mode=mode, clock=clock,  # type: ignore[arg-type]
                           dataplane=dp, firewall=fw, resync_period=30, **kw)
    return net, client, dp, fw, clock


async def test_host_gw_follows_nodes_and_stop_cleans_up() -> None:
    net, client, dp, fw, _clock = make("host-gw", [N1, N2], cluster_cidr="10.42.0.0/16")
    await net.start()
    try:
        await until(lambda: dp.state.routes == {Route("10.42.2.0/24", "10.200.0.2")}, "route to n2")
        assert dp.forwarding and fw.forward == ("-s 10.42.0.0/16 -j ACCEPT", "-d 10.42.0.0/16 -j ACCEPT")
        client.set_nodes([N1, N2, N3])
        await until(lambda: len(dp.state.routes) == 2, "route to n3")
        client.set_nodes([N1, N3])
        await until(lambda: dp.state.routes == {Route("10.42.3.0/24", "10.200.0.3")}, "n2 removed")
        assert client.patches == []  # host-gw publishes nothing
    finally:
        await net.stop()
    assert (dp.state, fw.forward, fw.nat) == (Observed(), (), ())


async def test_vxlan_publishes_mac_and_programs_peers() -> None:
    net, client, dp, _fw, _clock = make("vxlan", [N1, N2])
    await net.start()
    try:
        await until(lambda: client.patches, "MAC published")
        assert client.patches == [("n1", {"metadata": {"annotations": {VXLAN_MAC_ANNOTATION: vtep_mac_for("n1")}}})]
        await until(lambda: dp.state.fdb == {Fdb(vtep_mac_for("n2"), "10.200.0.2")}, "fdb for n2")
        assert dp.state.vtep is not None and dp.state.vtep.mtu == 1450 and dp.state.vtep.local == "10.200.0.1"
        assert dp.state.routes == {Route("10.42.2.0/24", "10.42.2.0", vxlan=True)}
        # the patch came back through the watch; no second patch
        syncs = net.syncs
        await until(lambda: net.syncs > syncs)
        assert len(client.patches) == 1
    finally:
        await net.stop()
    assert dp.state == Observed()


async def test_resync_repairs_drift_and_errors_are_retried() -> None:
    net, _client, dp, fw, clock = make("host-gw", [N1, N2])
    await net.start()
    try:
        await until(lambda: dp.state.routes, "first sync")
        dp.state = Observed()  # someone flushed our routes
        await asyncio.sleep(0)
        assert dp.state.routes == frozenset()  # nothing happens until the resync period passes
        await until(lambda: clock.sleepers, "loop waiting")
        clock.advance(30)
        await until(lambda: dp.state.routes, "repaired")
        # a failing apply is retried sooner than the resync period (backoff from 1s)
        dp.fail = "boom"
        dp.state = Observed()
        await until(lambda: clock.sleepers, "waiting")
        clock.advance(30)
        await until(lambda: net.last_errors == ["boom"], "error recorded")
        dp.fail = None
        await until(lambda: clock.sleepers, "waiting")
        clock.advance(1)
        await until(lambda: dp.state.routes and net.last_errors == [], "retried")
        fw.fail = RuntimeError("iptables gone")
        await until(lambda: clock.sleepers, "waiting")
        clock.advance(30)
        await until(lambda: net.last_errors == ["firewall: iptables gone"], "firewall error")
    finally:
        fw.fail = None
        await net.stop()


async def test_restart_re_adopts_without_changes() -> None:
    net, client, dp, fw, _ = make("vxlan", [N1, N2, N3])
    await net.start()
    await until(lambda: len(dp.state.fdb) == 2, "programmed")
    for t in net._tasks:
        t.cancel()  # an agent crash: nothing is removed
    await asyncio.gather(*net._tasks, return_exceptions=True)
    installed = dp.state
    applied = len(dp.applied)
    again = CrossNodeNetwork(client, node_name="n1", node_ip="10.200.0.1", mode="vxlan",  # type: ignore[arg-type]
                             clock=FakeClock(), dataplane=dp, firewall=fw)
    await again.start()
    try:
        await until(lambda: again.syncs >= 1, "synced")
        assert dp.state == installed and len(dp.applied) == applied  # nothing re-done
    finally:
        await again.stop()


async def test_publish_failure_is_reported_and_retried() -> None:
    net, client, _dp, _fw, clock = make("vxlan", [N1, N2])
    client.fail_patch = PermissionError("forbidden")
    await net.start()
    try:
        await until(lambda: net.last_errors and "forbidden" in net.last_errors[0], "patch error")
        client.fail_patch = None
        await until(lambda: clock.sleepers, "waiting")
        clock.advance(1)
        await until(lambda: client.patches, "patched on retry")
    finally:
        await net.stop()


async def test_stop_reports_cleanup_errors() -> None:
    net, _client, dp, _fw, _ = make("host-gw", [N1, N2])

    async def broken() -> list[str]:
        return ["del route: EPERM"]

    dp.remove_all = broken  # type: ignore[method-assign]
    await net.start()
    with pytest.raises(NetworkError, match="EPERM"):
        await net.stop()


@pytest.mark.parametrize("kw", [{"mode": "udp"}, {"mode": "vxlan", "node_ip": "fd00::1"},
                                {"mode": "vxlan", "cluster_cidr": "10.42.0.1/33"}])
def test_bad_arguments(kw: dict[str, Any]) -> None:
    args = {"node_name": "n1", "node_ip": "10.200.0.1", **kw}
    with pytest.raises(ValueError):
        CrossNodeNetwork(FakeNodeClient(), dataplane=FakeDataplane(), firewall=FakeFirewall(), **args)  # type: ignore[arg-type]
