"""The cross-node planner: Nodes -> desired routes/fdb/neigh/rules for host-gw and vxlan, and diffs."""

from __future__ import annotations

from typing import Any

import pytest

from peapod.node.network.cni import CniConfig, build_conflist
from peapod.node.network.crossnode_plan import (
    VXLAN_MAC_ANNOTATION,
    Changes,
    Desired,
    Fdb,
    Neigh,
    NodeInfo,
    Observed,
    ObservedVtep,
    PlanInput,
    Route,
    Vtep,
    diff,
    node_info,
    plan,
    pod_mtu,
    vtep_address,
    vtep_mac_for,
)

MAC2 = "0a:00:00:00:00:02"
MAC3 = "0a:00:00:00:00:03"


def node(name: str, cidr: str | None, ip: str | None, mac: str | None = None, **extra: Any) -> dict[str, Any]:
    n: dict[str, Any] = {"metadata": {"name": name}, "spec": {}, "status": {}}
    if cidr:
        n["spec"]["podCIDR"] = cidr
    if ip:
        n["status"]["addresses"] = [{"type": "Hostname", "address": name}, {"type": "InternalIP", "address": ip}]
    if mac:
        n["metadata"]["annotations"] = {VXLAN_MAC_ANNOTATION: mac}
    for k, v in extra.items():
        n[k] = v
    return n


N1 = node("n1", "10.42.1.0/24", "10.200.0.1", "0a:00:00:00:00:01")
N2 = node("n2", "10.42.2.0/24", "10.200.0.2", MAC2)
N3 = node("n3", "10.42.3.0/24", "10.200.0.3", MAC3)
ME = PlanInput(node_name="n1", node_ip="10.200.0.1", mode="host-gw")
VX = PlanInput(node_name="n1", node_ip="10.200.0.1", mode="vxlan", vtep_mac="0a:00:00:00:00:01")


@pytest.mark.parametrize(("n", "want"), [
    (N2, NodeInfo("n2", "10.42.2.0/24", "10.200.0.2", MAC2)),
    (node("x", None, None), NodeInfo("x", None, None)),
    # podCIDRs (dual stack): the IPv4 one; a bad MAC annotation is ignored; MAC case folded
    ({"metadata": {"name": "d", "annotations": {VXLAN_MAC_ANNOTATION: "0A:BB:cc:dd:ee:FF"}},
      "spec": {"podCIDRs": ["fd00::/64", "10.42.9.0/24"]},
      "status": {"addresses": [{"type": "InternalIP", "address": "fd00::9"},
                               {"type": "InternalIP", "address": "10.200.0.9"}]}},
     NodeInfo("d", "10.42.9.0/24", "10.200.0.9", "0a:bb:cc:dd:ee:ff")),
    ({"metadata": {"name": "b", "annotations": {VXLAN_MAC_ANNOTATION: "nope"}},
      "spec": {"podCIDR": "garbage"}, "status": {"addresses": [{"type": "ExternalIP", "address": "1.2.3.4"}]}},
     NodeInfo("b", None, None, None)),
])
def test_node_info(n: dict[str, Any], want: NodeInfo) -> None:
    assert node_info(n) == want


@pytest.mark.parametrize(("inp", "nodes", "routes", "fdb", "neigh", "skipped"), [
    # host-gw: a route per other node via its InternalIP; our own node gets none
    (ME, [N1, N2, N3], {Route("10.42.2.0/24", "10.200.0.2"), Route("10.42.3.0/24", "10.200.0.3")}, set(), set(), []),
    # host-gw works before our own Node exists (we know our IP from the flag)
    (ME, [N2], {Route("10.42.2.0/24", "10.200.0.2")}, set(), set(), []),
    # nodes without podCIDR / InternalIP are skipped, with a reason
    (ME, [N1, node("n4", None, "10.200.0.4"), node("n5", "10.42.5.0/24", None)], set(), set(), set(),
     ["n4: no spec.podCIDR", "n5: no InternalIP"]),
    # a node claiming our IP or overlapping our podCIDR is ignored
    (ME, [N1, node("n6", "10.42.6.0/24", "10.200.0.1"), node("n7", "10.42.1.128/25", "10.200.0.7")], set(), set(),
     set(), ["n6: InternalIP 10.200.0.1 is this node's own",
             "n7: podCIDR 10.42.1.128/25 overlaps this node's 10.42.1.0/24"]),
    # two nodes with one podCIDR: the first (by name) wins
    (ME, [N2, node("n8", "10.42.2.0/24", "10.200.0.8")], {Route("10.42.2.0/24", "10.200.0.2")}, set(), set(),
     ["n8: podCIDR 10.42.2.0/24 is another node's too"]),
    # outside the cluster CIDR
    (PlanInput("n1", "10.200.0.1", "host-gw", cluster_cidr="10.42.0.0/16"), [N2, node("n9", "10.9.0.0/24", "10.2.0.9")],
     {Route("10.42.2.0/24", "10.200.0.2")}, set(), set(),
     ["n9: podCIDR 10.9.0.0/24 is outside the cluster CIDR 10.42.0.0/16"]),
    # vxlan: route via the remote vtep address onlink, fdb MAC -> node IP, neigh vtep IP -> MAC
    (VX, [N1, N2, N3],
     {Route("10.42.2.0/24", "10.42.2.0", vxlan=True), Route("10.42.3.0/24", "10.42.3.0", vxlan=True)},
     {Fdb(MAC2, "10.200.0.2"), Fdb(MAC3, "10.200.0.3")},
     {Neigh("10.42.2.0", MAC2), Neigh("10.42.3.0", MAC3)}, []),
    # vxlan: a node that has not published its MAC yet is skipped until it does
    (VX, [N1, node("n2", "10.42.2.0/24", "10.200.0.2")], set(), set(), set(),
     [f"n2: no {VXLAN_MAC_ANNOTATION} annotation yet"]),
])
def test_plan_entries(inp: PlanInput, nodes: list[dict[str, Any]], routes: set[Route], fdb: set[Fdb],
                      neigh: set[Neigh], skipped: list[str]) -> None:
    d = plan(inp, nodes)
    assert (set(d.routes), set(d.fdb), set(d.neigh), list(d.skipped)) == (routes, fdb, neigh, skipped)


def test_plan_vtep_only_with_own_pod_cidr() -> None:
    assert plan(VX, [N2]).vtep is None  # our Node (and its podCIDR) not known yet
    assert plan(ME, [N1, N2]).vtep is None
    v = plan(PlanInput("n1", "10.200.0.1", "vxlan", vtep_mtu=1450), [N1, N2]).vtep
    assert v == Vtep("peapod.vxlan", 1, 8472, "10.200.0.1", "10.42.1.0", vtep_mac_for("n1"), 1450)


def test_vtep_mac_is_stable_local_unicast() -> None:
    a, b = vtep_mac_for("node-a"), vtep_mac_for("node-b")
    assert a == vtep_mac_for("node-a") and a != b
    first = int(a.split(":")[0], 16)
    assert first & 0x02 and not first & 0x01  # locally administered, unicast
    assert vtep_address("10.42.7.0/24") == "10.42.7.0"
    assert (pod_mtu("vxlan", 1500), pod_mtu("host-gw", 1500), pod_mtu("vxlan", 9000)) == (1450, None, 8950)


@pytest.mark.parametrize(("inp", "forward", "nat"), [
    (ME, ("-s 10.42.1.0/24 -j ACCEPT", "-d 10.42.1.0/24 -j ACCEPT", "-s 10.42.2.0/24 -j ACCEPT",
          "-d 10.42.2.0/24 -j ACCEPT"), ()),
    (PlanInput("n1", "10.200.0.1", "host-gw", cluster_cidr="10.42.0.0/16", masquerade=True),
     ("-s 10.42.0.0/16 -j ACCEPT", "-d 10.42.0.0/16 -j ACCEPT"),
     ("-s 10.42.1.0/24 -d 10.42.0.0/16 -j RETURN", "-s 10.42.1.0/24 ! -d 224.0.0.0/4 -j MASQUERADE")),
    # without a cluster CIDR, every known pod CIDR is "inside"
    (PlanInput("n1", "10.200.0.1", "vxlan", masquerade=True),
     ("-s 10.42.1.0/24 -j ACCEPT", "-d 10.42.1.0/24 -j ACCEPT", "-s 10.42.2.0/24 -j ACCEPT",
      "-d 10.42.2.0/24 -j ACCEPT"),
     ("-s 10.42.1.0/24 -d 10.42.1.0/24 -j RETURN", "-s 10.42.1.0/24 -d 10.42.2.0/24 -j RETURN",
      "-s 10.42.1.0/24 ! -d 224.0.0.0/4 -j MASQUERADE")),
])
def test_plan_rules(inp: PlanInput, forward: tuple[str, ...], nat: tuple[str, ...]) -> None:
    d = plan(inp, [N1, N2])
    assert (d.forward_rules, d.nat_rules) == (forward, nat)


def test_plan_rejects_unknown_mode() -> None:
    with pytest.raises(ValueError, match="mode"):
        plan(PlanInput("n1", "10.200.0.1", "udp"), [])


VT = Vtep("peapod.vxlan", 1, 8472, "10.200.0.1", "10.42.1.0", "0a:00:00:00:00:01", 1450)
OV = ObservedVtep("peapod.vxlan", 1, 8472, "10.200.0.1", "0a:00:00:00:00:01", frozenset({"10.42.1.0/32"}), 1450)
R2 = Route("10.42.2.0/24", "10.200.0.2")
R3 = Route("10.42.3.0/24", "10.200.0.3")
V2 = Route("10.42.2.0/24", "10.42.2.0", vxlan=True)
V3 = Route("10.42.3.0/24", "10.42.3.0", vxlan=True)
F2, F3 = Fdb(MAC2, "10.200.0.2"), Fdb(MAC3, "10.200.0.3")
G2, G3 = Neigh("10.42.2.0", MAC2), Neigh("10.42.3.0", MAC3)


def fs(*xs: Any) -> frozenset[Any]:
    return frozenset(xs)


@pytest.mark.parametrize(("desired", "observed", "want"), [
    # nothing to do
    (Desired(routes=fs(R2)), Observed(routes=fs(R2)), Changes()),
    # added node -> route; removed node -> delete
    (Desired(routes=fs(R2, R3)), Observed(routes=fs(R2)), Changes(set_routes=(R3,))),
    (Desired(routes=fs(R2)), Observed(routes=fs(R2, R3)), Changes(del_routes=(R3,))),
    # a node's IP changed: replaced in place, not deleted first
    (Desired(routes=fs(Route("10.42.2.0/24", "10.200.0.22"))), Observed(routes=fs(R2)),
     Changes(set_routes=(Route("10.42.2.0/24", "10.200.0.22"),))),
    # fresh vxlan: create the device, then all entries
    (Desired(vtep=VT, routes=fs(V2), fdb=fs(F2), neigh=fs(G2)), Observed(),
     Changes(create_vtep=VT, set_routes=(V2,), set_fdb=(F2,), set_neigh=(G2,))),
    # re-adoption after a restart: everything already there -> nothing
    (Desired(vtep=VT, routes=fs(V2, V3), fdb=fs(F2, F3), neigh=fs(G2, G3)),
     Observed(vtep=OV, routes=fs(V2, V3), fdb=fs(F2, F3), neigh=fs(G2, G3)), Changes()),
    # node 3 removed in vxlan mode
    (Desired(vtep=VT, routes=fs(V2), fdb=fs(F2), neigh=fs(G2)),
     Observed(vtep=OV, routes=fs(V2, V3), fdb=fs(F2, F3), neigh=fs(G2, G3)),
     Changes(del_routes=(V3,), del_fdb=(F3,), del_neigh=(G3,))),
    # node 2 moved to another IP (same MAC): fdb entry swapped
    (Desired(vtep=VT, routes=fs(V2), fdb=fs(Fdb(MAC2, "10.200.0.22")), neigh=fs(G2)),
     Observed(vtep=OV, routes=fs(V2), fdb=fs(F2), neigh=fs(G2)),
     Changes(del_fdb=(F2,), set_fdb=(Fdb(MAC2, "10.200.0.22"),))),
    # node 2 re-created its device with a new MAC: neigh replaced in place, fdb swapped
    (Desired(vtep=VT, routes=fs(V2), fdb=fs(Fdb(MAC3, "10.200.0.2")), neigh=fs(Neigh("10.42.2.0", MAC3))),
     Observed(vtep=OV, routes=fs(V2), fdb=fs(F2), neigh=fs(G2)),
     Changes(del_fdb=(F2,), set_fdb=(Fdb(MAC3, "10.200.0.2"),), set_neigh=(Neigh("10.42.2.0", MAC3),))),
    # drift on our own device: wrong MAC, down, missing address, stray address, other MTU
    (Desired(vtep=VT), Observed(vtep=ObservedVtep("peapod.vxlan", 1, 8472, "10.200.0.1", "0a:ff:ff:ff:ff:ff",
                                                  fs("10.9.9.9/32"), 1500, up=False)),
     Changes(set_vtep_mac=VT.mac, set_vtep_mtu=1450, set_vtep_up=True, add_vtep_address="10.42.1.0/32",
             del_vtep_addresses=("10.9.9.9/32",))),
    # device with other settings (e.g. node IP changed): re-created; entries on it are gone with it
    (Desired(vtep=VT, routes=fs(V2), fdb=fs(F2), neigh=fs(G2)),
     Observed(vtep=ObservedVtep("peapod.vxlan", 1, 8472, "10.200.0.9", VT.mac), routes=fs(V2), fdb=fs(F2),
              neigh=fs(G2)),
     Changes(delete_vtep=True, create_vtep=VT, set_routes=(V2,), set_fdb=(F2,), set_neigh=(G2,))),
    # switched vxlan -> host-gw: device deleted, routes replaced in place
    (Desired(routes=fs(R2)), Observed(vtep=OV, routes=fs(V2), fdb=fs(F2), neigh=fs(G2)),
     Changes(delete_vtep=True, set_routes=(R2,), del_fdb=(F2,), del_neigh=(G2,))),
    # switched host-gw -> vxlan: host-gw routes replaced by vxlan ones
    (Desired(vtep=VT, routes=fs(V2), fdb=fs(F2), neigh=fs(G2)), Observed(routes=fs(R2, R3)),
     Changes(create_vtep=VT, del_routes=(R3,), set_routes=(V2,), set_fdb=(F2,), set_neigh=(G2,))),
    # everything removed (what stop() amounts to)
    (Desired(), Observed(vtep=OV, routes=fs(V2, R3), fdb=fs(F2), neigh=fs(G2)),
     Changes(delete_vtep=True, del_routes=(V2, R3), del_fdb=(F2,), del_neigh=(G2,))),
])
def test_diff(desired: Desired, observed: Observed, want: Changes) -> None:
    assert diff(desired, observed) == want


def test_diff_then_apply_converges() -> None:
    """plan -> diff -> (fake) apply -> diff is empty, for both modes and a node set change."""
    import asyncio

    from peapod.node.network.crossnode_fakes import FakeDataplane

    async def run() -> None:
        dp = FakeDataplane()
        for inp, nodes in [(VX, [N1, N2, N3]), (VX, [N1, N3]), (ME, [N1, N2]), (VX, [N1, N2]), (ME, [])]:
            want = plan(inp, nodes)
            await dp.apply(diff(want, await dp.observe()))
            assert diff(want, await dp.observe()).empty, (inp.mode, [n["metadata"]["name"] for n in nodes])

    asyncio.run(run())


@pytest.mark.parametrize(("cfg", "masq", "routes"), [
    (CniConfig(data_dir="/d"), False, [{"dst": "0.0.0.0/0"}]),  # single node: unchanged
    (CniConfig(data_dir="/d", ip_masq=True), True, [{"dst": "0.0.0.0/0"}]),
    (CniConfig(data_dir="/d", subnet="10.42.1.0/24", cluster_cidr="10.42.0.0/16", ip_masq=True), False,
     [{"dst": "0.0.0.0/0"}]),
    (CniConfig(data_dir="/d", subnet="10.42.1.0/24", cluster_cidr="10.42.0.0/16", default_route=False), False,
     [{"dst": "10.42.0.0/16"}]),
])
def test_cni_cluster_cidr(cfg: CniConfig, masq: bool, routes: list[dict[str, str]]) -> None:
    bridge = build_conflist(cfg)["plugins"][0]
    assert (bridge["ipMasq"], bridge["ipam"]["routes"]) == (masq, routes)


def test_cni_cluster_cidr_must_contain_subnet() -> None:
    with pytest.raises(ValueError, match="cluster CIDR"):
        build_conflist(CniConfig(data_dir="/d", subnet="10.43.1.0/24", cluster_cidr="10.42.0.0/16"))
