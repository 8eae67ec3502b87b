"""Tables for the score plugins and their normalizers (kube's integer arithmetic)."""

from __future__ import annotations

from typing import Any

import pytest

from peapod.controlplane.scheduler import scores as S
from tests.unit.scheduler.builders import node, node_info, pi, pod, snapshot


@pytest.mark.parametrize(("incoming", "existing", "want"), [
    (pod(cpu="1", memory="2Gi"), [], 75),
    (pod(), [], 97),  # no requests: counted as 100m / 200Mi
    (pod(cpu="1", memory="2Gi"), [pod("a", cpu="2", memory="4Gi")], 25),
    (pod(cpu="5"), [], (0 + 97) // 2),  # over capacity scores 0 for that resource
    (pod(cpu="4", memory="8Gi"), [], 0),
])
def test_least_allocated(incoming: dict[str, Any], existing: list[Any], want: int) -> None:
    assert S.least_allocated(pi(incoming), node_info(node(cpu="4", memory="8Gi"), *existing)) == want


@pytest.mark.parametrize(("incoming", "existing", "want"), [
    (pod(cpu="1", memory="2Gi"), [], 100),
    (pod(cpu="1", memory="4Gi"), [], 87),  # |0.25 - 0.5| / 2 = 0.125
    (pod(cpu="2"), [pod("a", memory="8Gi")], 75),  # cpu 0.5, memory 1.0
    (pod(cpu="8", memory="1Gi"), [], 56),  # cpu capped at 1.0, memory 0.125
])
def test_balanced_allocation(incoming: dict[str, Any], existing: list[Any], want: int) -> None:
    assert S.balanced_allocation(pi(incoming), node_info(node(cpu="4", memory="8Gi"), *existing)) == want


def test_balanced_allocation_skips_best_effort() -> None:
    assert not S.balanced_allocation_applies(pi(pod()))
    assert S.balanced_allocation_applies(pi(pod(cpu="1")))


MB = 1024 * 1024


@pytest.mark.parametrize(("images", "image_nodes", "total", "want"), [
    ([], {}, 2, 0),
    ([{"names": ["busybox:latest"], "sizeBytes": 500 * MB}], {"busybox:latest": 1}, 2, 23),
    ([{"names": ["busybox:latest"], "sizeBytes": 500 * MB}], {"busybox:latest": 2}, 2, 48),
    ([{"names": ["busybox:latest"], "sizeBytes": 10 * MB}], {"busybox:latest": 2}, 2, 0),  # below 23MB
    ([{"names": ["busybox:latest"], "sizeBytes": 5000 * MB}], {"busybox:latest": 1}, 1, 100),
    ([{"names": ["other:1"], "sizeBytes": 500 * MB}], {"other:1": 1}, 1, 0),
])
def test_image_locality(images: list[Any], image_nodes: dict[str, int], total: int, want: int) -> None:
    ni = node_info(node(images=images))
    assert S.image_locality(pi(pod()), ni, total, image_nodes) == want


def test_image_name_normalization() -> None:
    from peapod.controlplane.scheduler.model import normalized_image_name

    assert normalized_image_name("busybox") == "busybox:latest"
    assert normalized_image_name("reg:5000/busybox") == "reg:5000/busybox:latest"
    assert normalized_image_name("reg:5000/busybox:1.36") == "reg:5000/busybox:1.36"


@pytest.mark.parametrize(("taints", "tolerations", "want"), [
    ([], [], 0),
    ([{"key": "a", "value": "1", "effect": "PreferNoSchedule"}], [], 1),
    ([{"key": "a", "value": "1", "effect": "PreferNoSchedule"},
      {"key": "b", "value": "", "effect": "PreferNoSchedule"}], [], 2),
    ([{"key": "a", "value": "1", "effect": "PreferNoSchedule"}], [{"key": "a", "operator": "Exists"}], 0),
    ([{"key": "a", "value": "1", "effect": "PreferNoSchedule"}],
     [{"key": "a", "operator": "Exists", "effect": "PreferNoSchedule"}], 0),
    ([{"key": "a", "value": "1", "effect": "PreferNoSchedule"}],
     [{"key": "a", "operator": "Exists", "effect": "NoSchedule"}], 1),
    ([{"key": "a", "value": "1", "effect": "NoSchedule"}], [], 0),  # only PreferNoSchedule counts
])
def test_taint_toleration_score(taints: list[Any], tolerations: list[Any], want: int) -> None:
    assert S.taint_toleration_score(pi(pod(tolerations=tolerations)), node_info(node(taints=taints))) == want


@pytest.mark.parametrize(("raw", "reverse", "want"), [
    ([0, 0, 0], False, [0, 0, 0]),
    ([0, 0, 0], True, [100, 100, 100]),
    ([1, 2, 4], False, [25, 50, 100]),
    ([0, 1, 2], True, [100, 50, 0]),
    ([3, 3], False, [100, 100]),
])
def test_default_normalize(raw: list[int], reverse: bool, want: list[int]) -> None:
    assert S.default_normalize(raw, reverse=reverse) == want


def preferred(*terms: tuple[int, dict[str, Any]]) -> dict[str, Any]:
    return {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": w, "preference": t} for w, t in terms]}}


@pytest.mark.parametrize(("labels", "want"), [
    ({}, 0),
    ({"zone": "a"}, 10),
    ({"zone": "a", "disk": "ssd"}, 15),
    ({"disk": "ssd"}, 5),
])
def test_node_affinity_score(labels: dict[str, str], want: int) -> None:
    p = pod(affinity=preferred(
        (10, {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}),
        (5, {"matchExpressions": [{"key": "disk", "operator": "Exists"}]}),
        (7, {}),  # an empty preference matches nothing
    ))
    assert S.node_affinity_score(pi(p), node_info(node(labels=labels))) == want


NODES = [node("n1", labels={"zone": "a"}), node("n2", labels={"zone": "a"}), node("n3", labels={"zone": "b"}),
         node("n4")]


def weighted(kind: str, *terms: tuple[int, dict[str, str], str]) -> dict[str, Any]:
    return {kind: {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": w, "podAffinityTerm": {"labelSelector": {"matchLabels": sel}, "topologyKey": key}}
        for w, sel, key in terms]}}


def ipa_scores(incoming: dict[str, Any], existing: list[Any]) -> dict[str, int]:
    snap = snapshot(NODES, existing)
    p = pi(incoming)
    topo = S.inter_pod_affinity_prescore(p, snap)
    nodes = snap.node_list()
    if topo is None:
        return {n.name: 0 for n in nodes}
    raw = [S.inter_pod_affinity_score(topo, n) for n in nodes]
    return dict(zip([n.name for n in nodes], S.inter_pod_affinity_normalize(raw), strict=True))


WEB = pod("web", labels={"app": "web"}, node="n1")


@pytest.mark.parametrize(("incoming", "existing", "want"), [
    (pod(), [WEB], {"n1": 0, "n2": 0, "n3": 0, "n4": 0}),
    (pod(affinity=weighted("podAffinity", (10, {"app": "web"}, "zone"))), [WEB],
     {"n1": 100, "n2": 100, "n3": 0, "n4": 0}),
    (pod(affinity=weighted("podAntiAffinity", (10, {"app": "web"}, "zone"))), [WEB],
     {"n1": 0, "n2": 0, "n3": 100, "n4": 100}),
    (pod(affinity={**weighted("podAffinity", (10, {"app": "web"}, "kubernetes.io/hostname")),
                   **weighted("podAntiAffinity", (5, {"app": "web"}, "zone"))}), [WEB],
     {"n1": 100, "n2": 0, "n3": 50, "n4": 50}),  # raw 5, -5, 0, 0
    # existing pods' preferred terms and hard affinity (weight 1) apply to the incoming pod
    (pod(labels={"app": "db"}),
     [pod("x", node="n3", affinity=weighted("podAffinity", (20, {"app": "db"}, "zone")))],
     {"n1": 0, "n2": 0, "n3": 100, "n4": 0}),
    (pod(labels={"app": "db"}),
     [pod("x", node="n3", affinity={"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
         {"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "zone"}]}})],
     {"n1": 0, "n2": 0, "n3": 100, "n4": 0}),
    (pod(labels={"app": "db"}),
     [pod("x", node="n3", affinity=weighted("podAntiAffinity", (20, {"app": "db"}, "zone")))],
     {"n1": 100, "n2": 100, "n3": 0, "n4": 100}),
])
def test_inter_pod_affinity_score(incoming: dict[str, Any], existing: list[Any],
                                  want: dict[str, int]) -> None:
    assert ipa_scores(incoming, existing) == want


ZONES = [node("a1", labels={"zone": "a"}), node("a2", labels={"zone": "a"}), node("b1", labels={"zone": "b"}),
         node("nolabel")]


def soft(key: str = "zone", max_skew: int = 1) -> dict[str, Any]:
    return {"maxSkew": max_skew, "topologyKey": key, "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": {"app": "web"}}}


def spread_scores(constraints: list[Any], existing: list[Any]) -> dict[str, int]:
    snap = snapshot(ZONES, existing)
    p = pi(pod(labels={"app": "web"}, topologySpreadConstraints=constraints))
    nodes = snap.node_list()
    st = S.pod_topology_spread_prescore(p, snap, nodes)
    assert st is not None
    raw = [S.pod_topology_spread_score(st, p, n) for n in nodes]
    names = [n.name for n in nodes]
    return dict(zip(names, S.pod_topology_spread_normalize(st, names, raw), strict=True))


def web(name: str, node_name: str) -> dict[str, Any]:
    return pod(name, labels={"app": "web"}, node=node_name)


@pytest.mark.parametrize(("constraints", "existing", "want"), [
    ([soft()], [], {"a1": 100, "a2": 100, "b1": 100, "nolabel": 0}),
    # zone a holds 2 matching pods, b none: raw a = round(2*ln(4)) = 3, b = 0
    ([soft()], [web("w1", "a1"), web("w2", "a2")], {"a1": 0, "a2": 0, "b1": 100, "nolabel": 0}),
    # raw a = 3, b = round(ln 4) = 1: 100 * (max + min - s) / max
    ([soft()], [web("w1", "a1"), web("w2", "a2"), web("w3", "b1")],
     {"a1": 33, "a2": 33, "b1": 100, "nolabel": 0}),
    # per-host: counts on the node itself, weight ln(3 + 2)
    ([soft("kubernetes.io/hostname")], [web("w1", "a1")], {"a1": 0, "a2": 100, "b1": 100, "nolabel": 100}),
])
def test_pod_topology_spread_score(constraints: list[Any], existing: list[Any], want: dict[str, int]) -> None:
    assert spread_scores(constraints, existing) == want


def test_spread_prescore_skips_without_soft_constraints() -> None:
    snap = snapshot(ZONES)
    assert S.pod_topology_spread_prescore(pi(pod()), snap, snap.node_list()) is None
