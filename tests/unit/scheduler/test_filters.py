"""Tables for every filter plugin: reasons worded as kube-scheduler words them."""

from __future__ import annotations

from typing import Any

import pytest

from peapod.controlplane.scheduler import filters as F
from tests.unit.scheduler.builders import node, node_info, pi, pod, snapshot

UNSCHED_TOL = {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"}


def reasons(st: F.Status | None) -> tuple[str, ...]:
    return () if st is None else st.reasons


@pytest.mark.parametrize(("unschedulable", "tolerations", "want"), [
    (False, [], ()),
    (True, [], ("node(s) were unschedulable",)),
    (True, [UNSCHED_TOL], ()),
    (True, [{"operator": "Exists"}], ()),
    (True, [{"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoExecute"}],
     ("node(s) were unschedulable",)),
])
def test_node_unschedulable(unschedulable: bool, tolerations: list[Any], want: tuple[str, ...]) -> None:
    st = F.node_unschedulable(pi(pod(tolerations=tolerations)), node_info(node(unschedulable=unschedulable)))
    assert reasons(st) == want
    if st is not None:
        assert st.unresolvable


T = {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}


@pytest.mark.parametrize(("taints", "ready", "tolerations", "want"), [
    ([], "True", [], ()),
    ([T], "True", [], ("node(s) had untolerated taint {dedicated: gpu}",)),
    ([T], "True", [{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}], ()),
    ([T], "True", [{"key": "dedicated", "value": "gpu"}], ()),  # empty operator means Equal, any effect
    ([T], "True", [{"key": "dedicated", "value": "cpu"}],
     ("node(s) had untolerated taint {dedicated: gpu}",)),
    ([T], "True", [{"key": "dedicated", "operator": "Exists"}], ()),
    ([T], "True", [{"operator": "Exists"}], ()),
    ([T], "True", [{"key": "dedicated", "operator": "Exists", "effect": "NoExecute"}],
     ("node(s) had untolerated taint {dedicated: gpu}",)),
    ([{"key": "k", "value": "", "effect": "NoExecute"}], "True", [],
     ("node(s) had untolerated taint {k: }",)),
    ([{"key": "soft", "value": "x", "effect": "PreferNoSchedule"}], "True", [], ()),
    ([], "False", [], ("node(s) had untolerated taint {node.kubernetes.io/not-ready: }",)),
    ([], None, [], ("node(s) had untolerated taint {node.kubernetes.io/not-ready: }",)),
    ([], "Unknown", [], ("node(s) had untolerated taint {node.kubernetes.io/unreachable: }",)),
    ([], "False", [{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoSchedule"}],
     ()),
    # Default tolerations (NoExecute, 300s) do not tolerate the NoSchedule not-ready taint.
    ([], "False", [{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute",
                    "tolerationSeconds": 300}],
     ("node(s) had untolerated taint {node.kubernetes.io/not-ready: }",)),
    ([T, {"key": "b", "value": "2", "effect": "NoSchedule"}], "True",
     [{"key": "dedicated", "operator": "Exists"}], ("node(s) had untolerated taint {b: 2}",)),
])
def test_taint_toleration(taints: list[Any], ready: str | None, tolerations: list[Any],
                          want: tuple[str, ...]) -> None:
    st = F.taint_toleration(pi(pod(tolerations=tolerations)), node_info(node(taints=taints, ready=ready)))
    assert reasons(st) == want


def test_memory_pressure_condition_taints() -> None:
    n = node()
    n["status"]["conditions"].append({"type": "MemoryPressure", "status": "True"})
    st = F.taint_toleration(pi(pod()), node_info(n))
    assert reasons(st) == ("node(s) had untolerated taint {node.kubernetes.io/memory-pressure: }",)


def req(key: str, op: str, *values: str) -> dict[str, Any]:
    r: dict[str, Any] = {"key": key, "operator": op}
    if values:
        r["values"] = list(values)
    return r


def required(*terms: dict[str, Any]) -> dict[str, Any]:
    selector = {"nodeSelectorTerms": list(terms)}
    return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": selector}}


NA = ("node(s) didn't match Pod's node affinity/selector",)
LABELS = {"zone": "a", "disk": "ssd", "cores": "8"}


@pytest.mark.parametrize(("spec", "want"), [
    ({}, ()),
    ({"nodeSelector": {"zone": "a"}}, ()),
    ({"nodeSelector": {"zone": "b"}}, NA),
    ({"nodeSelector": {"zone": "a", "gpu": "yes"}}, NA),
    ({"affinity": required({"matchExpressions": [req("zone", "In", "a", "b")]})}, ()),
    ({"affinity": required({"matchExpressions": [req("zone", "In", "b")]})}, NA),
    ({"affinity": required({"matchExpressions": [req("zone", "NotIn", "b")]})}, ()),
    ({"affinity": required({"matchExpressions": [req("zone", "NotIn", "a")]})}, NA),
    ({"affinity": required({"matchExpressions": [req("gpu", "NotIn", "x")]})}, ()),
    ({"affinity": required({"matchExpressions": [req("disk", "Exists")]})}, ()),
    ({"affinity": required({"matchExpressions": [req("gpu", "Exists")]})}, NA),
    ({"affinity": required({"matchExpressions": [req("gpu", "DoesNotExist")]})}, ()),
    ({"affinity": required({"matchExpressions": [req("disk", "DoesNotExist")]})}, NA),
    ({"affinity": required({"matchExpressions": [req("cores", "Gt", "4")]})}, ()),
    ({"affinity": required({"matchExpressions": [req("cores", "Gt", "8")]})}, NA),
    ({"affinity": required({"matchExpressions": [req("cores", "Lt", "16")]})}, ()),
    ({"affinity": required({"matchExpressions": [req("zone", "Lt", "16")]})}, NA),  # not an integer
    ({"affinity": required({"matchFields": [req("metadata.name", "In", "n1")]})}, ()),
    ({"affinity": required({"matchFields": [req("metadata.name", "In", "n2")]})}, NA),
    ({"affinity": required({"matchFields": [req("metadata.name", "NotIn", "n2")]})}, ()),
    # terms are ORed, expressions within a term ANDed
    ({"affinity": required({"matchExpressions": [req("zone", "In", "b")]},
                           {"matchExpressions": [req("disk", "In", "ssd")]})}, ()),
    ({"affinity": required({"matchExpressions": [req("zone", "In", "a"), req("disk", "In", "hdd")]})}, NA),
    ({"affinity": required({})}, NA),  # an empty term matches nothing
    ({"affinity": required()}, NA),
    # nodeSelector and affinity are ANDed
    ({"nodeSelector": {"zone": "b"},
      "affinity": required({"matchExpressions": [req("zone", "In", "a")]})}, NA),
])
def test_node_affinity(spec: dict[str, Any], want: tuple[str, ...]) -> None:
    st = F.node_affinity(pi(pod(**spec)), node_info(node("n1", labels=LABELS)))
    assert reasons(st) == want


def ported(*ports: tuple[str | None, str | None, int]) -> dict[str, Any]:
    p = pod()
    out = []
    for ip, proto, port in ports:
        entry: dict[str, Any] = {"containerPort": port, "hostPort": port}
        if ip:
            entry["hostIP"] = ip
        if proto:
            entry["protocol"] = proto
        out.append(entry)
    p["spec"]["containers"][0]["ports"] = out
    return p


PORTS = ("node(s) didn't have free ports for the requested pod ports",)


@pytest.mark.parametrize(("existing", "wanted", "want"), [
    ([], [(None, None, 80)], ()),
    ([(None, None, 80)], [(None, None, 80)], PORTS),
    ([(None, None, 80)], [(None, None, 81)], ()),
    ([(None, "UDP", 80)], [(None, "TCP", 80)], ()),
    ([(None, "UDP", 53)], [(None, "UDP", 53)], PORTS),
    ([("10.0.0.1", None, 80)], [("10.0.0.2", None, 80)], ()),
    ([("10.0.0.1", None, 80)], [("10.0.0.1", None, 80)], PORTS),
    ([("10.0.0.1", None, 80)], [(None, None, 80)], PORTS),  # 0.0.0.0 conflicts with every IP
    ([(None, None, 80)], [("10.0.0.1", None, 80)], PORTS),
])
def test_node_ports(existing: list[Any], wanted: list[Any], want: tuple[str, ...]) -> None:
    ni = node_info(node(), ported(*existing)) if existing else node_info(node())
    assert reasons(F.node_ports(pi(ported(*wanted)), ni)) == want


def with_init(p: dict[str, Any], *inits: tuple[str, bool]) -> dict[str, Any]:
    p["spec"]["initContainers"] = [
        {"name": f"i{i}", "image": "busybox", "resources": {"requests": {"cpu": cpu}},
         **({"restartPolicy": "Always"} if sidecar else {})}
        for i, (cpu, sidecar) in enumerate(inits)
    ]
    return p


@pytest.mark.parametrize(("incoming", "existing", "alloc", "want"), [
    (pod(cpu="1"), [], {}, ()),
    (pod(cpu="5"), [], {}, ("Insufficient cpu",)),
    (pod(cpu="2"), [pod("a", cpu="3")], {}, ("Insufficient cpu",)),
    (pod(cpu="1"), [pod("a", cpu="3")], {}, ()),
    (pod(memory="9Gi"), [], {}, ("Insufficient memory",)),
    (pod(cpu="5", memory="9Gi"), [], {}, ("Insufficient cpu", "Insufficient memory")),
    (pod(), [pod("a")], {"pods": "1"}, ("Too many pods",)),
    (pod(cpu="5"), [pod("a")], {"pods": "1"}, ("Too many pods", "Insufficient cpu")),
    (pod(), [pod("a", cpu="4")], {}, ()),  # no requests: only the pod count matters
    # init containers: max of (each init), not the sum
    (with_init(pod(cpu="1"), ("3", False), ("3", False)), [], {}, ()),
    (with_init(pod(cpu="1"), ("5", False)), [], {}, ("Insufficient cpu",)),
    # sidecars add up with the app containers
    (with_init(pod(cpu="2"), ("1", True), ("1", True)), [], {}, ()),
    (with_init(pod(cpu="2"), ("1", True), ("1", True), ("1", True)), [], {}, ("Insufficient cpu",)),
    # a plain init container after a sidecar needs its own request plus the sidecar's
    (with_init(pod(cpu="100m"), ("1", True), ("3.5", False)), [], {}, ("Insufficient cpu",)),
    ({**pod(cpu="3"), "spec": {**pod(cpu="3")["spec"], "overhead": {"cpu": "1500m"}}}, [], {},
     ("Insufficient cpu",)),
    (pod(**{}), [], {}, ()),
])
def test_node_resources_fit(incoming: dict[str, Any], existing: list[Any], alloc: dict[str, str],
                            want: tuple[str, ...]) -> None:
    ni = node_info(node(**alloc), *existing)
    assert reasons(F.node_resources_fit(pi(incoming), ni)) == want


def test_resources_fit_extended_and_ephemeral_and_limits_default() -> None:
    p = pod()
    p["spec"]["containers"][0]["resources"] = {"limits": {"example.com/gpu": "2", "ephemeral-storage": "2Gi"}}
    ni = node_info(node(**{"example.com/gpu": "1", "ephemeral-storage": "1Gi"}))
    st = F.node_resources_fit(pi(p), ni)
    assert reasons(st) == ("Insufficient ephemeral-storage", "Insufficient example.com/gpu")
    assert st is not None and st.unresolvable  # the request exceeds what the node has at all


def test_resources_fit_resolvable_when_others_use_it() -> None:
    st = F.node_resources_fit(pi(pod(cpu="2")), node_info(node(), pod("a", cpu="3")))
    assert st is not None and not st.unresolvable


# -- InterPodAffinity ---------------------------------------------------------------------------
def term(labels: dict[str, str], key: str = "kubernetes.io/hostname", **extra: Any) -> dict[str, Any]:
    return {"labelSelector": {"matchLabels": labels}, "topologyKey": key, **extra}


def affinity(kind: str, *terms: dict[str, Any]) -> dict[str, Any]:
    return {kind: {"requiredDuringSchedulingIgnoredDuringExecution": list(terms)}}


NODES = [node("n1", labels={"zone": "a"}), node("n2", labels={"zone": "a"}), node("n3", labels={"zone": "b"}),
         node("n4")]
AFF = "node(s) didn't match pod affinity rules"
ANTI = "node(s) didn't match pod anti-affinity rules"
EXISTING = "node(s) didn't satisfy existing pods anti-affinity rules"


def run_affinity(incoming: dict[str, Any], existing: list[dict[str, Any]],
                 namespaces: dict[str, dict[str, str]] | None = None) -> dict[str, str]:
    snap = snapshot(NODES, existing, namespaces)
    p = pi(incoming)
    st = F.inter_pod_affinity_prefilter(p, snap)
    out = {}
    for n in snap.node_list():
        r = F.inter_pod_affinity(st, p, n) if st is not None else None
        out[n.name] = r.reasons[0] if r else ""
    return out


WEB_N1 = pod("web", labels={"app": "web"}, node="n1")


@pytest.mark.parametrize(("incoming", "existing", "want"), [
    # required affinity to app=web on the same host
    (pod(affinity=affinity("podAffinity", term({"app": "web"}))), [WEB_N1],
     {"n1": "", "n2": AFF, "n3": AFF, "n4": AFF}),
    # same zone
    (pod(affinity=affinity("podAffinity", term({"app": "web"}, "zone"))), [WEB_N1],
     {"n1": "", "n2": "", "n3": AFF, "n4": AFF}),
    # no matching pod anywhere: unschedulable, unless the pod matches its own term
    (pod(affinity=affinity("podAffinity", term({"app": "web"}))), [],
     {"n1": AFF, "n2": AFF, "n3": AFF, "n4": AFF}),
    (pod(labels={"app": "web"}, affinity=affinity("podAffinity", term({"app": "web"}, "zone"))), [],
     {"n1": "", "n2": "", "n3": "", "n4": AFF}),
    # other namespaces do not count by default
    (pod(affinity=affinity("podAffinity", term({"app": "web"}))),
     [pod("web", ns="other", labels={"app": "web"}, node="n1")],
     {"n1": AFF, "n2": AFF, "n3": AFF, "n4": AFF}),
    (pod(affinity=affinity("podAffinity", term({"app": "web"}, namespaces=["other"]))),
     [pod("web", ns="other", labels={"app": "web"}, node="n1")],
     {"n1": "", "n2": AFF, "n3": AFF, "n4": AFF}),
    # anti-affinity of the incoming pod
    (pod(affinity=affinity("podAntiAffinity", term({"app": "web"}))), [WEB_N1],
     {"n1": ANTI, "n2": "", "n3": "", "n4": ""}),
    (pod(affinity=affinity("podAntiAffinity", term({"app": "web"}, "zone"))), [WEB_N1],
     {"n1": ANTI, "n2": ANTI, "n3": "", "n4": ""}),
    # existing pods' anti-affinity against the incoming pod (symmetry)
    (pod(labels={"app": "db"}),
     [pod("x", labels={"app": "web"}, node="n1",
          affinity=affinity("podAntiAffinity", term({"app": "db"}, "zone")))],
     {"n1": EXISTING, "n2": EXISTING, "n3": "", "n4": ""}),
    (pod(labels={"app": "cache"}),
     [pod("x", labels={"app": "web"}, node="n1", affinity=affinity("podAntiAffinity", term({"app": "db"})))],
     {"n1": "", "n2": "", "n3": "", "n4": ""}),
])
def test_inter_pod_affinity(incoming: dict[str, Any], existing: list[Any], want: dict[str, str]) -> None:
    assert run_affinity(incoming, existing) == want


def test_inter_pod_affinity_namespace_selector() -> None:
    web = pod("web", ns="prod", labels={"app": "web"}, node="n3")
    ns_sel = term({"app": "web"}, namespaceSelector={"matchLabels": {"env": "prod"}})
    incoming = pod(affinity=affinity("podAffinity", ns_sel))
    got = run_affinity(incoming, [web], {"prod": {"env": "prod"}, "default": {}})
    assert got == {"n1": AFF, "n2": AFF, "n3": "", "n4": AFF}
    got = run_affinity(incoming, [web], {"prod": {"env": "dev"}})
    assert got["n3"] == AFF
    # an empty namespaceSelector selects every namespace
    everywhere = pod(affinity=affinity("podAntiAffinity", term({"app": "web"}, namespaceSelector={})))
    assert run_affinity(everywhere, [web])["n3"] == ANTI
    # existing pod's anti-affinity with a namespaceSelector, matched against the incoming pod's namespace
    guard = pod("g", ns="prod", labels={}, node="n1", affinity=affinity(
        "podAntiAffinity", term({"app": "db"}, namespaceSelector={"matchLabels": {"team": "x"}})))
    got = run_affinity(pod("db", ns="default", labels={"app": "db"}), [guard], {"default": {"team": "x"}})
    assert got["n1"] == EXISTING and got["n2"] == ""
    got = run_affinity(pod("db", ns="default", labels={"app": "db"}), [guard], {"default": {"team": "y"}})
    assert got["n1"] == ""


def test_inter_pod_affinity_match_label_keys() -> None:
    existing = [pod("a", labels={"app": "web", "rev": "1"}, node="n1"),
                pod("b", labels={"app": "web", "rev": "2"}, node="n2")]
    incoming = pod(labels={"app": "web", "rev": "2"},
                   affinity=affinity("podAntiAffinity", term({"app": "web"}, matchLabelKeys=["rev"])))
    assert run_affinity(incoming, existing) == {"n1": "", "n2": ANTI, "n3": "", "n4": ""}


# -- PodTopologySpread --------------------------------------------------------------------------
ZONES = [node("a1", labels={"zone": "a"}), node("a2", labels={"zone": "a"}), node("b1", labels={"zone": "b"}),
         node("c1", labels={"zone": "c"}), node("nolabel")]
SPREAD = "node(s) didn't match pod topology spread constraints"
MISSING = SPREAD + " (missing required label)"


def spread(max_skew: int = 1, key: str = "zone", when: str = "DoNotSchedule", **extra: Any) -> dict[str, Any]:
    return {"maxSkew": max_skew, "topologyKey": key, "whenUnsatisfiable": when,
            "labelSelector": {"matchLabels": {"app": "web"}}, **extra}


def web(name: str, node_name: str, **kw: Any) -> dict[str, Any]:
    return pod(name, labels={"app": "web"}, node=node_name, **kw)


def run_spread(constraints: list[Any], existing: list[Any], nodes: list[Any] = ZONES,
               **spec: Any) -> dict[str, str]:
    snap = snapshot(nodes, existing)
    p = pi(pod(labels={"app": "web"}, topologySpreadConstraints=constraints, **spec))
    st = F.pod_topology_spread_prefilter(p, snap)
    out = {}
    for n in snap.node_list():
        r = F.pod_topology_spread(st, p, n) if st is not None else None
        out[n.name] = r.reasons[0] if r else ""
    return out


@pytest.mark.parametrize(("constraints", "existing", "want"), [
    ([spread()], [], {"a1": "", "a2": "", "b1": "", "c1": "", "nolabel": MISSING}),
    ([spread()], [web("w1", "a1")], {"a1": SPREAD, "a2": SPREAD, "b1": "", "c1": "", "nolabel": MISSING}),
    ([spread(2)], [web("w1", "a1")], {"a1": "", "a2": "", "b1": "", "c1": "", "nolabel": MISSING}),
    ([spread()], [web("w1", "a1"), web("w2", "b1"), web("w3", "c1")],
     {"a1": "", "a2": "", "b1": "", "c1": "", "nolabel": MISSING}),
    # pods of other apps, other namespaces, or terminating do not count
    ([spread()], [pod("x", labels={"app": "db"}, node="a1"),
                  pod("y", ns="other", labels={"app": "web"}, node="a1")],
     {"a1": "", "a2": "", "b1": "", "c1": "", "nolabel": MISSING}),
    # ScheduleAnyway never filters
    ([spread(when="ScheduleAnyway")], [web("w1", "a1")],
     {"a1": "", "a2": "", "b1": "", "c1": "", "nolabel": ""}),
    # minDomains above the number of domains: the global minimum is 0
    ([spread(minDomains=5)], [web("w1", "a1"), web("w2", "b1"), web("w3", "c1")],
     {"a1": SPREAD, "a2": SPREAD, "b1": SPREAD, "c1": SPREAD, "nolabel": MISSING}),
    # hostname spreading
    ([spread(key="kubernetes.io/hostname")], [web("w1", "a1")],
     {"a1": SPREAD, "a2": "", "b1": "", "c1": "", "nolabel": ""}),
])
def test_pod_topology_spread(constraints: list[Any], existing: list[Any], want: dict[str, str]) -> None:
    assert run_spread(constraints, existing) == want


def test_spread_node_affinity_policy() -> None:
    # With the default Honor policy, zone c (excluded by nodeSelector) is not a domain, so the minimum
    # over a and b is 1 and zone a (count 1) is still allowed; with Ignore, zone c's 0 is the minimum.
    existing = [web("w1", "a1"), web("w2", "b1")]
    sel = {"nodeSelector": {"zone": "a"}}
    nodes = ZONES[:4]
    honor = run_spread([spread()], existing, nodes, **sel)
    assert honor["a1"] == ""
    ignore = run_spread([spread(nodeAffinityPolicy="Ignore")], existing, nodes, **sel)
    assert ignore["a1"] == SPREAD


def test_spread_node_taints_policy() -> None:
    tainted = node("c1", labels={"zone": "c"}, taints=[{"key": "k", "value": "v", "effect": "NoSchedule"}])
    nodes = [*ZONES[:3], tainted]
    existing = [web("w1", "a1"), web("w2", "b1")]
    assert run_spread([spread()], existing, nodes)["a1"] == SPREAD  # Ignore: c counts with 0
    assert run_spread([spread(nodeTaintsPolicy="Honor")], existing, nodes)["a1"] == ""
