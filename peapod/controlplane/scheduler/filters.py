"""Filter plugins: pure functions (pod, node[, pre-computed state]) -> None (fits) or a Status.

Reasons are worded exactly as kube-scheduler words them, since they end up in the
FailedScheduling message users read. ``unresolvable`` mirrors kube's UnschedulableAndUnresolvable
code (preemption cannot help), which only changes the "preemption:" part of that message.
Order of evaluation (see :data:`FILTER_ORDER`) is kube's default plugin order; the first failing
plugin decides a node's reasons.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from peapod.controlplane.scheduler.model import (
    TAINT_UNSCHEDULABLE,
    AffinityTerm,
    NodeInfo,
    PodInfo,
    SpreadConstraint,
    Taint,
    tolerated,
)
from peapod.controlplane.scheduler.snapshot import Snapshot

ERR_UNSCHEDULABLE = "node(s) were unschedulable"
ERR_NODE_NAME = "node(s) didn't match the requested node name"
ERR_NODE_AFFINITY = "node(s) didn't match Pod's node affinity/selector"
ERR_NODE_PORTS = "node(s) didn't have free ports for the requested pod ports"
ERR_TOO_MANY_PODS = "Too many pods"
ERR_AFFINITY = "node(s) didn't match pod affinity rules"
ERR_ANTI_AFFINITY = "node(s) didn't match pod anti-affinity rules"
ERR_EXISTING_ANTI_AFFINITY = "node(s) didn't satisfy existing pods anti-affinity rules"
ERR_SPREAD = "node(s) didn't match pod topology spread constraints"
ERR_SPREAD_MISSING_LABEL = ERR_SPREAD + " (missing required label)"


@dataclass(frozen=True, slots=True)
class Status:
    plugin: str
    reasons: tuple[str, ...]
    unresolvable: bool = False


_UNSCHEDULABLE = Status("NodeUnschedulable", (ERR_UNSCHEDULABLE,), True)
_NODE_NAME = Status("NodeName", (ERR_NODE_NAME,), True)
_NODE_AFFINITY = Status("NodeAffinity", (ERR_NODE_AFFINITY,), True)
_NODE_PORTS = Status("NodePorts", (ERR_NODE_PORTS,))
_AFFINITY = Status("InterPodAffinity", (ERR_AFFINITY,), True)
_ANTI_AFFINITY = Status("InterPodAffinity", (ERR_ANTI_AFFINITY,))
_EXISTING_ANTI = Status("InterPodAffinity", (ERR_EXISTING_ANTI_AFFINITY,))
_SPREAD = Status("PodTopologySpread", (ERR_SPREAD,))
_SPREAD_LABEL = Status("PodTopologySpread", (ERR_SPREAD_MISSING_LABEL,), True)
_UNSCHEDULABLE_TAINT = Taint(TAINT_UNSCHEDULABLE, "", "NoSchedule")


def node_unschedulable(pod: PodInfo, node: NodeInfo) -> Status | None:
    if node.unschedulable and not tolerated(pod.tolerations, _UNSCHEDULABLE_TAINT):
        return _UNSCHEDULABLE
    return None


def node_name(pod: PodInfo, node: NodeInfo) -> Status | None:
    wanted = (pod.obj.get("spec") or {}).get("nodeName")
    if wanted and wanted != node.name:
        return _NODE_NAME
    return None


def untolerated_taint(pod: PodInfo, taints: Iterable[Taint]) -> Taint | None:
    for t in taints:
        if not tolerated(pod.tolerations, t):
            return t
    return None


def taint_toleration(pod: PodInfo, node: NodeInfo) -> Status | None:
    """NoSchedule/NoExecute taints (incl. the not-ready one derived from the Ready condition)."""
    if not node.hard_taints:
        return None
    t = untolerated_taint(pod, node.hard_taints)
    if t is None:
        return None
    return Status("TaintToleration", (f"node(s) had untolerated taint {{{t.key}: {t.value}}}",), True)


def node_affinity(pod: PodInfo, node: NodeInfo) -> Status | None:
    if pod.matches_node_selector_and_affinity(node.labels, node.name):
        return None
    return _NODE_AFFINITY


def node_ports(pod: PodInfo, node: NodeInfo) -> Status | None:
    """A wanted (ip, protocol, port) conflicts with a used one on the same ip or on 0.0.0.0."""
    used = node.used_ports
    if not used:
        return None
    for ip, proto, port in pod.host_ports:
        ips = used.get((proto, port))
        if not ips:
            continue
        if ip == "0.0.0.0" or "0.0.0.0" in ips or ip in ips:
            return _NODE_PORTS
    return None


def node_resources_fit(pod: PodInfo, node: NodeInfo) -> Status | None:
    alloc = node.alloc
    reasons: list[str] = []
    unresolvable = False
    if len(node.pods) + 1 > alloc.pods:
        reasons.append(ERR_TOO_MANY_PODS)
    r = pod.requests
    if pod.requests_zero:
        return Status("NodeResourcesFit", tuple(reasons)) if reasons else None
    used = node.requested
    if r.cpu > 0 and r.cpu > alloc.cpu - used.cpu:
        reasons.append("Insufficient cpu")
        unresolvable |= r.cpu > alloc.cpu
    if r.memory > 0 and r.memory > alloc.memory - used.memory:
        reasons.append("Insufficient memory")
        unresolvable |= r.memory > alloc.memory
    if r.ephemeral > 0 and r.ephemeral > alloc.ephemeral - used.ephemeral:
        reasons.append("Insufficient ephemeral-storage")
        unresolvable |= r.ephemeral > alloc.ephemeral
    for name, q in r.scalar.items():
        if q == 0:
            continue
        have = alloc.scalar.get(name, 0)
        if q > have - used.scalar.get(name, 0):
            reasons.append(f"Insufficient {name}")
            unresolvable |= q > have
    if not reasons:
        return None
    return Status("NodeResourcesFit", tuple(reasons), unresolvable)


# -- InterPodAffinity ---------------------------------------------------------------------------
@dataclass(slots=True)
class AffinityState:
    """PreFilter state: topology pairs (key -> values) that block or satisfy the incoming pod."""

    existing_anti: dict[str, set[str]] = field(default_factory=dict)
    anti: dict[str, set[str]] = field(default_factory=dict)
    affinity: dict[str, set[str]] = field(default_factory=dict)
    affinity_any: bool = False  # some existing pod matches all affinity terms
    self_match: bool = False  # the pod matches all its own affinity terms

    @property
    def empty(self) -> bool:
        return not self.existing_anti and not self.anti and not self.affinity and not self.affinity_any


def _add_pair(m: dict[str, set[str]], node: NodeInfo | None, key: str) -> None:
    if node is None:
        return
    v = node.labels.get(key)
    if v is not None:
        m.setdefault(key, set()).add(v)


def inter_pod_affinity_prefilter(pod: PodInfo, snap: Snapshot) -> AffinityState | None:
    """None when nothing can block: the pod has no required terms and no existing pod's
    required anti-affinity matches it."""
    st = AffinityState()
    nodes = snap.nodes
    for term, members in snap.anti_affinity_against(pod):
        for key in members:
            other = snap.pods.get(key)
            if other is not None:
                _add_pair(st.existing_anti, nodes.get(other.node_name), term.topology_key)
    for term in pod.required_anti_affinity:
        for other in snap.matching_pods(term):
            _add_pair(st.anti, nodes.get(other.node_name), term.topology_key)
    if pod.required_affinity:
        st.self_match = _matches_all(pod.required_affinity, pod, snap.namespace_labels.get(pod.namespace))
        first = pod.required_affinity[0]
        for other in snap.matching_pods(first):
            if _matches_all(pod.required_affinity[1:], other, snap.namespace_labels.get(other.namespace)):
                node = nodes.get(other.node_name)
                if node is None:
                    continue
                for t in pod.required_affinity:
                    if t.topology_key in node.labels:
                        st.affinity_any = True
                    _add_pair(st.affinity, node, t.topology_key)
    if st.empty and not pod.required_affinity:
        return None
    return st


def _matches_all(terms: Iterable[AffinityTerm], pod: PodInfo, ns_labels: dict[str, str] | None) -> bool:
    for t in terms:
        if not t.matches(pod, ns_labels):
            return False
    return True


def inter_pod_affinity(state: AffinityState, pod: PodInfo, node: NodeInfo) -> Status | None:
    labels = node.labels
    if pod.required_affinity:
        pods_exist = True
        for t in pod.required_affinity:
            v = labels.get(t.topology_key)
            if v is None:
                return _AFFINITY
            if v not in state.affinity.get(t.topology_key, ()):
                pods_exist = False
        # The first pod of a group with affinity to itself may go anywhere the topology exists.
        if not pods_exist and not (not state.affinity_any and state.self_match):
            return _AFFINITY
    if state.anti:
        for t in pod.required_anti_affinity:
            v = labels.get(t.topology_key)
            if v is not None and v in state.anti.get(t.topology_key, ()):
                return _ANTI_AFFINITY
    if state.existing_anti:
        for key, values in state.existing_anti.items():
            v = labels.get(key)
            if v is not None and v in values:
                return _EXISTING_ANTI
    return None


# -- PodTopologySpread --------------------------------------------------------------------------
def node_included(c: SpreadConstraint, pod: PodInfo, node: NodeInfo) -> bool:
    """nodeAffinityPolicy / nodeTaintsPolicy: may this node's pods count for the constraint?"""
    if c.node_affinity_policy != "Ignore" and \
            not pod.matches_node_selector_and_affinity(node.labels, node.name):
        return False
    if c.node_taints_policy == "Honor":
        for t in node.hard_taints:
            if not tolerated(pod.tolerations, t):
                return False
    return True


def count_matching(node: NodeInfo, c: SpreadConstraint, namespace: str) -> int:
    n = 0
    for p in node.pods.values():
        if p.namespace == namespace and not p.terminating and c.selector.matches(p.labels):
            n += 1
    return n


def spread_counts(
    pod: PodInfo, snap: Snapshot, constraints: tuple[SpreadConstraint, ...], eligible: list[NodeInfo],
) -> list[dict[str, int]]:
    """Per constraint: topology value -> matching pods on ``eligible`` nodes (every value present)."""
    out: list[dict[str, int]] = []
    for c in constraints:
        counts: dict[str, int] = {}
        by_node: dict[str, str] = {}
        for n in eligible:
            if node_included(c, pod, n):
                v = n.labels[c.topology_key]
                counts.setdefault(v, 0)
                by_node[n.name] = v
        for key in snap.candidates(c.selector):
            p = snap.pods[key]
            v = by_node.get(p.node_name)
            if v is not None and p.namespace == pod.namespace and not p.terminating and \
                    c.selector.matches(p.labels):
                counts[v] += 1
        out.append(counts)
    return out


def has_all_keys(labels: dict[str, str], constraints: Iterable[SpreadConstraint]) -> bool:
    for c in constraints:
        if c.topology_key not in labels:
            return False
    return True


@dataclass(slots=True)
class SpreadState:
    constraints: tuple[SpreadConstraint, ...]
    counts: list[dict[str, int]]
    min_match: list[int]


def pod_topology_spread_prefilter(pod: PodInfo, snap: Snapshot) -> SpreadState | None:
    constraints = tuple(c for c in pod.spread if c.when_unsatisfiable == "DoNotSchedule")
    if not constraints:
        return None
    eligible = [n for n in snap.node_list() if has_all_keys(n.labels, constraints)]
    counts = spread_counts(pod, snap, constraints, eligible)
    mins = []
    for c, cnt in zip(constraints, counts, strict=True):
        m = min(cnt.values()) if cnt else 0
        if len(cnt) < c.min_domains:
            m = 0  # fewer eligible domains than minDomains: the global minimum counts as 0
        mins.append(m)
    return SpreadState(constraints, counts, mins)


def pod_topology_spread(state: SpreadState, pod: PodInfo, node: NodeInfo) -> Status | None:
    labels = node.labels
    for i, c in enumerate(state.constraints):
        v = labels.get(c.topology_key)
        if v is None:
            return _SPREAD_LABEL
        self_match = 1 if c.selector.matches(pod.labels) else 0
        skew = state.counts[i].get(v, 0) + self_match - state.min_match[i]
        if skew > c.max_skew:
            return _SPREAD
    return None
